"""Filtering, resampling, timing and level attacks (numpy, with torch twins where training needs them)."""
from __future__ import annotations

import numpy as np
from scipy import signal as sps

from voiceguard.audio import resample

from .base import Attack, fit_length, register

# --------------------------------------------------------------------------- filters


def _butter_sos(kind: str, sr: int, low: float | None, high: float | None, order: int):
    nyq = sr / 2
    if kind == "lowpass":
        return sps.butter(order, min(high, nyq * 0.999), "lowpass", fs=sr, output="sos")
    if kind == "highpass":
        return sps.butter(order, min(low, nyq * 0.999), "highpass", fs=sr, output="sos")
    return sps.butter(order, [low, min(high, nyq * 0.999)], "bandpass", fs=sr, output="sos")


class _Filter(Attack):
    """Zero-phase Butterworth filter (``sosfiltfilt``: no delay, so localisation stays aligned)."""

    kind = "lowpass"
    differentiable = True
    RANGES = ("cutoff_hz", "low_hz", "high_hz")

    def _band(self, params) -> tuple[float | None, float | None]:
        raise NotImplementedError

    def apply(self, samples, sample_rate, params):
        low, high = self._band(params)
        if (high is not None and high >= sample_rate / 2) and low is None:
            return samples.copy()  # cutoff above Nyquist: nothing to remove
        sos = _butter_sos(self.kind, sample_rate, low, high, int(params["order"]))
        padlen = min(samples.shape[-1] - 1, 3 * (2 * len(sos) + 1))
        return sps.sosfiltfilt(sos, samples, axis=-1, padlen=padlen).astype(np.float32)

    def apply_torch(self, wav, sample_rate, params):
        """The same zero-phase response applied as |H(f)|^2 in the frequency domain."""
        import torch

        low, high = self._band(params)
        n = wav.shape[-1]
        if (high is not None and high >= sample_rate / 2) and low is None:
            return wav
        sos = _butter_sos(self.kind, sample_rate, low, high, int(params["order"]))
        _, h = sps.sosfreqz(sos, worN=n // 2 + 1, whole=False, fs=sample_rate)
        mask = torch.as_tensor(np.abs(h) ** 2, dtype=wav.dtype, device=wav.device)
        return torch.fft.irfft(torch.fft.rfft(wav, dim=-1) * mask, n=n, dim=-1)


@register
class Lowpass(_Filter):
    name = "lowpass"
    description = "Butterworth low-pass at cutoff_hz"
    kind = "lowpass"
    DEFAULTS = {"cutoff_hz": 5000.0, "order": 5}

    def _band(self, p):
        return None, float(p["cutoff_hz"])


@register
class Highpass(_Filter):
    name = "highpass"
    description = "Butterworth high-pass at cutoff_hz"
    kind = "highpass"
    DEFAULTS = {"cutoff_hz": 500.0, "order": 5}

    def _band(self, p):
        return float(p["cutoff_hz"]), None


@register
class Bandpass(_Filter):
    name = "bandpass"
    description = "Butterworth band-pass between low_hz and high_hz"
    kind = "bandpass"
    DEFAULTS = {"low_hz": 500.0, "high_hz": 5000.0, "order": 5}

    def _band(self, p):
        return float(p["low_hz"]), float(p["high_hz"])


@register
class Smooth(Attack):
    name = "smooth"
    description = "moving-average smoothing over window samples"
    DEFAULTS = {"window": 40}
    differentiable = True

    def apply(self, samples, sample_rate, params):
        w = max(1, int(params["window"]))
        kernel = np.ones(w) / w
        return np.stack([np.convolve(c, kernel, mode="same") for c in samples]).astype(np.float32)

    def apply_torch(self, wav, sample_rate, params):
        import torch.nn.functional as F

        w = max(1, int(params["window"]))
        flat = wav.reshape(-1, 1, wav.shape[-1])
        kernel = wav.new_ones(1, 1, w) / w
        out = F.conv1d(F.pad(flat, ((w - 1) // 2, w // 2)), kernel)
        return out.reshape(wav.shape)


@register
class Resample(Attack):
    name = "resample"
    description = "resample to rate_hz and back (band-limits to rate_hz / 2)"
    DEFAULTS = {"rate_hz": 8000}
    differentiable = True

    def apply(self, samples, sample_rate, params):
        mid = int(params["rate_hz"])
        return fit_length(resample(resample(samples, sample_rate, mid), mid, sample_rate), samples.shape[-1])

    def apply_torch(self, wav, sample_rate, params):
        import torch.nn.functional as F
        import torchaudio.functional as AF

        mid = int(params["rate_hz"])
        y = AF.resample(AF.resample(wav, sample_rate, mid), mid, sample_rate)
        n = wav.shape[-1]
        return y[..., :n] if y.shape[-1] >= n else F.pad(y, (0, n - y.shape[-1]))


# --------------------------------------------------------------------------- time / pitch
@register
class Speed(Attack):
    name = "speed"
    description = "play faster/slower (changes length and pitch, like a tape)"
    DEFAULTS = {"factor": 1.25}
    RANGES = ("factor",)
    preserves_length = False
    differentiable = True

    def apply(self, samples, sample_rate, params):
        f = float(params["factor"])
        # reading the signal f times faster = resampling sr*f -> sr
        return resample(samples, int(round(sample_rate * f)), sample_rate)

    def apply_torch(self, wav, sample_rate, params):
        import torchaudio.functional as AF

        return AF.resample(wav, int(round(sample_rate * float(params["factor"]))), sample_rate)


@register
class PitchShift(Attack):
    name = "pitch_shift"
    description = "shift pitch by semitones, keeping the duration (librosa)"
    DEFAULTS = {"semitones": 2.0}
    RANGES = ("semitones",)

    def apply(self, samples, sample_rate, params):
        import librosa

        ratio = 2.0 ** (float(params["semitones"]) / 12)
        # phase-vocoder stretch by `ratio` (same pitch, longer), then resample back to the original duration
        stretched = np.stack([librosa.effects.time_stretch(c, rate=1 / ratio) for c in samples])
        y = resample(stretched.astype(np.float32), int(round(sample_rate * ratio)), sample_rate)
        return fit_length(y, samples.shape[-1])


@register
class TimeStretch(Attack):
    name = "time_stretch"
    description = "stretch time by rate (> 1 faster), keeping the pitch (librosa phase vocoder)"
    DEFAULTS = {"rate": 1.1}
    RANGES = ("rate",)
    preserves_length = False

    def apply(self, samples, sample_rate, params):
        import librosa

        return np.stack([librosa.effects.time_stretch(c, rate=float(params["rate"])) for c in samples])


# --------------------------------------------------------------------------- room / echo
@register
class Echo(Attack):
    name = "echo"
    description = "one echo: delay_s later, at volume"
    DEFAULTS = {"delay_s": 0.5, "volume": 0.5}
    RANGES = ("delay_s", "volume")
    differentiable = True

    def apply(self, samples, sample_rate, params):
        d = int(round(float(params["delay_s"]) * sample_rate))
        y = samples.copy()
        if 0 < d < samples.shape[-1]:
            y[:, d:] += float(params["volume"]) * samples[:, :-d]
        return y / max(1.0, float(np.abs(y).max()) / max(float(np.abs(samples).max()), 1e-9))

    def apply_torch(self, wav, sample_rate, params):
        import torch.nn.functional as F

        d = int(round(float(params["delay_s"]) * sample_rate))
        if not 0 < d < wav.shape[-1]:
            return wav
        y = wav + float(params["volume"]) * F.pad(wav[..., :-d], (d, 0))
        scale = (y.detach().abs().amax(-1, keepdim=True) / wav.detach().abs().amax(-1, keepdim=True).clamp_min(1e-9))
        return y / scale.clamp_min(1.0)


def synthetic_rir(sample_rate: int, rt60: float, rng: np.random.Generator, predelay_s: float = 0.0) -> np.ndarray:
    """An exponentially decaying noise impulse response with the given RT60 (60 dB decay time)."""
    n = max(1, int(rt60 * sample_rate))
    t = np.arange(n) / sample_rate
    rir = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)  # ln(1000) = 60 dB
    rir = np.concatenate([np.zeros(int(predelay_s * sample_rate)), rir])
    rir[0] = 1.0  # direct path
    return rir / np.sqrt(np.sum(rir ** 2))


@register
class Reverb(Attack):
    name = "reverb"
    description = "convolution with a synthetic room impulse response (RT60 seconds), wet/dry mix"
    DEFAULTS = {"rt60": 0.5, "wet": 1.0}
    RANGES = ("rt60", "wet")

    def apply(self, samples, sample_rate, params):
        rir = synthetic_rir(sample_rate, float(params["rt60"]), np.random.default_rng(params["noise_seed"]))
        wet = sps.fftconvolve(samples, rir[None, :], axes=-1)[:, : samples.shape[-1]]
        w = float(params["wet"])
        y = (1 - w) * samples + w * wet
        peak_in, peak_out = np.abs(samples).max(), np.abs(y).max()
        return (y * (peak_in / peak_out) if peak_out > 0 else y).astype(np.float32)


# --------------------------------------------------------------------------- level / samples
@register
class Gain(Attack):
    name = "gain"
    description = "multiply by factor (boost > 1, duck < 1); no clipping"
    DEFAULTS = {"factor": 1.2}
    RANGES = ("factor",)
    differentiable = True

    def apply(self, samples, sample_rate, params):
        return samples * float(params["factor"])

    def apply_torch(self, wav, sample_rate, params):
        return wav * float(params["factor"])


@register
class Requantize(Attack):
    name = "requantize"
    description = "round to a bits-bit grid"
    DEFAULTS = {"bits": 8}
    differentiable = True

    def apply(self, samples, sample_rate, params):
        q = 2 ** (int(params["bits"]) - 1)
        return np.round(np.clip(samples, -1, 1) * q) / q

    def apply_torch(self, wav, sample_rate, params):
        q = 2 ** (int(params["bits"]) - 1)
        hard = (wav.clamp(-1, 1) * q).round() / q
        return wav + (hard - wav).detach()  # straight-through estimator


@register
class Clip(Attack):
    name = "clip"
    description = "hard-clip at threshold (fraction of the peak)"
    DEFAULTS = {"threshold": 0.5}
    RANGES = ("threshold",)

    def apply(self, samples, sample_rate, params):
        t = float(params["threshold"]) * float(np.abs(samples).max())
        return np.clip(samples, -t, t)


@register
class Polarity(Attack):
    name = "polarity"
    description = "invert the sign of every sample"
    differentiable = True

    def apply(self, samples, sample_rate, params):
        return -samples

    def apply_torch(self, wav, sample_rate, params):
        return -wav


@register
class Identity(Attack):
    name = "none"
    description = "no change (the clean condition of a suite)"
    differentiable = True

    def apply(self, samples, sample_rate, params):
        return samples.copy()

    def apply_torch(self, wav, sample_rate, params):
        return wav


# --------------------------------------------------------------------------- edits
@register
class PacketLoss(Attack):
    name = "packet_loss"
    description = "zero out frame_ms packets with probability rate"
    DEFAULTS = {"rate": 0.1, "frame_ms": 20.0}
    RANGES = ("rate",)

    def apply(self, samples, sample_rate, params):
        rng = np.random.default_rng(params["noise_seed"])
        frame = max(1, int(round(float(params["frame_ms"]) * sample_rate / 1000)))
        n_frames = int(np.ceil(samples.shape[-1] / frame))
        lost = np.repeat(rng.random(n_frames) < float(params["rate"]), frame)[: samples.shape[-1]]
        y = samples.copy()
        y[:, lost] = 0.0
        return y


@register
class Crop(Attack):
    name = "crop"
    description = "keep a random fraction of the clip (length changes)"
    DEFAULTS = {"keep": 0.5}
    RANGES = ("keep",)
    preserves_length = False

    def apply(self, samples, sample_rate, params):
        n = samples.shape[-1]
        k = max(1, int(round(n * float(params["keep"]))))
        start = int(np.random.default_rng(params["noise_seed"]).integers(0, n - k + 1))
        return samples[:, start:start + k].copy()


@register
class Shuffle(Attack):
    name = "shuffle"
    description = "cut into segments of segment_s and shuffle their order"
    DEFAULTS = {"segment_s": 0.5}

    def apply(self, samples, sample_rate, params):
        seg = max(1, int(round(float(params["segment_s"]) * sample_rate)))
        pieces = [samples[:, i:i + seg] for i in range(0, samples.shape[-1], seg)]
        order = np.random.default_rng(params["noise_seed"]).permutation(len(pieces))
        return np.concatenate([pieces[i] for i in order], axis=1)


@register
class Splice(Attack):
    name = "splice"
    description = "replace a fraction of the clip by a segment of other audio (another file or a shifted copy)"
    DEFAULTS = {"fraction": 0.3, "other": None}
    RANGES = ("fraction",)

    def apply(self, samples, sample_rate, params):
        rng = np.random.default_rng(params["noise_seed"])
        n = samples.shape[-1]
        k = max(1, int(n * float(params["fraction"])))
        if params["other"]:
            from voiceguard.audio import load_audio

            other, _ = load_audio(params["other"], target_sr=sample_rate, mono=True)
            other = np.broadcast_to(np.tile(other, (1, int(np.ceil(n / other.shape[-1])))), (samples.shape[0], n))
        else:
            other = np.roll(samples, n // 2, axis=-1)
        start = int(rng.integers(0, n - k + 1))
        y = samples.copy()
        y[:, start:start + k] = other[:, start:start + k]
        return y
