"""Spoofing systems of the corpus builder: TTS engines, vocoder copy-synthesis, WORLD voice conversion.

Each system is a function ``(job, params) -> float32 mono audio at 16 kHz``. A job carries the
bona fide segment (vocoders / VC resynthesise it: same speaker, words and channel), a sentence
(TTS), a target pitch (VC) and a seed.  Every recipe is documented in ``RECIPES``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Callable

import numpy as np

from voiceguard.audio import load_audio
from voiceguard.errors import MissingToolError
from voiceguard.audio import SAMPLE_RATE

FRAME_PERIOD_MS = 5.0


@dataclass(frozen=True)
class Job:
    """What one spoofed utterance is made from."""

    seed: int
    source: np.ndarray | None = None  # bona fide segment, float32 mono at 16 kHz (vocoders, VC)
    text: str | None = None  # sentence (TTS)
    target_f0: float | None = None  # median F0 of another speaker (VC)


SYSTEMS: dict[str, Callable[[Job, dict], np.ndarray]] = {}
#: families whose systems speak a sentence (the others resynthesise a bona fide segment)
TEXT_FAMILIES = frozenset({"tts", "neural-tts", "neural-tts+vocoder"})
RECIPES: dict[str, str] = {}
FAMILIES: dict[str, str] = {}
TOOLS: dict[str, tuple[str, str]] = {  # engine -> (program, how to install)
    "espeak": ("espeak-ng", "apt-get install espeak-ng"),
    "flite": ("flite", "apt-get install flite"),
    "festival": ("text2wave", "apt-get install festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"),
}


def system(name: str, family: str, recipe: str):
    def deco(fn):
        SYSTEMS[name], FAMILIES[name], RECIPES[name] = fn, family, recipe
        return fn
    return deco


def require_tool(engine: str) -> str:
    prog, hint = TOOLS[engine]
    exe = shutil.which(prog)
    if exe is None:
        raise MissingToolError(f"TTS engine '{prog}' is not installed (needed by the {engine} attack systems); "
                               f"install it with: {hint}")
    return exe


def _run_tts(cmd: list[str], out: str, stdin: str | None = None) -> np.ndarray:
    res = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
    if res.returncode != 0 or not os.path.exists(out) or os.path.getsize(out) < 100:
        raise RuntimeError(f"{os.path.basename(cmd[0])} failed: {res.stderr.strip()[-200:]}")
    y, _ = load_audio(out, target_sr=SAMPLE_RATE, mono=True)
    return y[0]


# --------------------------------------------------------------------------- TTS
@system("espeak", "tts", "espeak-ng formant synthesis: voice+variant, words per minute and pitch drawn per utterance")
def espeak(job: Job, p: dict) -> np.ndarray:
    exe = require_tool("espeak")
    rng = np.random.default_rng(job.seed)
    wpm = int(rng.integers(*p.get("wpm", (140, 181))))
    pitch = int(rng.integers(*p.get("pitch", (30, 71))))
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "o.wav")
        return _run_tts([exe, "-v", p["voice"], "-s", str(wpm), "-p", str(pitch), "-w", out, job.text], out)


@system("flite", "tts", "flite (CMU Flite) with a built-in voice (kal diphone, slt/rms/awb clustergen)")
def flite(job: Job, p: dict) -> np.ndarray:
    exe = require_tool("flite")
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "o.wav")
        return _run_tts([exe, "-voice", p["voice"], "-t", job.text, "-o", out], out)


@system("festival", "tts", "Festival text2wave with a diphone (kal, ked) or HTS (cmu_us_slt_arctic_hts) voice")
def festival(job: Job, p: dict) -> np.ndarray:
    exe = require_tool("festival")
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "o.wav")
        return _run_tts([exe, "-eval", f"(voice_{p['voice']})", "-o", out], out, stdin=job.text)


# --------------------------------------------------------------------------- WORLD family
def _world_analysis(x: np.ndarray):
    import pyworld as pw

    x64 = x.astype(np.float64)
    f0, t = pw.dio(x64, SAMPLE_RATE, frame_period=FRAME_PERIOD_MS)
    f0 = pw.stonemask(x64, f0, t, SAMPLE_RATE)
    sp = pw.cheaptrick(x64, f0, t, SAMPLE_RATE)
    ap = pw.d4c(x64, f0, t, SAMPLE_RATE)
    return f0, sp, ap


def warp_envelope(sp: np.ndarray, alpha: float) -> np.ndarray:
    """Warp a spectral envelope's frequency axis with a first-order all-pass (alpha > 0 lowers formants)."""
    if alpha == 0:
        return sp
    n = sp.shape[1]
    w = np.linspace(0, np.pi, n)
    warped = w + 2 * np.arctan(alpha * np.sin(w) / (1 - alpha * np.cos(w)))
    idx = np.clip(warped / np.pi * (n - 1), 0, n - 1)
    lo = np.floor(idx).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    frac = idx - lo
    return sp[:, lo] * (1 - frac) + sp[:, hi] * frac


@system("world", "vocoder", "WORLD (DIO + StoneMask + CheapTrick + D4C) analysis and resynthesis of the bona fide "
                            "segment")
def world(job: Job, p: dict) -> np.ndarray:
    import pyworld as pw

    f0, sp, ap = _world_analysis(job.source)
    return pw.synthesize(f0, sp, ap, SAMPLE_RATE, frame_period=FRAME_PERIOD_MS).astype(np.float32)


@system("world_vc", "vc", "WORLD voice conversion: F0 moved to another speaker's median F0 (log domain) and the "
                          "spectral envelope frequency-warped by alpha")
def world_vc(job: Job, p: dict) -> np.ndarray:
    import pyworld as pw

    f0, sp, ap = _world_analysis(job.source)
    voiced = f0 > 0
    if voiced.any() and job.target_f0:
        f0 = np.where(voiced, f0 * job.target_f0 / np.median(f0[voiced]), 0.0)
    sp = warp_envelope(sp, float(p.get("alpha", 0.1)))
    return pw.synthesize(f0, np.ascontiguousarray(sp), ap, SAMPLE_RATE, frame_period=FRAME_PERIOD_MS).astype(np.float32)


def _excitation(f0: np.ndarray, n: int, hop: int, rng: np.random.Generator) -> np.ndarray:
    """Pulse train in voiced frames, white noise in unvoiced ones (the classic source model)."""
    exc = np.zeros(n)
    phase = 0.0
    for i in range(n):
        f = f0[min(i // hop, f0.size - 1)]
        if f > 0:
            phase += f / SAMPLE_RATE
            if phase >= 1.0:
                phase -= 1.0
                exc[i] = np.sqrt(SAMPLE_RATE / f)
        else:
            exc[i] = rng.standard_normal()
    return exc


@system("mlsa", "vocoder", "mel-cepstral analysis (pysptk, order 24, alpha 0.42) and MLSA-filter synthesis from a "
                           "pulse/noise excitation")
def mlsa(job: Job, p: dict) -> np.ndarray:
    import pysptk
    from pysptk.synthesis import MLSADF, Synthesizer

    x = job.source.astype(np.float64)
    hop, frame, order, alpha = 80, 512, int(p.get("order", 24)), 0.42
    f0, _, _ = _world_analysis(job.source)  # 5 ms frames = the 80-sample hop
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(x, (frame // 2, frame // 2)), frame)[::hop]
    frames = frames * pysptk.blackman(frame)
    rng = np.random.default_rng(job.seed)
    dither = 1e-6 * rng.standard_normal(frames.shape)
    mc = np.stack([pysptk.mcep(fr, order, alpha, etype=1, eps=1e-8) for fr in frames + dither])
    b = pysptk.mc2b(mc, alpha)
    exc = _excitation(np.resize(f0, b.shape[0]), b.shape[0] * hop, hop, rng)
    y = Synthesizer(MLSADF(order=order, alpha=alpha), hop).synthesis(exc, b)
    return y[: x.size].astype(np.float32)


@system("griffin_lim", "vocoder", "STFT magnitude (n_fft 512, hop 128) inverted with 32 Griffin-Lim iterations")
def griffin_lim(job: Job, p: dict) -> np.ndarray:
    import librosa

    mag = np.abs(librosa.stft(job.source, n_fft=512, hop_length=128))
    y = librosa.griffinlim(mag, n_iter=int(p.get("n_iter", 32)), hop_length=128, n_fft=512,
                           random_state=job.seed, length=job.source.size)
    return y.astype(np.float32)


@system("lpc", "vocoder", "frame-wise LPC (order 18, 25 ms frames) driven by a pulse/noise excitation, overlap-add")
def lpc(job: Job, p: dict) -> np.ndarray:
    import librosa
    from scipy.signal import lfilter

    x = job.source.astype(np.float64)
    order, frame, hop = int(p.get("order", 18)), 400, 200
    f0, _, _ = _world_analysis(job.source)
    f0_hop = f0[:: int(hop / 80)]
    rng = np.random.default_rng(job.seed)
    exc = _excitation(np.resize(f0_hop, x.size // hop + 2), x.size + frame, hop, rng)
    win = np.hanning(frame)
    y = np.zeros(x.size + frame)
    for start in range(0, x.size - frame, hop):
        seg = x[start:start + frame] * win
        if np.sum(seg ** 2) < 1e-10:
            continue
        a = librosa.lpc(seg + 1e-9 * rng.standard_normal(frame), order=order)
        gain = np.sqrt(np.sum(lfilter(a, [1.0], seg) ** 2) / frame)
        y[start:start + frame] += lfilter([gain], a, exc[start:start + frame]) * win
    return y[: x.size].astype(np.float32)


@system("mfcc_inversion", "vocoder", "40 MFCCs (128 mel bands) inverted to audio (mel pseudo-inverse + Griffin-Lim)")
def mfcc_inversion(job: Job, p: dict) -> np.ndarray:
    import librosa

    m = librosa.feature.mfcc(y=job.source, sr=SAMPLE_RATE, n_mfcc=int(p.get("n_mfcc", 40)), n_mels=128, n_fft=512,
                             hop_length=128)
    mel = librosa.feature.inverse.mfcc_to_mel(m, n_mels=128)
    mag = librosa.feature.inverse.mel_to_stft(mel, sr=SAMPLE_RATE, n_fft=512)
    y = librosa.griffinlim(mag, n_iter=32, hop_length=128, n_fft=512, random_state=job.seed,
                           length=job.source.size)
    return y.astype(np.float32)


def median_f0(x: np.ndarray) -> float:
    """Median F0 of voiced frames (DIO), 0 when nothing is voiced."""
    import pyworld as pw

    f0, _ = pw.dio(x.astype(np.float64), SAMPLE_RATE, frame_period=10.0)
    v = f0[f0 > 0]
    return float(np.median(v)) if v.size else 0.0


__all__ = ["Job", "SYSTEMS", "TEXT_FAMILIES", "RECIPES", "FAMILIES", "require_tool", "median_f0", "warp_envelope"]
