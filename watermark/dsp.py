"""A classic spread-spectrum watermark (no training): the non-neural baseline behind the same interface.

Each 1-second block carries a key-derived pseudo-noise "sync" sequence plus one sequence per message bit
(sign = bit), band-limited to 1.6-4.8 kHz (inside lowpass-5k / highpass-1500 / telephone bands) and
shaped by the host's short-time level so it sits ``snr_db`` below the speech.  Detection whitens the
signal (unit STFT magnitude in the band), correlates it with the sync sequence at every lag, folds the
lags modulo the block hop (all blocks share the sequence, so their evidence adds up), and reads the bits
by correlation at the winning lags.  Survives filtering, noise, codecs and level changes; does not
survive speed changes (no resynchronisation), which is what the neural engine is for.
"""
from __future__ import annotations

import numpy as np

from voiceguard.audio import SAMPLE_RATE

from .base import HOP, Watermarker, register

BAND = (1600.0, 4800.0)
NFFT = 512


def _whiten(x: np.ndarray) -> np.ndarray:
    """Unit-magnitude STFT inside ``BAND``, zero outside (phase transform)."""
    import torch

    n = len(x)
    xt = torch.from_numpy(np.ascontiguousarray(np.pad(x, (0, max(0, NFFT - n))), dtype=np.float32))  # >= 1 frame
    win = torch.hann_window(NFFT)
    spec = torch.stft(xt, NFFT, NFFT // 4, window=win, return_complex=True, center=True)
    freqs = torch.arange(spec.shape[0]) * SAMPLE_RATE / NFFT
    band = ((freqs >= BAND[0]) & (freqs <= BAND[1])).float()[:, None]
    spec = spec / (spec.abs() + 1e-6) * band
    return torch.istft(spec, NFFT, NFFT // 4, window=win, length=len(xt), center=True).numpy()[:n]


@register
class SpreadSpectrumEngine(Watermarker):
    name = "spread-spectrum"
    #: the sync correlation needs about 0.3 s of host to clear its threshold; 0.5 s leaves a margin
    min_seconds = 0.5

    def __init__(self, key: int = 0x5EED, snr_db: float = 28.0, **kwargs):
        kwargs.setdefault("threshold", 0.5)
        super().__init__(**kwargs)
        self.key = int(key)
        self.snr_db = float(snr_db)
        n = int(self.block_seconds * SAMPLE_RATE)
        rng = np.random.default_rng(self.key)
        noise = rng.standard_normal((self.nbits + 1, n))
        spec = np.fft.rfft(noise, axis=-1)
        freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
        spec[:, (freqs < BAND[0]) | (freqs > BAND[1])] = 0
        seqs = np.fft.irfft(spec, n=n, axis=-1)
        self.sequences = (seqs / seqs.std(axis=-1, keepdims=True)).astype(np.float32)  # [1 + nbits, n]

    @classmethod
    def load(cls, *, need: str = "both", key: int = 0x5EED, snr_db: float = 28.0, threshold: float = 0.5,
             strength: float = 1.0) -> "SpreadSpectrumEngine":
        """Subclass contract (``load_watermarker("spread-spectrum", ...)`` is the getter); one object both
        embeds and detects, so ``need`` changes nothing."""
        return cls(key=key, snr_db=snr_db, threshold=threshold, strength=strength)

    def watermark_blocks(self, x: np.ndarray, bits: np.ndarray) -> np.ndarray:
        signs = 2.0 * np.asarray(bits, dtype=np.float32) - 1.0
        pattern = (self.sequences[0] + signs @ self.sequences[1:]) / np.sqrt(self.nbits + 1)
        # host level per 20 ms frame (max of neighbours so onsets are covered), linearly interpolated
        frame = SAMPLE_RATE // 50
        n = x.shape[-1]
        m = n // frame
        rms = np.sqrt(np.mean(x[:, :m * frame].reshape(len(x), m, frame) ** 2, axis=-1) + 1e-12)
        rms = np.maximum(rms, np.maximum(np.roll(rms, 1, -1), np.roll(rms, -1, -1)))
        centers = (np.arange(m) + 0.5) * frame
        env = np.stack([np.interp(np.arange(n), centers, r) for r in rms])
        return (env * pattern[None, :n] * 10 ** (-self.snr_db / 20)).astype(np.float32)

    def frame_scores(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from scipy.signal import fftconvolve

        n_frames = max(1, len(x) // HOP)
        seq = self.sequences
        L = seq.shape[1]
        hop = L - int(round(self.overlap_seconds * SAMPLE_RATE))
        y = _whiten(x)
        if len(y) < L:
            y = np.pad(y, (0, L - len(y)))
        corr = fftconvolve(y, seq[0][::-1], mode="valid")  # lag l: <y[l:l+L], s0>
        energy = np.concatenate([[0.0], np.cumsum(y.astype(np.float64) ** 2)])
        seg_norm = np.sqrt(np.maximum(energy[L:] - energy[:-L], 1e-12))  # ||y[l:l+L]||
        unit = np.sqrt(L) / np.linalg.norm(seq, axis=1)  # normalised correlation * sqrt(L): ~N(0, 1) unmarked
        z = corr / seg_norm * unit[0]
        period = min(hop, len(z))
        phase = np.arange(len(z)) % period
        folded = np.bincount(phase, weights=z, minlength=period)  # lags one block apart add up
        r = int(np.argmax(folded / np.sqrt(np.bincount(phase, minlength=period))))
        starts = np.arange(r, len(z), period)
        segments = np.stack([y[s:s + L] for s in starts])
        zb = segments @ seq[1:].T / seg_norm[starts][:, None] * unit[1:]
        presence = np.zeros(n_frames, dtype=np.float32)
        logits = np.zeros((n_frames, self.nbits), dtype=np.float32)
        for k, s in enumerate(starts):  # frames of block k: from its start to the next block's start
            a = int(s // HOP)
            b = n_frames if k == len(starts) - 1 else int(starts[k + 1] // HOP)
            if k == 0:
                a = 0
            presence[a:b] = 1 / (1 + np.exp(-(z[s] - 7.0)))
            logits[a:b] = zb[k]
        return presence, logits
