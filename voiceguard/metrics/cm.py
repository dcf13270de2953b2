"""Anti-spoofing metrics, equal to the official ASVspoof evaluation code.

Conventions (as in ASVspoof): higher CM score = more bona fide; the
"target" class of the DET curve is bona fide.  All rates are fractions.

- EER: the official DET method (scores sorted with a stable mergesort, no
  interpolation; EER = mean of FRR and FAR at the point where they are closest).
- min t-DCF: the 2019 (legacy, ASVspoof 2019 evaluation plan) and the 2021
  (revised, Kinnunen et al. 2020) formulas, ASV threshold at the ASV EER point.
- ASVspoof 5: minDCF, actDCF (threshold ``-ln(1.9)`` on LLR scores), Cllr, minCllr (PAV).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from voiceguard.errors import ScoreError


@dataclass(frozen=True)
class CostModel:
    """t-DCF / DCF cost model (defaults: ASVspoof 2019 / 2021 evaluation plans)."""

    p_spoof: float = 0.05
    c_miss: float = 1.0  # ASV miss (2019: Cmiss_asv; 2021: Cmiss)
    c_fa: float = 10.0  # ASV false alarm on a non-target (2019: Cfa_asv; 2021: Cfa)
    c_miss_cm: float = 1.0  # 2019 only: CM rejects a bona fide target
    c_fa_cm: float = 10.0  # 2019 only: CM accepts a spoof
    c_fa_spoof: float = 10.0  # 2021 only: the system accepts a spoof

    @property
    def p_tar(self) -> float:
        return (1 - self.p_spoof) * 0.99

    @property
    def p_non(self) -> float:
        return (1 - self.p_spoof) * 0.01


ASVSPOOF_COSTS = CostModel()


# --------------------------------------------------------------------------- validation
def check_scores(scores: np.ndarray, what: str = "scores") -> np.ndarray:
    """Return float64 scores or raise ``ScoreError`` for empty / NaN / Inf / constant input."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if scores.size == 0:
        raise ScoreError(f"no {what}")
    bad = ~np.isfinite(scores)
    if bad.any():
        raise ScoreError(f"{int(bad.sum())} of {scores.size} {what} are NaN or infinite")
    return scores


def _check_pair(bona: np.ndarray, spoof: np.ndarray, min_distinct: int = 3) -> tuple[np.ndarray, np.ndarray]:
    bona = check_scores(bona, "bona fide scores")
    spoof = check_scores(spoof, "spoof scores")
    distinct = np.unique(np.concatenate([bona, spoof])).size
    if distinct < min_distinct:
        raise ScoreError(f"only {distinct} distinct score value(s) over {bona.size + spoof.size} trials; "
                         f"a metric needs at least {min_distinct} (is the detector outputting a constant?)")
    return bona, spoof


# --------------------------------------------------------------------------- EER / DET
def det_curve(target: np.ndarray, nontarget: np.ndarray, *, ties: str = "official"
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Official ``compute_det_curve``: (miss rate, false-alarm rate, thresholds), each ``[n + 1]`` float64.

    ``miss[i]`` is the fraction of target scores at or below ``thresholds[i]`` and
    ``fa[i]`` the fraction of non-target scores above it.  Tied scores are ordered as the official code
    does (stable mergesort of targets then non-targets: targets first); ``ties="nontarget-first"`` orders
    them the other way (for showing how much the EER depends on tie order).
    """
    target = np.asarray(target, dtype=np.float64)
    nontarget = np.asarray(nontarget, dtype=np.float64)
    n_scores = target.size + nontarget.size
    all_scores = np.concatenate((target, nontarget))
    labels = np.concatenate((np.ones(target.size), np.zeros(nontarget.size)))
    if ties == "official":
        indices = np.argsort(all_scores, kind="mergesort")
    elif ties == "nontarget-first":
        indices = np.lexsort((labels, all_scores))
    else:
        raise ValueError(f"ties must be 'official' or 'nontarget-first', not {ties!r}")
    labels = labels[indices]
    tar_trial_sums = np.cumsum(labels)
    nontarget_trial_sums = nontarget.size - (np.arange(1, n_scores + 1) - tar_trial_sums)
    frr = np.concatenate((np.atleast_1d(0), tar_trial_sums / target.size))
    far = np.concatenate((np.atleast_1d(1), nontarget_trial_sums / nontarget.size))
    thresholds = np.concatenate((np.atleast_1d(all_scores[indices[0]] - 0.001), all_scores[indices]))
    return frr, far, thresholds


def compute_eer(target: np.ndarray, nontarget: np.ndarray, *, ties: str = "official") -> tuple[float, float]:
    """Official ``compute_eer``: (EER as a fraction, threshold); ``ties`` as in ``det_curve``."""
    frr, far, thresholds = det_curve(target, nontarget, ties=ties)
    i = int(np.argmin(np.abs(frr - far)))
    return float(np.mean((frr[i], far[i]))), float(thresholds[i])


def eer(bonafide: np.ndarray, spoof: np.ndarray) -> tuple[float, float]:
    """CM EER (fraction in [0, 1]) and its threshold, with input validation.

    ``bonafide``, ``spoof``: 1-D score arrays (any float dtype; higher = more bona fide).  Raises
    ``ScoreError`` for empty, NaN/Inf or (nearly) constant scores.
    """
    bonafide, spoof = _check_pair(bonafide, spoof)
    return compute_eer(bonafide, spoof)


#: share of either class tied at the EER threshold from which the EER is reported as ill-defined
TIE_WARN_SHARE = 0.05


@dataclass(frozen=True)
class EerTies:
    """How many trials share the score at the EER threshold, and what that does to the EER."""

    threshold: float
    bonafide: float  # share of bona fide trials whose score equals the threshold
    spoof: float  # share of spoof trials whose score equals the threshold
    eer_official: float  # ties ordered as the official code (bona fide first)
    eer_other_order: float  # the same scores with the ties ordered spoof first
    ill_defined: bool  # bonafide or spoof share >= TIE_WARN_SHARE

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def message(self) -> str:
        """The one-line warning for an ill-defined EER."""
        return (f"{self.bonafide:.1%} of bona fide and {self.spoof:.1%} of spoof trials share the score "
                f"{self.threshold:.6g} at the EER threshold: the EER is ill-defined on such tied scores "
                f"(official DET EER {self.eer_official:.4%}; {self.eer_other_order:.4%} with the ties ordered "
                f"the other way)")


def eer_ties(bonafide: np.ndarray, spoof: np.ndarray, share: float = TIE_WARN_SHARE) -> EerTies:
    """Tie diagnostics of the official EER: the share of each class whose score equals the EER threshold.

    ``ill_defined`` is true when either share is at least ``share`` (default 5 %).  Validation and errors
    as ``eer``.
    """
    bona, spoof = _check_pair(bonafide, spoof)
    e, thr = compute_eer(bona, spoof)
    e_other, _ = compute_eer(bona, spoof, ties="nontarget-first")
    tb, ts = float(np.mean(bona == thr)), float(np.mean(spoof == thr))
    return EerTies(float(thr), tb, ts, e, e_other, max(tb, ts) >= share)


# --------------------------------------------------------------------------- t-DCF
@dataclass(frozen=True)
class AsvErrorRates:
    """ASV error rates at a fixed ASV threshold (the ASV EER point)."""

    threshold: float
    eer: float
    p_fa: float  # non-targets accepted
    p_miss: float  # targets rejected
    p_miss_spoof: float  # spoofs rejected (2019 formula)
    p_fa_spoof: float  # spoofs accepted (2021 formula)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def asv_error_rates(target: np.ndarray, nontarget: np.ndarray, spoof: np.ndarray,
                    threshold: float | None = None) -> AsvErrorRates:
    """Official ``obtain_asv_error_rates`` at ``threshold`` (default: the ASV EER threshold)."""
    target = check_scores(target, "ASV target scores")
    nontarget = check_scores(nontarget, "ASV non-target scores")
    spoof = check_scores(spoof, "ASV spoof scores")
    asv_eer, eer_thr = compute_eer(target, nontarget)
    thr = eer_thr if threshold is None else threshold
    return AsvErrorRates(
        threshold=float(thr), eer=asv_eer,
        p_fa=float(np.sum(nontarget >= thr) / nontarget.size),
        p_miss=float(np.sum(target < thr) / target.size),
        p_miss_spoof=float(np.sum(spoof < thr) / spoof.size),
        p_fa_spoof=float(np.sum(spoof >= thr) / spoof.size),
    )


def tdcf_curve_2019(bonafide: np.ndarray, spoof: np.ndarray, asv: AsvErrorRates,
                    cost: CostModel = ASVSPOOF_COSTS) -> tuple[np.ndarray, np.ndarray]:
    """Normalised legacy t-DCF (ASVspoof 2019) for every CM threshold: (t-DCF, thresholds)."""
    bonafide, spoof = _check_pair(bonafide, spoof)
    p_miss_cm, p_fa_cm, thresholds = det_curve(bonafide, spoof)
    c1 = cost.p_tar * (cost.c_miss_cm - cost.c_miss * asv.p_miss) - cost.p_non * cost.c_fa * asv.p_fa
    c2 = cost.c_fa_cm * cost.p_spoof * (1 - asv.p_miss_spoof)
    if c1 < 0 or c2 < 0:
        raise ScoreError("t-DCF weights are negative: the ASV error rates are too high for this cost model")
    if min(c1, c2) == 0:
        raise ScoreError("t-DCF cannot be normalised: the ASV rejects every spoof (C2 = 0)")
    return (c1 * p_miss_cm + c2 * p_fa_cm) / min(c1, c2), thresholds


def tdcf_curve_2021(bonafide: np.ndarray, spoof: np.ndarray, asv: AsvErrorRates,
                    cost: CostModel = ASVSPOOF_COSTS) -> tuple[np.ndarray, np.ndarray]:
    """Normalised revised t-DCF (ASVspoof 2021) for every CM threshold: (t-DCF, thresholds)."""
    bonafide, spoof = _check_pair(bonafide, spoof)
    p_miss_cm, p_fa_cm, thresholds = det_curve(bonafide, spoof)
    c0 = cost.p_tar * cost.c_miss * asv.p_miss + cost.p_non * cost.c_fa * asv.p_fa
    c1 = cost.p_tar * cost.c_miss - c0
    c2 = cost.c_fa_spoof * cost.p_spoof * asv.p_fa_spoof
    if c0 < 0 or c1 < 0 or c2 < 0:
        raise ScoreError("t-DCF weights are negative: the ASV error rates are too high for this cost model")
    return (c0 + c1 * p_miss_cm + c2 * p_fa_cm) / (c0 + min(c1, c2)), thresholds


def min_tdcf(bonafide: np.ndarray, spoof: np.ndarray, asv: AsvErrorRates, version: str = "2021",
             cost: CostModel = ASVSPOOF_COSTS) -> tuple[float, float]:
    """Minimum normalised t-DCF and the CM threshold reaching it; ``version`` '2019' or '2021'."""
    curve = {"2019": tdcf_curve_2019, "2021": tdcf_curve_2021}
    if version not in curve:
        raise ValueError(f"t-DCF version must be '2019' or '2021', not {version!r}")
    values, thresholds = curve[version](bonafide, spoof, asv, cost)
    i = int(np.argmin(values))
    return float(values[i]), float(thresholds[i])


# --------------------------------------------------------------------------- ASVspoof 5
ASVSPOOF5_COSTS = CostModel(p_spoof=0.05, c_miss=1.0, c_fa=10.0)


def _dcf_weights(cost: CostModel) -> tuple[float, float, float]:
    p_target = 1 - cost.p_spoof  # bona fide is the target class of a CM
    c_def = min(cost.c_miss * p_target, cost.c_fa * (1 - p_target))
    return p_target, c_def, math.log((cost.c_fa * (1 - p_target)) / (cost.c_miss * p_target))


def min_dcf(bonafide: np.ndarray, spoof: np.ndarray, cost: CostModel = ASVSPOOF5_COSTS) -> tuple[float, float]:
    """ASVspoof 5 normalised minDCF and its threshold."""
    bonafide, spoof = _check_pair(bonafide, spoof)
    frr, far, thresholds = det_curve(bonafide, spoof)
    p_target, c_def, _ = _dcf_weights(cost)
    c_det = cost.c_miss * frr * p_target + cost.c_fa * far * (1 - p_target)
    i = int(np.argmin(c_det))
    return float(c_det[i] / c_def), float(thresholds[i])


def bayes_threshold(cost: CostModel = ASVSPOOF5_COSTS) -> float:
    """The Bayes decision threshold on LLRs: ``-ln(1.9)`` for the ASVspoof 5 costs."""
    return _dcf_weights(cost)[2]


def act_dcf(bonafide_llr: np.ndarray, spoof_llr: np.ndarray, cost: CostModel = ASVSPOOF5_COSTS) -> float:
    """ASVspoof 5 actual DCF: calibrated LLR scores thresholded at the Bayes threshold."""
    bona, spoof = _check_pair(bonafide_llr, spoof_llr)
    p_target, c_def, _ = _dcf_weights(cost)
    thr = bayes_threshold(cost)
    p_miss = np.mean(bona < thr)
    p_fa = np.mean(spoof >= thr)
    return float((cost.c_miss * p_miss * p_target + cost.c_fa * p_fa * (1 - p_target)) / c_def)


def _neg_log_sigmoid(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, -x)


def cllr(bonafide_llr: np.ndarray, spoof_llr: np.ndarray) -> float:
    """Log-likelihood-ratio cost in bits (0 perfect, 1 uninformative)."""
    bona = check_scores(bonafide_llr, "bona fide scores")
    spoof = check_scores(spoof_llr, "spoof scores")
    return float((np.mean(_neg_log_sigmoid(bona)) + np.mean(_neg_log_sigmoid(-spoof))) / (2 * math.log(2)))


def pav(y: np.ndarray) -> np.ndarray:
    """Pool-adjacent-violators: the non-decreasing sequence closest to ``y`` in least squares."""
    y = np.asarray(y, dtype=np.float64)
    values: list[float] = []
    weights: list[float] = []
    for v in y:
        values.append(float(v))
        weights.append(1.0)
        while len(values) > 1 and values[-2] > values[-1]:
            w = weights[-2] + weights[-1]
            values[-2] = (values[-2] * weights[-2] + values[-1] * weights[-1]) / w
            weights[-2] = w
            values.pop()
            weights.pop()
    return np.repeat(values, np.asarray(weights, dtype=int))


def optimal_llr(bonafide: np.ndarray, spoof: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Optimally calibrated LLRs (PAV on the pooled, sorted scores), as in the official minCllr."""
    bona = check_scores(bonafide, "bona fide scores")
    spoof = check_scores(spoof, "spoof scores")
    scores = np.concatenate([spoof, bona])
    ideal = np.concatenate([np.zeros(spoof.size), np.ones(bona.size)])
    order = np.argsort(scores, kind="mergesort")
    p_opt = pav(ideal[order])
    with np.errstate(divide="ignore"):
        post_log_odds = np.log(p_opt) - np.log(1 - p_opt)
    llrs = post_log_odds - math.log(bona.size / spoof.size)
    n = scores.size
    llrs = llrs + np.arange(n) * 1e-6 / n  # official monotonicity epsilon
    out = np.empty(n)
    out[order] = llrs
    return out[spoof.size:], out[:spoof.size]


def min_cllr(bonafide: np.ndarray, spoof: np.ndarray) -> float:
    """Cllr after optimal (PAV) calibration: the discrimination part of Cllr."""
    bona_llr, spoof_llr = optimal_llr(bonafide, spoof)
    with np.errstate(over="ignore", invalid="ignore"):
        c1 = np.where(np.isposinf(bona_llr), 0.0, _neg_log_sigmoid(bona_llr))
        c2 = np.where(np.isneginf(spoof_llr), 0.0, _neg_log_sigmoid(-spoof_llr))
    return float((np.mean(c1) + np.mean(c2)) / (2 * math.log(2)))


# --------------------------------------------------------------------------- extras
#: ``--bootstrap`` limits: fewer resamples than this cannot place the 2.5 / 97.5 % percentiles; more than the
#: cap only costs time (the interval's Monte Carlo error is already far below its width)
BOOTSTRAP_MIN = 200
BOOTSTRAP_MAX = 100_000


def bootstrap_ci(stat, arrays: tuple[np.ndarray, ...], n_boot: int = 1000, confidence: float = 0.95,
                 seed: int = 0, progress=None) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat(*arrays)``, resampling each array on its own with ``seed``.

    ``arrays``: 1-D arrays; ``n_boot`` >= 1 resamples; ``seed`` >= 0; ``progress(done, total)``
    is called after each resample when given.  Returns ``(low, high)``.  Raises ``ValueError`` for a bad
    ``n_boot``, ``seed`` or ``confidence``.
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, not {n_boot!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), not {confidence!r}")
    rng = np.random.default_rng(seed)
    values = np.empty(int(n_boot))
    for b in range(int(n_boot)):
        values[b] = stat(*(a[rng.integers(0, a.size, a.size)] for a in arrays))
        if progress is not None:
            progress(b + 1, int(n_boot))
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(values, [alpha, 1 - alpha])
    return float(lo), float(hi)


def bootstrap_eer(bonafide: np.ndarray, spoof: np.ndarray, n_boot: int = 1000, confidence: float = 0.95,
                  seed: int = 0, progress=None) -> tuple[float, float]:
    """Percentile bootstrap CI of the EER, resampling each class separately with ``seed``.

    Arguments and errors as ``bootstrap_ci`` (and ``eer`` for the scores).  The percentile interval of a
    skewed or discrete statistic need not contain the point estimate: ``evaluate_cm`` adds a note then.
    """
    bona, spoof = _check_pair(bonafide, spoof)
    return bootstrap_ci(lambda b, s: compute_eer(b, s)[0], (bona, spoof), n_boot, confidence, seed, progress)


def polarity_warning(bonafide: np.ndarray, spoof: np.ndarray, margin: float = 0.1) -> str | None:
    """A message when negated scores give a much lower EER (scores probably have the wrong sign)."""
    e, _ = eer(bonafide, spoof)
    e_neg, _ = eer(-np.asarray(bonafide, dtype=float), -np.asarray(spoof, dtype=float))
    if e_neg + margin < e:
        return (f"EER is {e:.2%} but {e_neg:.2%} with negated scores: higher scores should mean bona fide; "
                f"the scores look inverted")
    return None


@dataclass(frozen=True)
class EerResult:
    """EER of one group (pooled, one attack, one condition)."""

    eer: float
    threshold: float
    n_bonafide: int
    n_spoof: int
    ci: tuple[float, float] | None = None

    def to_dict(self) -> dict:
        d = {"eer": self.eer, "threshold": self.threshold, "n_bonafide": self.n_bonafide, "n_spoof": self.n_spoof}
        if self.ci is not None:
            d["eer_ci"] = list(self.ci)
        return d


def eer_breakdown(bonafide: np.ndarray, spoof: np.ndarray, spoof_groups: np.ndarray) -> dict[str, EerResult]:
    """EER of all bona fide scores against the spoofs of each group (e.g. each attack id)."""
    spoof = np.asarray(spoof, dtype=np.float64)
    groups = np.asarray(spoof_groups)
    out: dict[str, EerResult] = {}
    for g in sorted(set(groups.tolist())):
        s = spoof[groups == g]
        try:
            e, t = eer(bonafide, s)
        except ScoreError as err:
            warnings.warn(f"group {g}: {err}")
            continue
        out[str(g)] = EerResult(e, t, int(np.size(bonafide)), int(s.size))
    return out


#: the decision threshold of calibrated LLR scores (``voiceguard scan``'s default: below it = spoof)
LLR_DECISION_THRESHOLD = 0.0


@dataclass(frozen=True)
class FalseAlarms:
    """Bona fide trials of one group (e.g. one source corpus) called spoof, at two thresholds."""

    n_bonafide: int
    at_decision: float  # share with a score below the decision threshold (the scan rule: below = spoof)
    at_eer: float  # share with a score at or below the pooled EER threshold (the DET curve's miss rule)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def bonafide_false_alarms(bonafide: np.ndarray, groups: np.ndarray, decision_threshold: float,
                          eer_threshold: float) -> dict[str, FalseAlarms]:
    """The bona fide false-alarm rate (share of bona fide trials called spoof) of each group, sorted by name.

    ``bonafide``: 1-D bona fide scores (higher = more bona fide); ``groups``: one label per score (e.g. the
    source corpus).  ``at_decision`` counts scores ``< decision_threshold`` (an LLR threshold: ``voiceguard
    scan`` calls a file below it spoof); ``at_eer`` counts scores ``<= eer_threshold`` (the miss rule of
    ``det_curve``, so over all groups it is the pooled EER's miss rate).  Rates are fractions.  Raises
    ``ScoreError`` for empty / NaN / Inf scores and ``ValueError`` when ``groups`` has another length.
    """
    bona = check_scores(bonafide, "bona fide scores")
    groups = np.asarray(groups).ravel()
    if groups.size != bona.size:
        raise ValueError(f"{groups.size} group labels for {bona.size} bona fide scores")
    out: dict[str, FalseAlarms] = {}
    for g in sorted(set(groups.tolist())):
        b = bona[groups == g]
        out[str(g)] = FalseAlarms(int(b.size), float(np.mean(b < decision_threshold)),
                                  float(np.mean(b <= eer_threshold)))
    return out


@dataclass(frozen=True)
class CmMetrics:
    """Everything `voiceguard eval eer` reports for one score set."""

    eer: EerResult
    min_dcf: float
    cllr: float | None
    min_cllr: float
    act_dcf: float | None
    asv: AsvErrorRates | None = None
    min_tdcf_2019: float | None = None
    min_tdcf_2021: float | None = None
    per_attack: dict[str, EerResult] = field(default_factory=dict)
    per_condition: dict[str, EerResult] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    ties: EerTies | None = None  # tie diagnostics of the pooled EER
    bootstrap: tuple[int, int] | None = None  # (resamples, seed) of eer.ci
    per_source: dict[str, FalseAlarms] = field(default_factory=dict)  # bona fide false alarms per source corpus
    decision_threshold: float = LLR_DECISION_THRESHOLD  # of ``per_source``'s / ``per_condition_fa``'s ``at_decision``
    per_condition_fa: dict[str, FalseAlarms] = field(default_factory=dict)  # bona fide false alarms per condition

    def to_dict(self) -> dict:
        d = self.eer.to_dict()
        if self.bootstrap is not None:
            d["bootstrap"] = {"resamples": self.bootstrap[0], "seed": self.bootstrap[1], "confidence": 0.95,
                              "method": "percentile"}
        if self.ties is not None:
            d["eer_ties"] = self.ties.to_dict()
        d.update({"min_dcf": self.min_dcf, "min_cllr": self.min_cllr, "cllr": self.cllr, "act_dcf": self.act_dcf})
        if self.asv is not None:
            d.update({"asv": self.asv.to_dict(), "min_tdcf_2019": self.min_tdcf_2019,
                      "min_tdcf_2021": self.min_tdcf_2021})
        d["per_attack"] = {k: v.eer for k, v in self.per_attack.items()}
        d["per_attack_detail"] = {k: v.to_dict() for k, v in self.per_attack.items()}
        if self.per_condition:
            d["per_condition"] = {k: v.eer for k, v in self.per_condition.items()}
        if self.per_source or self.per_condition_fa:
            d["decision_threshold"] = self.decision_threshold
        if self.per_source:
            d["per_source_false_alarms"] = {k: v.to_dict() for k, v in self.per_source.items()}
        if self.per_condition_fa:
            d["per_condition_false_alarms"] = {k: v.to_dict() for k, v in self.per_condition_fa.items()}
        d["warnings"] = list(self.warnings)
        return d
