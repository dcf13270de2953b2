"""Additive noise attacks: white, pink, background recordings, and RawBoost."""
from __future__ import annotations

import numpy as np
from scipy import signal as sps

from .base import Attack, fit_length, noise_for_snr, register


def pink_noise(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """1/f (pink) noise with unit standard deviation, shaped in the frequency domain."""
    n = shape[-1]
    spec = rng.standard_normal(shape[:-1] + (n // 2 + 1,)) + 1j * rng.standard_normal(shape[:-1] + (n // 2 + 1,))
    f = np.arange(n // 2 + 1, dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(f), n=n)
    return (x / (x.std(axis=-1, keepdims=True) + 1e-12)).astype(np.float32)


class _Additive(Attack):
    """Noise at ``snr_db`` (whole-clip power ratio) or with an absolute standard deviation ``sigma``."""

    DEFAULTS = {"snr_db": 20.0, "sigma": None}
    RANGES = ("snr_db", "sigma")
    differentiable = True

    def make_noise(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def apply(self, samples, sample_rate, params):
        noise = self.make_noise(samples.shape, np.random.default_rng(params["noise_seed"]))
        if params["sigma"] is not None:
            return samples + float(params["sigma"]) * noise
        return samples + noise_for_snr(samples, noise, float(params["snr_db"])).astype(np.float32)

    def apply_torch(self, wav, sample_rate, params):
        import torch

        noise = torch.from_numpy(self.make_noise(tuple(wav.shape), np.random.default_rng(params["noise_seed"])))
        noise = noise.to(wav.device, wav.dtype)
        if params["sigma"] is not None:
            return wav + float(params["sigma"]) * noise
        ps = wav.detach().pow(2).mean(dim=-1, keepdim=True)
        pn = noise.pow(2).mean(dim=-1, keepdim=True)
        return wav + noise * torch.sqrt(ps / (pn * 10 ** (float(params["snr_db"]) / 10)))


@register
class WhiteNoise(_Additive):
    name = "white_noise"
    description = "Gaussian white noise at an SNR (dB) or absolute sigma"

    def make_noise(self, shape, rng):
        return rng.standard_normal(shape).astype(np.float32)


@register
class PinkNoise(_Additive):
    name = "pink_noise"
    description = "1/f pink noise at an SNR (dB) or absolute sigma"

    def make_noise(self, shape, rng):
        return pink_noise(shape, rng)


@register
class BackgroundNoise(Attack):
    name = "background_noise"
    description = "a recording (file, or a random file of a folder) mixed in at an SNR"
    DEFAULTS = {"noise": None, "snr_db": 10.0}
    RANGES = ("snr_db",)

    def __init__(self, seed=None, **params):
        super().__init__(seed, **params)
        if not self.params["noise"]:
            raise ValueError("background_noise needs noise=FILE_OR_FOLDER of noise recordings")
        from voiceguard.audio import find_audio_files

        self.files, _ = find_audio_files([self.params["noise"]])
        if not self.files:
            raise ValueError(f"background_noise: no audio file found at {self.params['noise']}")

    def randomize_parameters(self, samples, sample_rate):
        p = super().randomize_parameters(samples, sample_rate)
        p["file"] = str(self.files[int(self.rng.integers(len(self.files)))])
        return p

    def apply(self, samples, sample_rate, params):
        from voiceguard.audio import load_audio

        noise, _ = load_audio(params["file"], target_sr=sample_rate, mono=True)
        rng = np.random.default_rng(params["noise_seed"])
        n = samples.shape[-1]
        reps = int(np.ceil(n / noise.shape[-1])) + 1
        tiled = np.tile(noise, (1, reps))
        start = int(rng.integers(0, tiled.shape[-1] - n + 1))
        seg = np.broadcast_to(tiled[:, start:start + n], samples.shape)
        return samples + noise_for_snr(samples, seg, float(params["snr_db"])).astype(np.float32)


# --------------------------------------------------------------------------- RawBoost
def _random_fir(rng, sr, n_bands, min_f, max_f, min_bw, max_bw, min_coeff, max_coeff, min_g, max_g) -> np.ndarray:
    """A sum of random band-pass FIR filters (RawBoost's notch-filter bank)."""
    b = np.zeros(1)
    for _ in range(n_bands):
        fc = rng.uniform(min_f, max_f)
        bw = rng.uniform(min_bw, max_bw)
        c = int(rng.integers(min_coeff, max_coeff + 1))
        c += (c + 1) % 2  # odd length
        lo, hi = max(fc - bw / 2, 1.0), min(fc + bw / 2, sr / 2 - 1)
        if hi <= lo:
            continue
        taps = sps.firwin(c, [lo, hi], pass_zero=False, fs=sr)
        g = 10 ** (rng.uniform(min_g, max_g) / 20)
        b = np.pad(b, (0, max(0, taps.size - b.size))) + np.pad(taps * g, (0, max(0, b.size - taps.size)))
    return b / (np.abs(np.fft.rfft(b, 1024)).max() + 1e-12)


def rawboost_lnl(x, sr, rng, n_f=5, n_bands=5) -> np.ndarray:
    """Linear and non-linear convolutive noise: a sum of random filters applied to powers of x."""
    y = np.zeros_like(x)
    for i in range(1, n_f + 1):
        b = _random_fir(rng, sr, n_bands, 20, 8000 if sr >= 16000 else sr / 2 - 100, 100, 1000, 10, 100, 0, 0)
        y += sps.lfilter(b, 1.0, np.power(x, i) * rng.uniform(0.5, 1.0) / i, axis=-1)
    y = y - y.mean(axis=-1, keepdims=True)
    peak = np.abs(y).max()
    return (y / peak * np.abs(x).max()) if peak > 0 else y


def rawboost_isd(x, rng, p_percent=10.0, g_sd=2.0) -> np.ndarray:
    """Impulsive signal-dependent noise on a random P % of the samples."""
    y = x.copy()
    n = x.shape[-1]
    k = int(n * p_percent / 100)
    idx = rng.choice(n, size=k, replace=False)
    f = (2 * rng.uniform(size=k) - 1) * (2 * rng.uniform(size=k) - 1)
    y[..., idx] = x[..., idx] + g_sd * x[..., idx] * f
    return y


def rawboost_ssi(x, sr, rng, snr_min=10.0, snr_max=40.0) -> np.ndarray:
    """Stationary signal-independent noise: coloured white noise at a random SNR."""
    noise = rng.standard_normal(x.shape)
    b = _random_fir(rng, sr, 5, 20, min(8000, sr / 2 - 100), 100, 1000, 10, 100, -20, 5)
    noise = sps.lfilter(b, 1.0, noise, axis=-1)
    return x + noise_for_snr(x, noise, rng.uniform(snr_min, snr_max))


@register
class RawBoost(Attack):
    """RawBoost data augmentation (Tak et al., ICASSP 2022), written from the paper.

    ``algo``: 1 LnL, 2 ISD, 3 SSI, 4 = 1+2+3 in series, 5 = 1+2, 6 = 1+3, 7 = 2+3, 8 = 1||2 in parallel.
    """

    name = "rawboost"
    description = "RawBoost: convolutive (1), impulsive (2), coloured additive (3) noise and combinations (4-8)"
    DEFAULTS = {"algo": 5}

    def apply(self, samples, sample_rate, params):
        rng = np.random.default_rng(params["noise_seed"])
        x = samples.astype(np.float64)
        algo = int(params["algo"])
        lnl = lambda v: rawboost_lnl(v, sample_rate, rng)  # noqa: E731
        isd = lambda v: rawboost_isd(v, rng)  # noqa: E731
        ssi = lambda v: rawboost_ssi(v, sample_rate, rng)  # noqa: E731
        chains = {1: [lnl], 2: [isd], 3: [ssi], 4: [lnl, isd, ssi], 5: [lnl, isd], 6: [lnl, ssi], 7: [isd, ssi]}
        if algo == 8:
            a, b = lnl(x), isd(x)
            y = a + b
            peak = np.abs(y).max()
            y = y / peak * np.abs(x).max() if peak > 0 else y
        elif algo in chains:
            y = x
            for f in chains[algo]:
                y = f(y)
        else:
            raise ValueError(f"rawboost algo must be 1..8, got {algo}")
        return fit_length(y.astype(np.float32), samples.shape[-1])


__all__ = ["WhiteNoise", "PinkNoise", "BackgroundNoise", "RawBoost", "pink_noise"]
