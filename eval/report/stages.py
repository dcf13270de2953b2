"""The report's stages: pure functions of the config whose results are cached (one JSON per stage and
condition under ``WORK/cache``), so a killed run resumes where it stopped and a rerun only renders.

Every stage result is plain JSON data; the figures and the written report are made from it alone."""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from voiceguard import __version__
from voiceguard.audio import load_audio, save_audio
from voiceguard.errors import VoiceguardError
from voiceguard.files import atomic_write_text
from voiceguard.metrics.watermark import si_snr
from voiceguard.protocols import BONAFIDE, Trial, check_audio_files, read_protocol

from .config import ReportConfig, ReportConfigError
from voiceguard.audio import SAMPLE_RATE

CACHE_VERSION = 2

#: modules whose code computes the cached values: editing any of them invalidates the cache
_CACHED_CODE = ("voiceguard.eval.report.stages", "voiceguard.eval.risk.checks", "voiceguard.metrics.asv", "voiceguard.metrics.watermark",
                "voiceguard.eval.risk.embed", "voiceguard.eval.risk.embedders", "voiceguard.detect.batch",
                "voiceguard.detect.scoring", "voiceguard.watermark.base", "voiceguard.attacks.base")


class ReportError(VoiceguardError):
    """A report stage cannot run."""


def _log(msg: str) -> None:
    print(f"voiceguard report: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- cache
def _code_digest() -> str:
    """sha256 over the sources of the modules in ``_CACHED_CODE``."""
    import importlib.util

    h = hashlib.sha256()
    for mod in _CACHED_CODE:
        h.update(Path(importlib.util.find_spec(mod).origin).read_bytes())
    return h.hexdigest()[:16]


_CODE = _code_digest()


def fingerprint(obj: Any) -> str:
    """A stable hash of JSON-able inputs and of the code that computes the values (edited code recomputes)."""
    text = json.dumps({"v": CACHE_VERSION, "voiceguard": __version__, "code": _CODE, "in": obj}, sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class StageCache:
    root: Path
    force: bool = False
    log: Callable[[str], None] = _log
    environment: Any = None  # ``environment_key(...)``: a value cached under other libraries is recomputed

    def run(self, name: str, inputs: Any, compute: Callable[[], Any], timings: dict) -> Any:
        """The cached value of ``name`` when its inputs (and the environment) are unchanged, else ``compute()``
        (stored atomically)."""
        key = fingerprint(inputs if self.environment is None else {"inputs": inputs, "env": self.environment})
        path = self.root / f"{name}.json"
        if not self.force and path.is_file():
            try:
                got = json.loads(path.read_text())
                if got.get("key") == key:
                    timings[name] = {"seconds": got["seconds"], "cached": True}
                    self.log(f"{name}: cached ({got['seconds']:.1f} s when computed)")
                    return got["value"]
            except (OSError, ValueError, KeyError):
                pass  # unreadable entry: recompute
        self.log(f"{name}: running")
        t0 = time.perf_counter()
        value = json.loads(json.dumps(compute()))  # what a rerun reads back: same types (lists, not tuples)
        seconds = round(time.perf_counter() - t0, 2)
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"key": key, "seconds": seconds, "value": value}))
        timings[name] = {"seconds": seconds, "cached": False}
        self.log(f"{name}: done in {seconds:.1f} s")
        return value


# --------------------------------------------------------------------------- data
@dataclass(frozen=True)
class EvalData:
    trials: tuple[Trial, ...]
    audio_dir: Path
    ext: str
    root: Path
    asv_scores: Path | None
    asv_enroll: tuple[Path, ...]
    asv_trials: Path | None

    def path(self, t: Trial) -> Path:
        return t.audio_path(self.audio_dir, self.ext)

    def fingerprint(self, trials: list[Trial] | tuple[Trial, ...] | None = None) -> list:
        """Trial ids with labels and file sizes (of ``trials``, default all): the same audio is assumed when
        these match."""
        return [(t.utt_id, t.label, t.attack, self.path(t).stat().st_size)
                for t in (self.trials if trials is None else trials)]

    def relative(self, path: str | Path) -> str:
        """``path`` relative to the dataset folder (cache keys survive moving the dataset)."""
        try:
            return str(Path(path).resolve().relative_to(self.root.resolve()))
        except ValueError:
            return str(path)


def subset(trials: list[Trial], n: int | None, seed: int) -> list[Trial]:
    """A seeded random subset of ``n`` trials, stratified by class (protocol order kept); all when ``n`` is None."""
    if n is None or n >= len(trials):
        return list(trials)
    rng = np.random.default_rng(seed)
    lab = np.array([t.label == BONAFIDE for t in trials])
    n_bona = max(2, min(int(lab.sum()), int(round(n * lab.mean()))))
    n_spoof = max(2, min(int((~lab).sum()), n - n_bona))
    keep = np.concatenate([rng.permutation(np.flatnonzero(lab))[:n_bona], rng.permutation(np.flatnonzero(~lab))[:n_spoof]])
    return [trials[i] for i in sorted(keep.tolist())]


def _check_corpus_card(root: Path, config: str, seed: int) -> None:
    """A corpus found at data.path must be the one the config would build (same builder config and seed)."""
    try:
        card = json.loads((root / "corpus.json").read_text())
    except (OSError, ValueError):
        raise ReportError("corpus.json is missing or unreadable: not a finished `voiceguard data build` corpus "
                          "(remove the folder to rebuild it)", source=root) from None
    want = Path(config).stem if str(config).endswith((".yaml", ".yml")) else str(config)
    got = (card.get("config") or {}).get("name"), card.get("seed")
    if got != (want, seed):
        raise ReportError(f"this corpus was built with config {got[0]!r} and seed {got[1]}, the report config asks "
                          f"for {want!r} and seed {seed}: point data.path elsewhere or remove the folder", source=root)


def resolve_data(cfg: ReportConfig, *, progress: bool = False, log: Callable[[str], None] = _log) -> EvalData:
    """Find the eval set (building the corpus first when the config says how), check every file exists."""
    d = cfg.data
    root = Path(d.path).expanduser()
    protocol = root / d.protocol
    if d.layout == "corpus" and not protocol.is_file():
        if d.build_source is None:
            raise ReportError(f"no corpus here ({d.protocol} is missing) and data.build.source is not set: build one "
                              "with `voiceguard data build` or give data.build.source", source=root)
        from voiceguard.eval.corpus import prepare_corpus

        log(f"building the corpus from {d.build_source} into {root} (config {d.build_config}, seed {cfg.seed})")
        prepare_corpus(d.build_source, root, d.build_config, cfg.seed, progress=progress)
    if not protocol.is_file():
        raise ReportError(f"eval protocol not found ({d.protocol} under data.path)", source=protocol)
    if d.layout == "corpus" and d.build_source is not None:
        _check_corpus_card(root, d.build_config, cfg.seed)
    trials = read_protocol(protocol, d.protocol_format)
    audio_dir = root / d.audio_dir
    trials = subset(trials, d.max_trials, cfg.seed)
    check_audio_files(trials, audio_dir, d.ext, source=str(protocol))
    labels = {t.label for t in trials}
    if labels != {BONAFIDE, "spoof"}:
        raise ReportError(f"the eval set needs bona fide and spoof trials; it holds only {', '.join(sorted(labels))}",
                          source=protocol)

    def opt(p: str | None) -> Path | None:
        if p is None:
            return None
        q = root / p
        if not q.is_file():
            raise ReportError(f"{p} is missing under data.path", source=q)
        return q

    return EvalData(tuple(trials), audio_dir, d.ext, root, opt(d.asv_scores),
                    tuple(opt(p) for p in d.asv_enroll), opt(d.asv_trials))


# --------------------------------------------------------------------------- detectors
def _attack_decode(row, seed: int, index: dict[str, int]):
    """A decode hook for ``score_files``: the file at 16 kHz mono, then the attack seeded by the file's index."""
    from voiceguard.detect.batch import decode

    def dec(path):
        x, info = decode(path)
        if row is None:
            return x, info
        y = row.build(seed=seed * 100_003 + index[str(path)])(x, SAMPLE_RATE)
        return np.asarray(y, dtype=np.float32).ravel(), info
    return dec


def score_condition(loaded, data: EvalData, trials: list[Trial], row, seed: int, progress: bool) -> dict:
    """Calibrated LLRs of ``trials`` (optionally attacked); files that fail are listed, not scored."""
    from tqdm import tqdm

    from voiceguard.detect.batch import score_files

    paths = [str(data.path(t)) for t in trials]
    index = {p: i for i, p in enumerate(paths)}
    out = {"utt": [], "score": [], "errors": []}
    scored = score_files(loaded.detector, paths, calibration=loaded.calibration, decode=_attack_decode(row, seed, index))
    for t, s in tqdm(zip(trials, scored), total=len(trials), desc="score", unit="file", disable=not progress,
                     leave=False):
        if s.result is None:
            out["errors"].append([s.source, s.error or "unreadable"])
        else:
            out["utt"].append(t.utt_id)
            out["score"].append(float(s.result.llr))
    return out


def detector_identity(det) -> dict:
    """What identifies a detector's scores: the model and the digest of its weights."""
    from voiceguard.cards import sha256_file
    from voiceguard.detect.models import load_model

    loaded = load_model(det.model, det.checkpoint)
    sha = loaded.card.sha256 if loaded.card is not None and loaded.card.sha256 else sha256_file(loaded.checkpoint)
    card = loaded.card
    return {"loaded": loaded, "id": {"model": det.model, "name": loaded.name, "version": loaded.version,
                                     "sha256": sha, "calibrated": loaded.calibrated,
                                     "calibration": loaded.calibration.to_dict(),
                                     "config": card.config if card is not None else None,
                                     "architecture": card.architecture if card is not None else det.model}}


# --------------------------------------------------------------------------- watermark
def watermarker_identity(wm) -> dict:
    """What identifies a watermark engine's output: its settings and a digest of its network weights."""
    h = hashlib.sha256()
    for part in ("generator", "detector"):
        module = getattr(wm, part, None)
        if module is not None and hasattr(module, "state_dict"):
            for k, v in sorted(module.state_dict().items()):
                h.update(k.encode())
                h.update(v.detach().cpu().numpy().tobytes())
    return {"engine": wm.name, "model": wm.model, "threshold": wm.threshold, "strength": wm.strength,
            "snr_db": getattr(wm, "snr_db", None), "key": getattr(wm, "key", None), "weights": h.hexdigest()[:20]}


def perceptual_measures() -> bool:
    """PESQ and STOI are installed (the bench extra)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("pesq", "pystoi"))


def watermark_stage(wm, clips: list[np.ndarray], suite, seed: int) -> dict:
    """Quality of the marked clips, then TPR / bit accuracy / FPR under each attack of ``suite``."""
    from voiceguard.attacks import AttackUnavailable

    rng = np.random.default_rng(seed)
    messages = [int(m) for m in rng.integers(0, 2 ** wm.nbits, len(clips))]
    marked = [wm.embed(x, SAMPLE_RATE, m) for x, m in zip(clips, messages)]
    q = {"si_snr": [si_snr(x, y) for x, y in zip(clips, marked)]}
    if perceptual_measures():  # optional (pip install -e .[bench]); a clip they cannot rate is left out
        from pesq import pesq
        from pystoi import stoi

        for name, fn in (("pesq", lambda x, y: pesq(SAMPLE_RATE, x, np.clip(y, -1, 1), "wb")),
                         ("stoi", lambda x, y: stoi(x, y, SAMPLE_RATE, extended=False))):
            vals = []
            for x, y in zip(clips, marked):
                try:
                    vals.append(float(fn(x, y)))
                except Exception:  # noqa: BLE001  (e.g. PESQ on a clip with no utterance)
                    pass
            if vals:
                q[name] = vals
    quality = {k: {"mean": float(np.mean(v)), "min": float(np.min(v)), "n": len(v)} for k, v in q.items()}
    rows = {}
    for row in suite.rows:
        tp = fp = 0
        acc = []
        try:
            for i, (x, y, m) in enumerate(zip(clips, marked, messages)):
                s = seed * 100_003 + i
                ya = np.asarray(row.build(seed=s)(y, SAMPLE_RATE), np.float32).ravel()
                xa = np.asarray(row.build(seed=s)(x, SAMPLE_RATE), np.float32).ravel()
                r = wm.detect(ya, SAMPLE_RATE, expected=m)
                tp += int(r.detected)
                acc.append(r.bits_matched / len(r.bits))
                fp += int(wm.detect(xa, SAMPLE_RATE).detected)
        except AttackUnavailable as e:
            rows[row.label] = {"unavailable": str(e)}
            continue
        except Exception as e:  # noqa: BLE001  (one failing condition is reported, the report goes on)
            rows[row.label] = {"unavailable": f"failed: {type(e).__name__}: {e}"}
            continue
        n = len(clips)
        rows[row.label] = {"tpr": tp / n, "fpr": fp / n, "bit_acc": float(np.mean(acc)), "n": n}
    return {"engine": wm.name, "model": wm.model, "threshold": wm.threshold, "n_files": len(clips),
            "quality": quality, "attacks": rows}


# --------------------------------------------------------------------------- risk
def asv_trials(data: EvalData, subset_only: bool) -> list:
    """The ASV trial list; with ``subset_only`` only the trials whose utterance is in the (subset) eval set."""
    from voiceguard.eval.risk import read_asv_trials

    trials = read_asv_trials(data.asv_trials)
    if subset_only:
        keep = {t.utt_id for t in data.trials}
        trials = [t for t in trials if t.utt_id in keep]
        if not trials:
            raise ReportError("no ASV trial is in the eval subset (data.max_trials): raise it or turn risk.asv off",
                              source=data.asv_trials)
    return trials


def asv_stage(data: EvalData, trials: list, backend: str, out: Path) -> dict:
    """The project's own ASV (speaker embeddings, cosine): EER, spoof acceptance, and its score file."""
    from voiceguard.eval.risk import asv_check, get_embedder, read_asv_enrollment

    enrollment: dict[str, list[str]] = {}
    for p in data.asv_enroll:
        for spk, utts in read_asv_enrollment(p).items():
            enrollment.setdefault(spk, []).extend(utts)
    enrollment = {s: u for s, u in enrollment.items() if s in {t.speaker for t in trials}}
    # cache=False: the shared embedding cache (~/.cache/voiceguard/embeddings) is keyed by weights and file
    # content only, so it may hold embeddings made by other library or decoder versions; this stage is cached
    # itself, under a key that names the environment
    res = asv_check(enrollment, trials, data.audio_dir, get_embedder(backend), ext=data.ext, out=out,
                    overwrite=True, cache=False)
    result = res.to_dict()
    result["score_file"] = f"{out.parent.name}/{out.name}"  # relative to the work folder: results stay comparable
    return {"result": result, "scores": {k: v.tolist() for k, v in res.scores.items()}}


def reid_sets(data: EvalData, n_speakers: int, seed: int) -> tuple[list, list]:
    """(enrolment, probes) as LabeledFiles: the ASV enrolment utterances of ``n_speakers`` seeded eval speakers
    (or, without ASV lists, the first half of each speaker's bona fide trials) and their bona fide trials."""
    from voiceguard.eval.risk import LabeledFile, read_asv_enrollment

    by_spk: dict[str, list[Trial]] = {}
    for t in data.trials:
        if t.label == BONAFIDE and t.speaker != "-":
            by_spk.setdefault(t.speaker, []).append(t)
    enrol_lists: dict[str, list[str]] = {}
    for p in data.asv_enroll:
        for spk, utts in read_asv_enrollment(p).items():
            enrol_lists.setdefault(spk, []).extend(utts)
    if enrol_lists:  # probes never include a speaker's enrolment utterances
        enrolled = {s: set(u) for s, u in enrol_lists.items()}
        by_spk = {s: [t for t in ts if t.utt_id not in enrolled.get(s, ())] for s, ts in by_spk.items()}
        eligible = sorted(s for s, ts in by_spk.items() if len(ts) >= 1 and s in enrol_lists)
    else:
        eligible = sorted(s for s, ts in by_spk.items() if len(ts) >= 4)
    if len(eligible) < 2:
        raise ReportError(f"re-identification needs >= 2 eval speakers with enough bona fide files; found "
                          f"{len(eligible)}", source=data.root)
    chosen = sorted(np.random.default_rng(seed).permutation(eligible)[:n_speakers].tolist())
    enroll, probe = [], []
    for s in chosen:
        ts = by_spk[s]
        if enrol_lists:
            enroll += [LabeledFile(str(data.audio_dir / f"{u}{data.ext}"), s) for u in enrol_lists[s]]
            probe += [LabeledFile(str(data.path(t)), s) for t in ts]
        else:
            half = len(ts) // 2
            enroll += [LabeledFile(str(data.path(t)), s) for t in ts[:half]]
            probe += [LabeledFile(str(data.path(t)), s) for t in ts[half:]]
    return enroll, probe


def reid_condition(enroll: list, probe: list, transform: Callable[[np.ndarray, int], np.ndarray] | None,
                   folder: Path, backend: str, seed: int) -> dict:
    """Re-identification of the probes (processed by ``transform`` first, written under ``folder``)."""
    from voiceguard.eval.risk import LabeledFile, get_embedder, reid_check

    if transform is not None:
        folder.mkdir(parents=True, exist_ok=True)
        processed = []
        for i, f in enumerate(probe):
            x = load_audio(f.path, SAMPLE_RATE, mono=True)[0][0]
            out = folder / f"{i:04d}_{Path(f.path).stem}.flac"
            save_audio(out, np.clip(transform(x, i), -1, 1)[None], SAMPLE_RATE, overwrite=True)
            processed.append(LabeledFile(str(out), f.speaker))
        probe = processed
    res = reid_check(enroll, probe, get_embedder(backend), seed=seed, cache=False)  # see asv_stage
    ignorant = res.attackers[0]
    return {"result": res.to_dict(), "mated": ignorant.mated.tolist(), "nonmated": ignorant.nonmated.tolist()}


# --------------------------------------------------------------------------- environment
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


__all__ = ["EvalData", "ReportConfigError", "ReportError", "StageCache", "TORCH_THREADS", "asv_stage",
           "codec_bitstreams", "codec_environment", "detector_identity", "asv_trials", "environment",
           "environment_key", "fixed_torch_threads", "fingerprint", "perceptual_measures", "watermarker_identity", "reid_condition", "reid_sets", "resolve_data", "score_condition",
           "subset", "watermark_stage"]
