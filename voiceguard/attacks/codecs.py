"""Real codec round trips through ffmpeg: encode at a bitrate, decode, align to the input length."""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

import numpy as np

from voiceguard.audio import load_audio, save_audio

from .base import Attack, AttackUnavailable, fit_length, register


@dataclass(frozen=True)
class CodecSpec:
    encoder: str  # ffmpeg encoder name
    ext: str  # container extension
    rates: tuple[int, ...] | None  # sample rates the codec accepts (None: any)
    mono_only: bool = False
    bitrate: str | None = None  # default bitrate (None: the codec has a fixed rate)
    fmt: str | None = None  # ffmpeg muxer when the extension does not say
    label: str = ""
    delay: int = 0  # algorithmic delay in samples at the encoding rate, removed after decoding
    rate_flag: str = "-b:a"  # the ffmpeg option that sets the bitrate (libcodec2: -mode)


CODECS: dict[str, CodecSpec] = {
    "mp3": CodecSpec("libmp3lame", ".mp3", None, bitrate="32k", label="MP3"),
    "aac": CodecSpec("aac", ".m4a", None, bitrate="64k", fmt="mp4", label="AAC in M4A"),
    "opus": CodecSpec("libopus", ".opus", (8000, 12000, 16000, 24000, 48000), bitrate="16k", fmt="ogg",
                      label="Opus"),
    "vorbis": CodecSpec("libvorbis", ".ogg", None, bitrate="64k", label="Ogg Vorbis"),
    "mulaw": CodecSpec("pcm_mulaw", ".wav", (8000,), label="G.711 mu-law (8 kHz)"),
    "alaw": CodecSpec("pcm_alaw", ".wav", (8000,), label="G.711 A-law (8 kHz)"),
    "g722": CodecSpec("g722", ".wav", (16000,), mono_only=True, label="G.722 (16 kHz)", delay=22),
    "gsm": CodecSpec("libgsm_ms", ".wav", (8000,), mono_only=True, label="GSM 06.10 full rate (8 kHz)"),
    "codec2": CodecSpec("libcodec2", ".c2", (8000,), mono_only=True, bitrate="3200", fmt="codec2",
                        label="Codec 2 (8 kHz; mode = bit/s: 3200, 2400, 1600, 1400, 1300, 1200)",
                        rate_flag="-mode", delay=190),  # 3200/1600, by envelope cross-correlation
    "amr_nb": CodecSpec("libopencore_amrnb", ".amr", (8000,), mono_only=True, bitrate="12.2k",
                        label="AMR-NB (8 kHz)"),
    "amr_wb": CodecSpec("libvo_amrwbenc", ".amr", (16000,), mono_only=True, bitrate="23.85k",
                        label="AMR-WB (16 kHz)"),
}


@functools.lru_cache(maxsize=1)
def ffmpeg_encoders() -> frozenset[str]:
    """Names of the encoders the installed ffmpeg has (empty when ffmpeg is missing)."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        return frozenset()
    out = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] in "AVS":
            names.add(parts[1])
    return frozenset(names)


def codec_available(codec: str) -> bool:
    return CODECS[codec].encoder in ffmpeg_encoders()


def codec_roundtrip(samples: np.ndarray, sample_rate: int, codec: str, bitrate: str | None = None) -> np.ndarray:
    """Encode ``[C, n]`` float audio with a real encoder and decode it back at ``sample_rate``, same length."""
    spec = CODECS[codec]
    enc_sr = sample_rate
    if spec.rates is not None and sample_rate not in spec.rates:
        higher = [r for r in spec.rates if r >= sample_rate]
        enc_sr = min(higher) if higher else max(spec.rates)
    channels = [samples[i:i + 1] for i in range(samples.shape[0])] if spec.mono_only else [samples]
    with tempfile.TemporaryDirectory(prefix="voiceguard-codec-") as d:
        outs = []
        for k, x in enumerate(channels):
            src = save_audio(os.path.join(d, f"in{k}.wav"), x, sample_rate, subtype="FLOAT")
            enc = os.path.join(d, f"enc{k}{spec.ext}")
            cmd = ["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(src), "-ar", str(enc_sr),
                   "-c:a", spec.encoder]
            rate = bitrate or spec.bitrate
            if rate and spec.bitrate:
                cmd += [spec.rate_flag, str(rate)]
            if spec.fmt:
                cmd += ["-f", spec.fmt]
            res = subprocess.run(cmd + [enc], capture_output=True, text=True)
            if res.returncode != 0:
                raise RuntimeError(f"ffmpeg {spec.encoder} failed: {(res.stderr.strip().splitlines() or ['?'])[-1]}")
            y, _ = load_audio(enc, target_sr=sample_rate, backend="ffmpeg")
            y = y[:, int(round(spec.delay * sample_rate / enc_sr)):]
            outs.append(fit_length(y, samples.shape[-1]))
    return np.concatenate(outs, axis=0).astype(np.float32)


class _Codec(Attack):
    codec = "mp3"
    DEFAULTS = {"bitrate": None}
    differentiable = True  # straight-through: real codec forward, identity gradient

    @classmethod
    def check_available(cls) -> None:
        if not codec_available(cls.codec):
            spec = CODECS[cls.codec]
            raise AttackUnavailable(
                f"{cls.name}: the installed ffmpeg has no '{spec.encoder}' encoder ({spec.label}); install an "
                f"ffmpeg built with it (e.g. Debian's ffmpeg package has most; AMR needs libopencore/vo-amrwbenc)")

    def apply(self, samples, sample_rate, params):
        return codec_roundtrip(samples, sample_rate, self.codec, params.get("bitrate"))

    def apply_torch(self, wav, sample_rate, params):
        import torch

        flat = wav.detach().reshape(-1, wav.shape[-1]).cpu().numpy()
        coded = torch.from_numpy(self.apply(flat, sample_rate, params)).reshape(wav.shape).to(wav)
        return wav + (coded - wav).detach()


def _make(codec: str) -> type[_Codec]:
    spec = CODECS[codec]
    cls = type(f"Codec_{codec}", (_Codec,), {
        "name": codec, "codec": codec, "description": f"{spec.label} round trip via ffmpeg"
        + (f" (default bitrate {spec.bitrate})" if spec.bitrate else ""),
        "DEFAULTS": {"bitrate": spec.bitrate} if spec.bitrate else {},
    })
    return register(cls)


for _name in CODECS:
    _make(_name)
