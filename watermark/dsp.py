"""A classic spread-spectrum watermark (no training), the default engine.

Each 1-second block carries a key-derived pseudo-noise "sync" sequence plus one sequence per codeword bit
(sign = bit), band-limited to 1.6-4.8 kHz (inside lowpass-4k / highpass-1500 / telephone bands) and
shaped by the host's short-time level (a loudness mask) so it sits ``snr_db`` below the speech.  The sync
sequence takes ``SYNC_SHARE`` of the watermark power, the 80 bits of the message's codeword
(``voiceguard.watermark.codes``: 16 payload bits + 64 parity bits) share the rest.

Detection whitens the signal (unit STFT magnitude in the band), correlates it with the sync sequence at
every lag, folds the lags modulo the block hop (all blocks share the sequence, so their evidence adds up),
and reads the bits by correlation at the winning lags: any crop, sample shift, or concatenation with
unmarked audio is found again, and each block gets its own presence (localisation, 1 s resolution).
The message is reported only when the pooled bit correlations decode to a codeword within the code's
radius (``message_status="ok"``, wrong-message probability below 1.1e-7 per file); otherwise the mark is
"unreadable".  The presence threshold is calibrated on clean audio (``watermark/cards/spread_spectrum.yaml``,
written by ``voiceguard watermark calibrate --engine spread-spectrum --update-card``).

Survives filtering, noise, codecs, resampling and level changes.  It does NOT survive speed, tempo or pitch
changes: the 1 s correlation is coherent, so a time-scale error above about 1e-4 destroys it, and a search
at that resolution over +-5 % would take about 1,000 correlations per file.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from voiceguard.audio import SAMPLE_RATE

from .base import FRAME_RATE, HOP, Watermarker, register, smooth_segments
from .codes import MessageCode

BAND = (1600.0, 4800.0)
SYNC_SHARE = 0.2
CHUNK_SECONDS = 60.0  # longer audio is analysed in chunks of this length (a multiple of the 20 ms frame)
SPEED_RANGE = (0.94, 1.06)  # playback-speed factors the speed search covers
SPEED_STEP = 2e-4  # grid step of the speed search
SEARCH_SECONDS = 2.0  # excerpt the search scores each speed on
SEARCH_CANDIDATES = 3  # best speeds then detected on the whole file
#: the calibration record (threshold, measured false-positive rates, command) of the default key
CALIBRATION_FILE = Path(__file__).parent / "cards" / "spread_spectrum.yaml"
#: the card fields of ``CALIBRATION_FILE`` besides ``calibration`` (no weights: a DSP engine)
SPREAD_SPECTRUM_CARD = {"name": "spread_spectrum", "kind": "watermark-engine", "architecture": "spread-spectrum-pn",
                        "key": "0x5EED", "message": "16 bits, checked ([80, 16] code, d_min 23)"}
#: the presence threshold when no calibration record is found
UNCALIBRATED_THRESHOLD = 0.5


@lru_cache(maxsize=1)
def calibration_record() -> dict:
    """The ``calibration`` mapping of ``CALIBRATION_FILE`` ({} when absent)."""
    import yaml

    if not CALIBRATION_FILE.is_file():
        return {}
    return (yaml.safe_load(CALIBRATION_FILE.read_text()) or {}).get("calibration") or {}
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


def _window_norms(y: np.ndarray, length: int) -> np.ndarray:
    """``||y[l:l+length]||`` for every lag ``l`` (float64, floored at 1e-6): the correlations' normaliser."""
    energy = np.concatenate([[0.0], np.cumsum(y.astype(np.float64) ** 2)])
    return np.sqrt(np.maximum(energy[length:] - energy[:-length], 1e-12))


@register
class SpreadSpectrumEngine(Watermarker):
    name = "spread-spectrum"
    #: the sync correlation needs about 0.3 s of host to clear its threshold; 0.5 s leaves a margin
    min_seconds = 0.5

    #: share of the watermark power in the sync sequence (the rest is split over the 80 codeword bits)
    sync_share = SYNC_SHARE

    def __init__(self, key: int = 0x5EED, snr_db: float = 28.0, speed_search: bool = False, **kwargs):
        kwargs.setdefault("threshold", UNCALIBRATED_THRESHOLD)
        super().__init__(**kwargs)
        self.key = int(key)
        self.snr_db = float(snr_db)
        self.speed_search = bool(speed_search)
        self.code = MessageCode(self.key)
        n = int(self.block_seconds * SAMPLE_RATE)
        rng = np.random.default_rng(self.key)
        noise = rng.standard_normal((self.raw_bits + 1, n))
        spec = np.fft.rfft(noise, axis=-1)
        freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
        spec[:, (freqs < BAND[0]) | (freqs > BAND[1])] = 0
        seqs = np.fft.irfft(spec, n=n, axis=-1)
        self.sequences = (seqs / seqs.std(axis=-1, keepdims=True)).astype(np.float32)  # [1 + nbits, n]

    @classmethod
    def load(cls, *, need: str = "both", key: int = 0x5EED, snr_db: float = 28.0, threshold: float | None = None,
             strength: float = 1.0, speed_search: bool = False) -> "SpreadSpectrumEngine":
        """Subclass contract (``load_watermarker("spread-spectrum", ...)`` is the getter); one object both
        embeds and detects, so ``need`` changes nothing.  ``threshold`` None: the calibrated one
        (``CALIBRATION_FILE``; the null statistics do not depend on the key).  ``speed_search``: when no
        message is read at the original speed, search playback speeds 0.94-1.06 (``detect_model_rate``)."""
        calib = calibration_record()
        if threshold is None:
            threshold = float(calib.get("threshold", UNCALIBRATED_THRESHOLD))
        return cls(key=key, snr_db=snr_db, threshold=threshold, strength=strength, calibration=dict(calib),
                   speed_search=speed_search)

    def detect_model_rate(self, x16: np.ndarray, duration: float, expected: int | None):
        """Detection at the original speed; with ``speed_search`` and no verified message there, a search over
        playback speeds ``SPEED_RANGE`` (a resampled copy of the audio, e.g. sped up 5 % by a re-upload).

        The search scores every speed on a grid of ``SPEED_STEP`` (the coherent 1 s correlation keeps over
        80 % of its peak within half a step) by the sync correlation of a ``SEARCH_SECONDS`` excerpt from
        the middle of the file: the excerpt is whitened once, resampled per speed and correlated with the
        sync sequence through one precomputed FFT.  The ``SEARCH_CANDIDATES`` best speeds are then detected
        on the whole file, and a speed counts only when its message passes the integrity check, so the
        search adds at most ``SEARCH_CANDIDATES`` x 1.1e-7 to the wrong-message probability and nothing
        to the false-positive rate of a verified message.  About 3 s per file on 2 cores."""
        first = super().detect_model_rate(x16, duration, expected)
        if not self.speed_search or first.message is not None or len(x16) < SAMPLE_RATE // 2:
            return first
        from dataclasses import replace

        from voiceguard.audio import resample

        for factor in self._speed_candidates(x16):
            stretched = resample(x16, SAMPLE_RATE, int(round(SAMPLE_RATE * factor)))  # undo the speed change
            presence, logits = self.frame_scores(stretched)
            r = self.result(presence, logits, duration, expected)
            if r.message is not None:
                n = len(presence)  # frames of the stretched copy, back on the input's time axis
                frames = max(1, int(round(n / factor)))
                back = np.interp(np.arange(frames) * factor, np.arange(n), presence).astype(np.float32)
                return replace(r, presence=back, segments=smooth_segments(back, FRAME_RATE), speed=float(factor))
        return first

    def _speed_candidates(self, x16: np.ndarray) -> list[float]:
        """The ``SEARCH_CANDIDATES`` speeds whose resampled excerpt correlates best with the sync sequence."""
        from scipy.fft import irfft, next_fast_len, rfft

        from voiceguard.audio import resample

        n = min(len(x16), int(SEARCH_SECONDS * SAMPLE_RATE))
        start = (len(x16) - n) // 2
        w = _whiten(x16[start:start + n])
        s0 = self.sequences[0]
        L = len(s0)
        size = next_fast_len(int(n * SPEED_RANGE[1]) + 2 * L)
        template = np.conj(rfft(s0, size))
        scores = []
        grid = np.arange(SPEED_RANGE[0], SPEED_RANGE[1] + SPEED_STEP / 2, SPEED_STEP)
        for factor in grid:
            if abs(factor - 1.0) < SPEED_STEP / 2:
                scores.append(-np.inf)  # already tried
                continue
            y = resample(w, SAMPLE_RATE, int(round(SAMPLE_RATE * factor)))
            if len(y) < L:
                y = np.pad(y, (0, L - len(y)))
            corr = irfft(rfft(y, size) * template, size)[:len(y) - L + 1]
            norm = _window_norms(y, L)
            scores.append(float(np.max(corr / norm)))
        order = np.argsort(scores)[::-1][:SEARCH_CANDIDATES]
        return [float(grid[i]) for i in order]

    def watermark_blocks(self, x: np.ndarray, bits: np.ndarray) -> np.ndarray:
        signs = 2.0 * np.asarray(bits, dtype=np.float32) - 1.0
        nb = len(signs)
        pattern = (np.sqrt(self.sync_share) * self.sequences[0]
                   + np.sqrt((1 - self.sync_share) / nb) * (signs @ self.sequences[1:]))
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
        """Per-frame presence and codeword-bit correlations (``[F]``, ``[F, 80]``, 50 frames/s).  Audio
        longer than ``CHUNK_SECONDS`` is analysed in chunks of that length (whole frames; each chunk finds its
        own lag), so memory stays at one chunk's worth of STFT and correlation however long the file."""
        chunk = int(CHUNK_SECONDS * SAMPLE_RATE)
        if len(x) <= chunk + chunk // 2:
            return self._chunk_scores(x)
        presence, logits = [], []
        for s in range(0, len(x), chunk):
            part = x[s:s + chunk] if len(x) - (s + chunk) >= chunk // 2 else x[s:]  # a short tail joins the last
            p, lg = self._chunk_scores(part)
            presence.append(p)
            logits.append(lg)
            if len(part) > chunk:
                break
        return np.concatenate(presence), np.concatenate(logits)

    def _chunk_scores(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from scipy.signal import fftconvolve

        n_frames = max(1, len(x) // HOP)
        seq = self.sequences
        L = seq.shape[1]
        hop = L - int(round(self.overlap_seconds * SAMPLE_RATE))
        y = _whiten(x)
        if len(y) < L:
            y = np.pad(y, (0, L - len(y)))
        corr = fftconvolve(y, seq[0][::-1], mode="valid")  # lag l: <y[l:l+L], s0>
        seg_norm = _window_norms(y, L)
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
        logits = np.zeros((n_frames, self.raw_bits), dtype=np.float32)
        for k, s in enumerate(starts):  # frames of block k: from its start to the next block's start
            a = int(s // HOP)
            b = n_frames if k == len(starts) - 1 else int(starts[k + 1] // HOP)
            if k == 0:
                a = 0
            presence[a:b] = 1 / (1 + np.exp(-(z[s] - 7.0)))
            logits[a:b] = zb[k]
        return presence, logits
