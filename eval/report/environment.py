"""What a report's figures depend on besides the config and seed (package versions, torch threads and CPU kernels,
ffmpeg, its codec libraries and their encoders' output), measured and stated in every report, and the part of it
that keys the stage cache."""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import re
import subprocess
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from voiceguard.version import __version__
from voiceguard.audio import SAMPLE_RATE, save_audio

#: torch's intra-op threads while a report runs. Scores differ in the last bits with the thread count (measured:
#: detector LLRs by up to 1e-6 between 1 and 2 threads, speaker embeddings by 6e-8), so every machine uses the
#: same count, the one the committed report was made with (2 cores).
TORCH_THREADS = 2

#: Python distributions whose versions the figures depend on (decoding, resampling, features, models, metrics)
_DISTRIBUTIONS = ("numpy", "scipy", "torch", "torchaudio", "librosa", "scikit-learn", "soundfile", "soxr",
                  "resemblyzer", "webrtcvad", "speechbrain", "audioseal", "pesq", "pystoi")
#: CPU features that select other SIMD kernels (torch / oneDNN / MKL, libopus, ffmpeg), hence other roundings
_SIMD_FLAGS = ("sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni",
               "avx512_bf16", "amx_tile", "asimd", "sve")
#: codec libraries ffmpeg links, and the C function that returns each one's version string (None: none exists)
_CODEC_LIBS = {"libopus": "opus_get_version_string", "libmp3lame": "get_lame_version",
               "libvorbis": "vorbis_version_string", "libgsm": None, "libopencore-amrnb": None,
               "libvo-amrwbenc": None, "libswresample": None, "libavcodec": None}


@contextmanager
def fixed_torch_threads(n: int = TORCH_THREADS):
    """Run the block with ``torch.set_num_threads(n)``, then restore the previous count."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _ffmpeg_versions(exe: str) -> dict:
    """``ffmpeg -version``: the release and the runtime versions of its libraries (e.g. libavcodec 59.37.100)."""
    out = subprocess.run([exe, "-hide_banner", "-version"], capture_output=True, text=True).stdout.splitlines()
    first = subprocess.run([exe, "-version"], capture_output=True, text=True).stdout.split()
    got = {"ffmpeg": first[2] if len(first) > 2 and first[1] == "version" else "?"}
    for line in out:
        m = re.match(r"(lib\w+)\s+[\d. ]+/\s*([\d. ]+)$", line.strip())
        if m and m.group(1) in ("libavcodec", "libavformat", "libswresample"):
            got[m.group(1)] = m.group(2).replace(" ", "")
    return got


def _codec_libraries(exe: str) -> dict:
    """Versions of the codec libraries a dynamically linked ffmpeg loads (``ldd``; empty for a static build):
    the library's own version string where it has one (libopus, LAME, Vorbis), else its file name."""
    import ctypes

    try:
        out = subprocess.run(["ldd", exe], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    got = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+) => (/\S+)", line)
        if not m:
            continue
        name = next((k for k in _CODEC_LIBS if m.group(1).startswith(k + ".so") or m.group(1).startswith(k + "-")),
                    None)
        if name is None:
            continue
        real = os.path.realpath(m.group(2))
        version = os.path.basename(real)
        if _CODEC_LIBS[name]:
            try:
                fn = getattr(ctypes.CDLL(real), _CODEC_LIBS[name])
                fn.restype = ctypes.c_char_p
                version = f"{fn().decode(errors='replace')} ({os.path.basename(real)})"
            except (OSError, AttributeError):
                pass
        got[name] = version
    return got


def _test_signal(sr: int = SAMPLE_RATE) -> np.ndarray:
    """One second of fixed, speech-like audio (a gliding harmonic tone plus seeded noise), ``[1, sr]`` float32."""
    t = np.arange(sr) / sr
    f0 = 120 + 80 * t
    x = sum(0.3 / k * np.sin(2 * np.pi * k * np.cumsum(f0) / sr) for k in range(1, 12))
    x = x + 0.02 * np.random.default_rng(0).standard_normal(sr)
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)[None]


def codec_bitstreams(exe: str) -> dict:
    """Per codec of ``voiceguard.attacks.codecs`` that the installed ffmpeg has: a digest of the packets its
    encoder makes from a fixed test signal (at the codec's default bitrate and rate). Two machines whose digests
    match encode identically; a differing digest (another libopus, LAME, ... build) changes that attack's audio
    and so its figures. Encoding is deterministic run to run (checked: same packets every time)."""
    import tempfile

    from voiceguard.attacks.codecs import CODECS, codec_available

    got = {}
    with tempfile.TemporaryDirectory(prefix="voiceguard-env-") as d:
        src = save_audio(os.path.join(d, "in.wav"), _test_signal(), SAMPLE_RATE, subtype="FLOAT")
        for name, spec in CODECS.items():
            if not codec_available(name):
                continue
            rate = SAMPLE_RATE if spec.rates is None or SAMPLE_RATE in spec.rates else min(spec.rates, key=lambda r: abs(r - SAMPLE_RATE))
            enc = os.path.join(d, f"{name}{spec.ext}")
            cmd = [exe, "-v", "error", "-nostdin", "-y", "-i", str(src), "-ar", str(rate), "-c:a", spec.encoder]
            if spec.bitrate:
                cmd += ["-b:a", spec.bitrate]
            if spec.fmt:
                cmd += ["-f", spec.fmt]
            if subprocess.run(cmd + [enc], capture_output=True).returncode != 0:
                got[name] = "encoder failed"
                continue
            md5 = subprocess.run([exe, "-v", "error", "-nostdin", "-i", enc, "-map", "0:a", "-c", "copy", "-f",
                                  "framemd5", "-"], capture_output=True, text=True).stdout
            packets = [ln for ln in md5.splitlines() if ln and not ln.startswith("#")]
            got[name] = f"{spec.encoder}:{hashlib.sha256(chr(10).join(packets).encode()).hexdigest()[:16]}"
    return got


def codec_environment() -> dict:
    """ffmpeg's version, its codec libraries' versions and each encoder's bitstream digest (``codec_bitstreams``);
    ``{"ffmpeg": None}`` without ffmpeg. Measured once per ffmpeg executable and process (about 1 s)."""
    import shutil

    exe = shutil.which("ffmpeg")
    return json.loads(json.dumps(_codec_environment(exe)))  # a copy: callers may edit theirs


@functools.lru_cache(maxsize=4)
def _codec_environment(exe: str | None) -> dict:
    if exe is None:
        return {"ffmpeg": None}
    return {**_ffmpeg_versions(exe), "libraries": _codec_libraries(exe), "bitstreams": codec_bitstreams(exe)}


def _cpu() -> tuple[str, list[str]]:
    cpu = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key = line.split(":", 1)[0].strip()
            if key == "model name" and cpu in (platform.processor(), platform.machine()):
                cpu = line.split(":", 1)[1].strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return cpu, [f for f in _SIMD_FLAGS if f in flags]


def environment(corpus: str | Path | None = None, *, codecs: bool = True) -> dict:
    """What the figures depend on besides the config and seed, stated in every report: package versions, torch's
    thread count and CPU kernels, ffmpeg and its codec libraries (with encoder bitstream digests) and, for a
    corpus built by ``voiceguard data build`` (``corpus``: its folder), the versions of the tools that made its
    audio (``corpus_tools``). ``codecs=False`` leaves out the ffmpeg part (``codecs``)."""
    import importlib.metadata

    import torch

    versions = {"voiceguard": __version__, "python": platform.python_version(), "numpy": np.__version__,
                "torch": torch.__version__}
    for mod in ("librosa", "sklearn", "resemblyzer", "speechbrain", "audioseal"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001  (absent or without a version: not stated)
            pass
    packages = {}
    for dist in _DISTRIBUTIONS:
        try:
            packages[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    cpu, flags = _cpu()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    env = {"versions": versions, "packages": packages,
           "hardware": {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "gpu": gpu,
                        "platform": platform.platform(), "cpu_flags": flags,
                        "torch_cpu_kernels": torch.backends.cpu.get_cpu_capability()}}
    if codecs:
        env["codecs"] = codec_environment()
    if corpus is not None:
        try:
            env["corpus_tools"] = json.loads((Path(corpus) / "corpus.json").read_text()).get("tool_versions")
        except (OSError, ValueError):
            pass
    return env


def environment_key(env: dict) -> dict:
    """The part of ``environment()`` that changes computed values: part of every stage's cache key, so a stage
    cached under other libraries, codecs, thread count or CPU kernels is recomputed, never reused."""
    hw = env["hardware"]
    return {"packages": env.get("packages"), "codecs": env.get("codecs", {}).get("bitstreams"),
            "torch_threads": hw["torch_threads"], "kernels": hw.get("torch_cpu_kernels")}


__all__ = ["TORCH_THREADS", "codec_bitstreams", "codec_environment", "environment", "environment_key", "fixed_torch_threads"]
