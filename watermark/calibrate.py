"""False-positive calibration: the detection threshold from scores on clean (never watermarked) 1 s windows.

Clean windows are speech (from the given files) plus synthetic signals a detector meets in the wild:
white/pink/brown noise, pure tones, chords, sweeps, music-like note sequences with percussion, near
silence, and speech mixed with noise.  The threshold is the lowest value at which at most
``target_fpr`` of one set of windows scores at or above it; the false-positive rate is then measured on a
second, independent set (another seed), which is the figure to trust.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterator

import numpy as np

from voiceguard.audio import SAMPLE_RATE

from .base import Watermarker

KINDS = ("speech", "white", "pink", "brown", "tone", "chord", "sweep", "music", "silence", "speech+noise")


def _colored(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1]
    x = np.fft.irfft(spec / f ** (exponent / 2), n=n)
    return x / (x.std() + 1e-12)


def _music(n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    x = np.zeros(n)
    pos = 0
    while pos < n:  # a sequence of harmonic notes with decaying envelopes
        length = int(rng.uniform(0.1, 0.5) * SAMPLE_RATE)
        f0 = 110 * 2 ** (rng.integers(0, 36) / 12)
        seg = t[:min(length, n - pos)]
        note = sum(rng.uniform(0.2, 1) / k * np.sin(2 * np.pi * f0 * k * seg + rng.uniform(0, 6.3))
                   for k in range(1, 8) if f0 * k < SAMPLE_RATE / 2)
        x[pos:pos + len(seg)] += note * np.exp(-seg * rng.uniform(2, 10))
        pos += len(seg)
    for _ in range(int(rng.integers(0, 5))):  # percussion: noise bursts
        s = int(rng.integers(0, n))
        burst = rng.standard_normal(min(1600, n - s)) * np.exp(-np.arange(min(1600, n - s)) / 200)
        x[s:s + len(burst)] += burst * rng.uniform(0.3, 1)
    return x / (x.std() + 1e-12)


def clean_windows(n: int, seed: int, speech: list[np.ndarray] | None = None,
                  seconds: tuple[float, float] = (1.0, 1.0)) -> Iterator[tuple[str, np.ndarray]]:
    """``n`` (kind, float32 clip at 16 kHz) pairs, each clip's length drawn uniformly from ``seconds``
    (default exactly 1 s); speech is half of them when ``speech`` is given (clips cut from files at least
    that long)."""
    rng = np.random.default_rng(seed)
    fixed = seconds[0] == seconds[1]
    speech = [s for s in (speech or []) if len(s) >= int(seconds[0] * SAMPLE_RATE)]
    synthetic = [k for k in KINDS if not k.startswith("speech")]
    for _ in range(n):
        length = int(seconds[0] * SAMPLE_RATE) if fixed else int(rng.uniform(*seconds) * SAMPLE_RATE)
        if speech and rng.random() < 0.5:
            kind = "speech+noise" if rng.random() < 0.2 else "speech"
        else:
            kind = str(rng.choice(synthetic))
        t = np.arange(length) / SAMPLE_RATE
        if kind in ("speech", "speech+noise"):
            clip = speech[int(rng.integers(len(speech)))]
            while len(clip) < length:  # a drawn length longer than this utterance: append another one
                clip = np.concatenate([clip, speech[int(rng.integers(len(speech)))]])
            s = int(rng.integers(0, len(clip) - length + 1))
            x = clip[s:s + length].astype(np.float64)
            x = x / (x.std() + 1e-12)
            if kind == "speech+noise":
                x = x + 10 ** (-rng.uniform(0, 20) / 20) * _colored(length, rng, rng.uniform(0, 2))
        elif kind == "white":
            x = rng.standard_normal(length)
        elif kind == "pink":
            x = _colored(length, rng, 1.0)
        elif kind == "brown":
            x = _colored(length, rng, 2.0)
        elif kind == "tone":
            x = np.sin(2 * np.pi * rng.uniform(50, 7500) * t + rng.uniform(0, 6.3))
        elif kind == "chord":
            x = sum(np.sin(2 * np.pi * rng.uniform(80, 4000) * t) for _ in range(int(rng.integers(2, 6))))
        elif kind == "sweep":
            f0, f1 = rng.uniform(50, 7900, size=2)
            x = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / 2))
        elif kind == "music":
            x = _music(length, rng)
        else:  # near silence: faint noise, maybe DC and a hum
            x = rng.standard_normal(length) * 1e-3 + rng.uniform(-0.01, 0.01) + \
                1e-3 * np.sin(2 * np.pi * 50 * t) * rng.random()
        level = 10 ** (rng.uniform(-45, -10) / 20) if kind != "silence" else 1.0
        x = x / (np.sqrt(np.mean(x ** 2)) + 1e-12) * level if kind != "silence" else x * 0.05
        yield kind, np.clip(x, -1, 1).astype(np.float32)


@dataclass(frozen=True)
class FprCalibration:
    threshold: float
    target_fpr: float
    n_windows: int  # windows the threshold was set on
    n_heldout: int  # independent windows the rate was measured on
    fpr: float  # measured on the held-out windows
    false_positives: int
    by_kind: dict  # kind -> [windows, false positives] on the held-out set
    seed: int
    seconds: tuple = (1.0, 1.0)  # clip lengths drawn uniformly from this range
    heldout_seconds: float = 0.0  # total audio in the held-out set
    fpr_per_second: float = 0.0  # false positives per second of held-out audio
    def to_dict(self) -> dict:
        return asdict(self)


def window_scores(engine: Watermarker, windows: Iterator[tuple[str, np.ndarray]]
                  ) -> tuple[list[str], np.ndarray, float]:
    """(kinds, presence scores, total seconds) of the clips."""
    kinds, scores, total = [], [], 0.0
    for kind, x in windows:
        kinds.append(kind)
        scores.append(engine.detect(x, SAMPLE_RATE).probability)
        total += len(x) / SAMPLE_RATE
    return kinds, np.asarray(scores), total


def threshold_for_fpr(scores: np.ndarray, target_fpr: float) -> float:
    """Lowest threshold with at most ``floor(target_fpr * n)`` scores at or above it (never below 0.5)."""
    allowed = int(np.floor(target_fpr * len(scores)))
    desc = np.sort(scores)[::-1]
    t = float(np.nextafter(desc[allowed], np.inf)) if allowed < len(desc) else 0.0
    return max(t, 0.5)


def calibrate_fpr(engine: Watermarker, *, n_windows: int = 10000, n_heldout: int = 10000,
                  target_fpr: float = 1e-3, speech: list[np.ndarray] | None = None, seed: int = 0,
                  seconds: tuple[float, float] = (1.0, 1.0), progress: bool = False) -> FprCalibration:
    """Set ``engine.threshold`` for ``target_fpr`` per clip (clips of ``seconds``, default 1 s) and measure
    the rate per clip and per second on held-out clean clips (another seed)."""
    from tqdm import tqdm

    wrap = (lambda it, n, d: tqdm(it, total=n, desc=d, disable=not progress))
    _, fit_scores, _ = window_scores(engine, wrap(clean_windows(n_windows, seed, speech, seconds), n_windows,
                                                  "calibrate"))
    threshold = threshold_for_fpr(fit_scores, target_fpr)
    kinds, held, total = window_scores(engine, wrap(clean_windows(n_heldout, seed + 1, speech, seconds),
                                                    n_heldout, "measure"))
    positives = held >= threshold
    by_kind = {k: [int(sum(1 for kk in kinds if kk == k)),
                   int(sum(1 for kk, p in zip(kinds, positives) if kk == k and p))] for k in sorted(set(kinds))}
    engine.threshold = threshold
    return FprCalibration(threshold=threshold, target_fpr=target_fpr, n_windows=n_windows, n_heldout=n_heldout,
                          fpr=float(positives.mean()), false_positives=int(positives.sum()), by_kind=by_kind,
                          seed=seed, seconds=tuple(float(v) for v in seconds), heldout_seconds=round(total, 1),
                          fpr_per_second=float(positives.sum() / max(total, 1e-9)))


def calibrate_engine(engine: str = "audioseal", *, generator: str | None = None, detector: str | None = None,
                     key: int | None = None, speech: list[str] | tuple[str, ...] = (), windows: int = 10000,
                     target_fpr: float = 1e-3, seed: int = 0, seconds: tuple[float, float] = (1.0, 1.0),
                     out_file: str | None = None, update_card: bool = False,
                     command: str | None = None, progress: bool = False) -> tuple[FprCalibration, str | None]:
    """``voiceguard watermark calibrate`` as a function: load the engine's detector, run ``calibrate_fpr`` on
    ``windows`` clean 1 s windows (``speech`` files / folders for half of them) and as many held-out ones,
    write the result as JSON to ``out_file`` (atomically) and, with ``update_card``, into the detector's card
    (audioseal) or ``watermark/cards/spread_spectrum.yaml`` (spread-spectrum), with ``command``. Returns the
    calibration and the card written (or None).  ``seconds``: clip lengths (uniform range), default 1 s.

    Raises:
        VoiceguardError: ``update_card`` with an engine that has no calibration record, a non-default
            spread-spectrum key, or a detector given as a bare ``.pth`` (checked before the long
            calibration); the engine's loading errors.
    """
    from voiceguard.cards import find_card
    from voiceguard.errors import VoiceguardError
    from voiceguard.files import atomic_write_text
    from voiceguard.writers import to_json

    from .base import load_watermarker
    from .models import CARDS_DIR, DEFAULT_DETECTOR, update_card as write_card
    from .train import load_training_audio

    from .dsp import CALIBRATION_FILE, SPREAD_SPECTRUM_CARD, calibration_record

    card = None
    if update_card:  # check before the long calibration, not after it
        if engine == "audioseal":
            card = find_card(detector or DEFAULT_DETECTOR, [CARDS_DIR])  # a card name or .yaml, not a bare .pth
        elif engine == "spread-spectrum":
            if key is not None and int(key) != 0x5EED:
                raise VoiceguardError("--update-card stores the default key's calibration: drop --key")
        else:
            raise VoiceguardError(f"--update-card: the {engine} engine has no calibration record")
    options = {"generator": generator, "detector": detector} if engine == "audioseal" else {"key": key}
    wm = load_watermarker(engine, need="detect", **options)
    clips = load_training_audio(list(speech)) if speech else None
    cal = calibrate_fpr(wm, n_windows=windows, n_heldout=windows, target_fpr=target_fpr, speech=clips, seed=seed,
                        seconds=seconds, progress=progress)
    if out_file:
        atomic_write_text(out_file, to_json(cal.to_dict()))
    written = None
    record = {**cal.to_dict(), "seconds": list(cal.seconds), "command": command}
    if card is not None:
        written = str(write_card(str(card.path), calibration=record))
    elif update_card:
        import yaml

        atomic_write_text(CALIBRATION_FILE, yaml.safe_dump(
            {**SPREAD_SPECTRUM_CARD, "calibration": record}, sort_keys=False))
        calibration_record.cache_clear()
        written = str(CALIBRATION_FILE)
    return cal, written

