"""Full-length scoring: sliding windows, file-level aggregate, flagged segments, and calibration.

Raw detector scores (higher = bona fide) are mapped to a log-likelihood ratio
``llr = log p(x | bona fide) / p(x | spoof)`` by a logistic calibration fitted on dev scores
with balanced classes; the spoof probability at a prior of bona fide ``prior`` is
``sigmoid(-(llr + logit(prior)))``.  Pure numpy (+ scikit-learn for the fit).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np


def window_starts(n: int, win: int, hop: int) -> list[int]:
    """Window start offsets that cover all ``n`` samples; the last window ends at the last sample."""
    if n <= win:
        return [0]
    starts = list(range(0, n - win + 1, hop))
    if starts[-1] + win < n:
        starts.append(n - win)
    return starts


def fit_window(x: np.ndarray, win: int) -> np.ndarray:
    """Crop to ``win`` samples, or repeat-pad a shorter signal (the ASVspoof models' convention)."""
    if x.size >= win:
        return x[:win]
    return np.tile(x, int(math.ceil(win / max(x.size, 1))))[:win]


def windows(audio: np.ndarray, win: int, hop: int) -> tuple[np.ndarray, list[int]]:
    """``[n] -> ([k, win], starts)`` covering the whole signal."""
    audio = np.asarray(audio, dtype=np.float32).ravel()
    starts = window_starts(audio.size, win, hop)
    return np.stack([fit_window(audio[s:s + win], win) for s in starts]), starts


@dataclass(frozen=True)
class Calibration:
    """``llr = scale * score + offset`` plus operating points on the raw score axis."""

    scale: float = 1.0
    offset: float = 0.0
    eer_threshold: float | None = None  # raw score at the dev EER point
    fa_thresholds: dict = field(default_factory=dict, hash=False)  # {"0.01": raw score} for target spoof FARs
    fitted_on: str | None = None
    #: raw score of the shipped operating point (``scan --threshold default``): at most ``operating_target`` of
    #: the dev bona fide files of every channel condition fall below it (None: the LLR 0 decision)
    operating_point: float | None = None
    operating_target: float | None = None
    #: window-level rule for ``partial-spoof``: window LLR = ``scale * score + offset`` (fitted on dev windows
    #: on their own), a window is flagged below ``threshold`` (LLR, chosen like the operating point on dev
    #: windows), and a file is partial-spoof only when a flagged stretch lasts ``min_flagged_s`` seconds
    window: dict | None = field(default=None, hash=False)

    def llr(self, score: np.ndarray | float) -> np.ndarray | float:
        return self.scale * np.asarray(score, dtype=np.float64) + self.offset if isinstance(score, np.ndarray) \
            else float(self.scale * score + self.offset)

    def default_threshold(self) -> float:
        """The shipped decision threshold on the LLR axis: the operating point's LLR (``with_margin``), or 0 without
        one."""
        return with_margin(float(self.llr(self.operating_point))) if self.operating_point is not None else 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "Calibration":
        from voiceguard.errors import ModelCardError

        unknown = set(d or {}) - set(cls.__dataclass_fields__)
        if unknown:
            raise ModelCardError(f"calibration block has unknown keys {sorted(unknown)}")
        return cls(**(d or {}))


def spoof_probability(llr: np.ndarray | float, prior_bonafide: float = 0.5) -> np.ndarray | float:
    """P(spoof | x) from a bona fide LLR at the given prior."""
    z = np.asarray(llr, dtype=np.float64) + math.log(prior_bonafide / (1 - prior_bonafide))
    p = 1.0 / (1.0 + np.exp(np.clip(z, -500, 500)))
    return p if np.ndim(p) else float(p)


def _logistic(bonafide: np.ndarray, spoof: np.ndarray) -> tuple[float, float]:
    """``(scale, offset)`` of a balanced-class logistic regression of the label on the score (an LLR map)."""
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate([bonafide, spoof])[:, None]
    y = np.concatenate([np.ones(bonafide.size), np.zeros(spoof.size)])
    lr = LogisticRegression(C=1e4, class_weight="balanced", max_iter=1000).fit(x, y)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


#: the shipped thresholds are applied this far (relative, on the LLR axis) below the dev bona fide score they were
#: fitted on, so that float-level differences at scan time (another batch make-up, another machine) do not move
#: that file across them
THRESHOLD_MARGIN = 1e-3


def with_margin(llr_threshold: float) -> float:
    """``llr_threshold`` moved ``THRESHOLD_MARGIN`` (relative) towards the spoof side."""
    return llr_threshold - THRESHOLD_MARGIN * (1.0 + abs(llr_threshold))


def bonafide_fa_threshold(scores: np.ndarray, conditions: Sequence[str], rate: float) -> float:
    """The highest threshold at which, in every condition, at most ``floor(rate * n)`` of its ``n`` bona fide
    ``scores`` fall below it (a bona fide false alarm = score below the threshold): the ``floor(rate * n) + 1``-th
    lowest score of the most demanding condition (applied with ``with_margin``).  With fewer than ``1 / rate``
    files in a condition that is its lowest score: no false alarm on dev at all."""
    scores = np.asarray(scores, dtype=np.float64)
    conditions = np.asarray(list(conditions))
    thr = math.inf
    for c in np.unique(conditions):
        s = np.sort(scores[conditions == c])
        thr = min(thr, float(s[int(math.floor(rate * s.size))]))
    return thr


def fit_calibration(bonafide: np.ndarray, spoof: np.ndarray, *, fa_rates: Sequence[float] = (0.01, 0.001),
                    fitted_on: str | None = None, bonafide_conditions: Sequence[str] | None = None,
                    bonafide_fa: float = 0.01) -> Calibration:
    """Logistic regression on dev scores with balanced class weights (so the output is an LLR), the dev EER
    point, spoof false-accept operating points (``fa_rates``) and, when ``bonafide_conditions`` (one channel
    condition per bona fide score) is given, the operating point with at most ``bonafide_fa`` bona fide false
    alarms in every condition (``bonafide_fa_threshold``)."""
    from voiceguard.metrics.cm import compute_eer

    bonafide, spoof = np.asarray(bonafide, float), np.asarray(spoof, float)
    scale, offset = _logistic(bonafide, spoof)
    _, thr = compute_eer(bonafide, spoof)
    fa = {}
    for rate in fa_rates:  # lowest raw threshold with at most `rate` of dev spoofs at or above it (accepted)
        if spoof.size * rate >= 1:  # fewer dev spoofs than 1 / rate cannot pin such a rate down
            fa[str(rate)] = float(np.nextafter(np.quantile(spoof, 1 - rate, method="higher"), np.inf))
    # a sane model has scale > 0 (bona fide scores high); with scale <= 0 "LLR below the threshold" would mean
    # "raw score above it": no operating point then (scan falls back to LLR 0), never a flipped one
    op = bonafide_fa_threshold(bonafide, bonafide_conditions, bonafide_fa) \
        if bonafide_conditions is not None and scale > 0 else None
    return Calibration(scale, offset, float(thr), fa, fitted_on, op, bonafide_fa if op is not None else None)


def fit_window_rule(bonafide: np.ndarray, spoof: np.ndarray, bonafide_conditions: Sequence[str], *,
                    bonafide_fa: float = 0.01, min_flagged_s: float = 6.0) -> dict | None:
    """The ``Calibration.window`` rule from dev *window* scores (each window labelled with its file's class and
    condition): its own logistic LLR map, a window threshold with at most ``bonafide_fa`` of the bona fide windows
    of every condition flagged, and the minimum flagged stretch (seconds) that makes a file ``partial-spoof``.
    The windows are those ``scan`` scores by default (hop = half a window); ``scan --hop`` changes how many
    windows cover a stretch, not the rule.  None when the window scores do not order the classes (scale <= 0)."""
    bonafide, spoof = np.asarray(bonafide, float), np.asarray(spoof, float)
    scale, offset = _logistic(bonafide, spoof)
    if scale <= 0:
        return None  # window scores that do not order the classes: no window rule (see fit_calibration)
    raw = bonafide_fa_threshold(bonafide, bonafide_conditions, bonafide_fa)
    return {"scale": scale, "offset": offset, "threshold": float(scale * raw + offset), "bonafide_fa": bonafide_fa,
            "min_flagged_s": float(min_flagged_s)}


@dataclass(frozen=True)
class Segment:
    start_s: float
    end_s: float
    score: float
    llr: float
    p_spoof: float
    flagged: bool

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FileScore:
    """A file's scores: aggregate over windows, per-window segments, verdict."""

    score: float
    llr: float
    p_spoof: float
    verdict: str  # "bonafide" | "spoof" | "partial-spoof"
    segments: tuple[Segment, ...]

    @property
    def flagged(self) -> list[Segment]:
        return [s for s in self.segments if s.flagged]

    def to_dict(self) -> dict:
        return {"score": self.score, "llr": self.llr, "p_spoof": self.p_spoof, "verdict": self.verdict,
                "segments": [s.to_dict() for s in self.segments]}


def merge_flagged(segments: Sequence[Segment]) -> list[tuple[float, float]]:
    """Overlapping or touching flagged windows merged into ``(start_s, end_s)`` spans."""
    spans: list[list[float]] = []
    for s in segments:
        if not s.flagged:
            continue
        if spans and s.start_s <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], s.end_s)
        else:
            spans.append([s.start_s, s.end_s])
    return [(round(a, 3), round(b, 3)) for a, b in spans]


def summarize_windows(raw: np.ndarray, starts: Sequence[int], n_samples: int, sample_rate: int, win: int, *,
                      calibration: Calibration = Calibration(), threshold: float = 0.0, prior_bonafide: float = 0.5,
                      aggregate: str = "mean") -> FileScore:
    """Window scores -> a file's ``FileScore``; ``threshold`` is on the LLR axis (below it = spoof).

    The file score aggregates the window scores (``mean``, or ``min`` for the most spoof-like window);
    a bona fide file with some windows below the threshold is reported as ``partial-spoof``.  A calibration with
    a ``window`` rule (``fit_window_rule``) maps window scores with its own LLR map, flags windows below its own
    threshold, and calls a file ``partial-spoof`` only when a flagged stretch lasts ``min_flagged_s``.

    Raises:
        ScoreError: a window score, the file score, an LLR or a probability is not finite (NaN/Inf never
            reaches an output: the caller reports the file as an error).
    """
    raw = np.asarray(raw, dtype=np.float64).ravel()
    _require_finite(raw, "window score")
    rule = calibration.window
    with np.errstate(over="ignore", invalid="ignore"):
        llrs = rule["scale"] * raw + rule["offset"] if rule else calibration.llr(raw)
    _require_finite(llrs, "window LLR")
    probs = spoof_probability(llrs, prior_bonafide)
    window_threshold = with_margin(rule["threshold"]) if rule else threshold
    segments = tuple(Segment(round(s / sample_rate, 3), round(min(s + win, n_samples) / sample_rate, 3), float(r),
                             float(l), float(p), bool(l < window_threshold))
                     for s, r, l, p in zip(starts, raw, np.atleast_1d(llrs), np.atleast_1d(probs)))
    min_flagged = rule["min_flagged_s"] if rule else 0.0
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)}")
    agg = float(AGGREGATES[aggregate](raw))
    llr = float(calibration.llr(agg))
    _require_finite(np.array([agg, llr]), "file score")
    if llr < threshold:
        verdict = "spoof"
    elif any(b - a >= min_flagged - 1e-9 for a, b in merge_flagged(segments)):
        verdict = "partial-spoof"
    else:
        verdict = "bonafide"
    return FileScore(agg, llr, float(spoof_probability(llr, prior_bonafide)), verdict, segments)


def _require_finite(x: np.ndarray, what: str) -> None:
    from voiceguard.errors import ScoreError

    x = np.asarray(x, dtype=np.float64)
    if x.size and not np.isfinite(x).all():
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise ScoreError(f"model produced a non-finite score ({bad} non-finite {what}"
                         f"{'s' if bad > 1 else ''} of {x.size})")


AGGREGATES: dict[str, Callable[[np.ndarray], float]] = {"mean": np.mean, "min": np.min}


def score_file(audio: np.ndarray, sample_rate: int, score_batch: Callable[[np.ndarray], np.ndarray], *,
               win: int, hop: int | None = None, **kw) -> FileScore:
    """Score every window of ``audio`` (hop defaults to half a window); see ``summarize_windows``."""
    batch, starts = windows(audio, win, hop or win // 2)
    return summarize_windows(score_batch(batch), starts, np.asarray(audio).size, sample_rate, win, **kw)
