"""Front-end features, written once: LFCC and CQCC (the ASVspoof baseline features), with deltas.

All functions take float mono audio ``[n]`` at 16 kHz and return ``[frames, dims]`` float32.
"""
from __future__ import annotations

import numpy as np
from scipy.fft import dct

SR = 16000
DITHER = 1e-5  # ~-100 dBFS of fixed-seed noise (as Kaldi's dither): digital silence gives finite log energies


def dithered(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).ravel()
    return x + DITHER * np.random.default_rng(0).standard_normal(x.size)


def deltas(feat: np.ndarray, width: int = 3) -> np.ndarray:
    """Regression deltas over +-``width`` frames (edges repeated), ``[frames, d] -> [frames, d]``."""
    n = feat.shape[0]
    padded = np.pad(feat, ((width, width), (0, 0)), mode="edge")
    k = np.arange(-width, width + 1)
    num = sum(kk * padded[width + kk: width + kk + n] for kk in k if kk != 0)
    return (num / np.sum(k ** 2)).astype(np.float32)


def with_deltas(static: np.ndarray) -> np.ndarray:
    d1 = deltas(static)
    return np.concatenate([static, d1, deltas(d1)], axis=1)


def _frames(x: np.ndarray, win: int, hop: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.size < win:
        x = np.pad(x, (0, win - x.size))
    n = 1 + (x.size - win) // hop
    idx = np.arange(win)[None, :] + hop * np.arange(n)[:, None]
    return x[idx]


def linear_filterbank(n_filters: int, n_fft: int, sr: int = SR) -> np.ndarray:
    """Triangular filters equally spaced on a linear frequency axis, ``[n_filters, n_fft // 2 + 1]``."""
    edges = np.linspace(0, sr / 2, n_filters + 2)
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    fb = np.zeros((n_filters, freqs.size))
    for i in range(n_filters):
        lo, mid, hi = edges[i], edges[i + 1], edges[i + 2]
        fb[i] = np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), 0, None)
    return fb


def lfcc(x: np.ndarray, sr: int = SR, *, win_ms: float = 20.0, hop_ms: float = 10.0, n_fft: int = 512,
         n_filters: int = 20, n_ceps: int = 20, use_deltas: bool = True) -> np.ndarray:
    """Linear-frequency cepstral coefficients (ASVspoof 2019 baseline: 20 ms, 20 filters, 20 coefficients,
    plus deltas and double deltas = 60 dims)."""
    win, hop = int(sr * win_ms / 1000), int(sr * hop_ms / 1000)
    frames = _frames(dithered(x), win, hop) * np.hamming(win)
    power = np.abs(np.fft.rfft(frames, n=n_fft)) ** 2
    energies = power @ linear_filterbank(n_filters, n_fft, sr).T
    ceps = dct(np.log(energies + np.finfo(float).eps), type=2, axis=1, norm="ortho")[:, :n_ceps]
    ceps = ceps.astype(np.float32)
    return with_deltas(ceps) if use_deltas else ceps


def cqcc(x: np.ndarray, sr: int = SR, *, bins_per_octave: int = 48, n_octaves: int = 8, hop: int = 128,
         n_uniform: int = 256, n_ceps: int = 20, use_deltas: bool = True) -> np.ndarray:
    """Constant-Q cepstral coefficients: log-power CQT, resampled to a uniform frequency axis, then DCT
    (Todisco et al. 2017; 48 bins per octave instead of the paper's 96, for speed)."""
    import librosa

    fmax = sr / 2
    fmin = fmax / 2 ** n_octaves
    c = librosa.cqt(dithered(x), sr=sr, hop_length=hop, fmin=fmin,
                    n_bins=bins_per_octave * n_octaves - 1, bins_per_octave=bins_per_octave)
    logp = np.log(np.abs(c) ** 2 + np.finfo(np.float32).eps)  # [bins, frames], geometric frequency axis
    geo = fmin * 2.0 ** (np.arange(logp.shape[0]) / bins_per_octave)
    uniform = np.linspace(geo[0], geo[-1], n_uniform)
    resampled = np.stack([np.interp(uniform, geo, col) for col in logp.T])  # [frames, n_uniform]
    ceps = dct(resampled, type=2, axis=1, norm="ortho")[:, :n_ceps].astype(np.float32)
    return with_deltas(ceps) if use_deltas else ceps


FEATURES = {"lfcc": lfcc, "cqcc": cqcc}
