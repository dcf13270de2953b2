"""Front-end features, written once: LFCC and CQCC (the ASVspoof baseline features), with deltas.

All functions take float mono audio ``[n]`` at 16 kHz and return ``[frames, dims]`` float32.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.fft import dct
from voiceguard.audio import SAMPLE_RATE

DITHER = 1e-5  # ~-100 dBFS of fixed-seed noise (as Kaldi's dither): digital silence gives finite log energies


def dithered(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32).ravel()
    return x + np.float32(DITHER) * np.random.default_rng(0).standard_normal(x.size, dtype=np.float32)


def delta_frames(feat, width: int = 3):
    """Regression deltas over +-``width`` frames (edges repeated): torch ``[B, frames, d] -> [B, frames, d]``."""
    import torch

    b, t, d = feat.shape
    k = torch.arange(-width, width + 1, dtype=feat.dtype, device=feat.device)
    x = torch.nn.functional.pad(feat.transpose(1, 2).reshape(b * d, 1, t), (width, width), mode="replicate")
    return torch.nn.functional.conv1d(x, (k / k.square().sum()).view(1, 1, -1)).reshape(b, d, t).transpose(1, 2)


def deltas(feat: np.ndarray, width: int = 3) -> np.ndarray:
    """:func:`delta_frames` of a numpy ``[frames, d]`` array."""
    import torch

    with torch.inference_mode():
        return delta_frames(torch.from_numpy(np.ascontiguousarray(feat, dtype=np.float32))[None], width)[0].numpy()


def with_deltas(static: np.ndarray) -> np.ndarray:
    d1 = deltas(static)
    return np.concatenate([static, d1, deltas(d1)], axis=1)


def linear_filterbank(n_filters: int, n_fft: int, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Triangular filters equally spaced on a linear frequency axis, ``[n_filters, n_fft // 2 + 1]``."""
    edges = np.linspace(0, sr / 2, n_filters + 2)
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    fb = np.zeros((n_filters, freqs.size))
    for i in range(n_filters):
        lo, mid, hi = edges[i], edges[i + 1], edges[i + 2]
        fb[i] = np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), 0, None)
    return fb


def stft_frames(x, window, hop: int, n_fft: int):
    """``[B, n]`` -> ``[B, frames, n_fft // 2 + 1]`` complex spectra of windowed frames (no centring: the
    first frame starts at sample 0; signals shorter than a window are zero-padded to one frame)."""
    import torch

    win = window.numel()
    if x.shape[-1] < win:
        x = torch.nn.functional.pad(x, (0, win - x.shape[-1]))
    return torch.fft.rfft(x.unfold(-1, win, hop) * window, n=n_fft)


def power_frames(x, window, hop: int, n_fft: int):
    """Power spectra of :func:`stft_frames`."""
    spec = stft_frames(x, window, hop, n_fft)
    return spec.real.square() + spec.imag.square()


def spectral_statistics_module(sr: int = SAMPLE_RATE, *, win_ms: float = 32.0, hop_ms: float = 10.0, n_fft: int = 512):
    """A torch ``nn.Module``: ``[B, n]`` -> ``[B, 8 * (n_fft // 2 + 1)]`` per-frequency-bin statistics over
    time of the magnitude and the phase of the STFT (hann window):

    - log power (level-normalised: the utterance mean is subtracted): mean, standard deviation, mean
      absolute change across time and across frequency;
    - phase: instantaneous-frequency deviation (phase advance between frames minus the advance of the
      bin's centre frequency) and group delay (phase change across bins), each as the length of the mean
      unit phasor (how regular) and the mean absolute angle.

    Vocoders and phase reconstruction (Griffin-Lim) leave their marks in exactly these statistics.
    """
    import torch
    from torch import nn

    win, hop = int(sr * win_ms / 1000), int(sr * hop_ms / 1000)
    bins = n_fft // 2 + 1

    class SpectralStatistics(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("window", torch.hann_window(win, periodic=False), persistent=False)
            advance = torch.exp(-2j * torch.pi * torch.arange(bins) * hop / n_fft)
            self.register_buffer("advance", advance.to(torch.complex64), persistent=False)

        def forward(self, x: "torch.Tensor") -> "torch.Tensor":
            spec = stft_frames(x, self.window, hop, n_fft)  # [B, T, F]
            mag = spec.abs()
            logp = torch.log(mag.pow(2) + 1e-8)
            logp = logp - logp.mean(dim=(1, 2), keepdim=True)
            unit = spec / (mag + 1e-6)
            ifd = unit[:, 1:] * unit[:, :-1].conj() * self.advance  # [B, T-1, F]
            gd = nn.functional.pad(unit[:, :, 1:] * unit[:, :, :-1].conj(), (0, 1))  # [B, T, F]
            feats = [logp.mean(1), logp.std(1), (logp[:, 1:] - logp[:, :-1]).abs().mean(1),
                     nn.functional.pad((logp[:, :, 1:] - logp[:, :, :-1]).abs(), (0, 1)).mean(1),
                     ifd.mean(1).abs(), ifd.angle().abs().mean(1), gd.mean(1).abs(), gd.angle().abs().mean(1)]
            return torch.cat(feats, dim=1)

    return SpectralStatistics()


def lfcc_module(sr: int = SAMPLE_RATE, *, win_ms: float = 20.0, hop_ms: float = 10.0, n_fft: int = 512,
                n_filters: int = 20, n_ceps: int = 20, use_deltas: bool = True, level_norm: bool = False):
    """A torch ``nn.Module``: ``[B, n]`` waveforms -> ``[B, frames, dims]`` linear-frequency cepstra
    (hamming frames, power spectrum, linear triangular filters, log, orthonormal DCT-II, optional
    deltas; ``level_norm`` subtracts the utterance mean of c0, which makes the features independent of the
    recording level while keeping the spectral shape)."""
    import torch
    from torch import nn

    win, hop = int(sr * win_ms / 1000), int(sr * hop_ms / 1000)

    class LfccFrontEnd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            dct_matrix = dct(np.eye(n_filters), type=2, axis=0, norm="ortho")[:n_ceps].T  # [filters, ceps]
            self.register_buffer("window", torch.from_numpy(np.hamming(win).astype(np.float32)), persistent=False)
            self.register_buffer("fbank", torch.from_numpy(linear_filterbank(n_filters, n_fft, sr).T.astype(
                np.float32)), persistent=False)
            self.register_buffer("dct", torch.from_numpy(dct_matrix.astype(np.float32)), persistent=False)

        def forward(self, x: "torch.Tensor") -> "torch.Tensor":
            energies = power_frames(x, self.window, hop, n_fft) @ self.fbank
            ceps = torch.log(energies + torch.finfo(torch.float32).eps) @ self.dct
            if level_norm:
                c0 = ceps[..., :1]
                ceps = torch.cat([c0 - c0.mean(dim=1, keepdim=True), ceps[..., 1:]], dim=-1)
            if not use_deltas:
                return ceps
            d1 = delta_frames(ceps)
            return torch.cat([ceps, d1, delta_frames(d1)], dim=-1)

    return LfccFrontEnd()


@lru_cache(maxsize=8)
def _cached_lfcc_module(**kw):
    return lfcc_module(**kw)


def lfcc(x: np.ndarray, sr: int = SAMPLE_RATE, *, win_ms: float = 20.0, hop_ms: float = 10.0, n_fft: int = 512,
         n_filters: int = 20, n_ceps: int = 20, use_deltas: bool = True) -> np.ndarray:
    """Linear-frequency cepstral coefficients (ASVspoof 2019 baseline: 20 ms, 20 filters, 20 coefficients,
    plus deltas and double deltas = 60 dims), ``[frames, dims]`` float32."""
    import torch

    module = _cached_lfcc_module(sr=sr, win_ms=win_ms, hop_ms=hop_ms, n_fft=n_fft, n_filters=n_filters,
                                 n_ceps=n_ceps, use_deltas=use_deltas)
    with torch.inference_mode():
        out = module(torch.from_numpy(dithered(x))[None])
    return out[0].numpy()


def cqcc(x: np.ndarray, sr: int = SAMPLE_RATE, *, bins_per_octave: int = 48, n_octaves: int = 8, hop: int = 128,
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
