"""Speaker-verification and re-identification metrics, written from their definitions (pure numpy).

Conventions: a *score* is a similarity (higher = same speaker). *Target* / *mated* trials compare two
recordings of one speaker, *non-target* / *non-mated* trials two speakers, *spoof* trials a spoof with
the speaker it claims to be.

* ASV EER: the rate where misses of target trials equal false acceptances of non-target trials
  (the official ASVspoof DET method, ``voiceguard.metrics.cm.compute_eer``).
* At the ASV EER threshold: P_miss (targets rejected), P_fa non-target, P_fa spoof (spoofs accepted).
* SPF-EER: EER of target vs spoof trials (how well the ASV alone rejects spoofs).
* SASV-EER: EER of target vs non-target + spoof trials together (SASV challenge 2022).
* Linkability D_sys (Gomez-Barrero et al., IEEE TIFS 2017): with score histograms of mated and
  non-mated pairs and likelihood ratio LR(s) = p(s|mated) / p(s|non-mated), the local linkability is
  D(s) = 2 LR / (1 + LR) - 1 where LR > 1, else 0 (prior ratio 1); D_sys = sum_s p(s|mated) D(s) ds,
  0 = unlinkable, 1 = fully linkable.
* Cllr / minCllr (Brümmer & du Preez 2006): the log-likelihood-ratio cost of scores read as natural-log
  LRs, and after the optimal monotonic (PAV) calibration.
* Rank-k identification (closed set): the share of probes whose own speaker is among the k enrolled
  speakers with the highest scores.
* s-norm: each score normalised by the mean / std of the enrolment and the test side against a cohort of
  other speakers, averaged (symmetric normalisation); ``top_n`` keeps the closest cohort scores (AS-norm).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .cm import bootstrap_ci, cllr, compute_eer, min_cllr


@dataclass(frozen=True)
class AsvMetrics:
    """An ASV system's error rates on target / non-target (/ spoof) trials."""

    eer: float
    threshold: float  # at the ASV EER point
    p_miss: float  # targets rejected at the threshold
    p_fa_nontarget: float
    p_fa_spoof: float | None  # spoofs accepted at the threshold (None without spoof trials)
    spf_eer: float | None
    sasv_eer: float | None
    n_target: int
    n_nontarget: int
    n_spoof: int

    def to_dict(self) -> dict:
        return asdict(self)


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of every row of ``a`` with every row of ``b``."""
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T


def pair_scores(a: np.ndarray, b: np.ndarray, speakers: list[str] | np.ndarray, symmetric: bool = False
                ) -> tuple[np.ndarray, np.ndarray]:
    """(same-speaker, different-speaker) cosines of rows ``a[i]`` vs ``b[j]`` for i != j.

    ``symmetric`` (``b`` is ``a``): each unordered pair once; else every ordered pair."""
    spk = np.asarray(speakers)
    s = cosine_matrix(a, b)
    if symmetric:
        i, j = np.triu_indices(len(spk), 1)
    else:
        i, j = np.nonzero(~np.eye(len(spk), dtype=bool))
    same = spk[i] == spk[j]
    return s[i, j][same], s[i, j][~same]


def cohort_stats(x: np.ndarray, cohort: np.ndarray, top_n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of each row's cosine against the cohort (its ``top_n`` closest when given)."""
    if cohort.shape[0] < 2:
        raise ValueError("score normalisation needs a cohort of at least 2 embeddings")
    c = cosine_matrix(x, cohort)
    if top_n:
        c = -np.sort(-c, axis=1)[:, :min(top_n, c.shape[1])]
    return c.mean(1), np.maximum(c.std(1), 1e-6)


def snorm(scores: np.ndarray, enroll: np.ndarray, test: np.ndarray, cohort: np.ndarray,
          top_n: int | None = None, paired: bool = False) -> np.ndarray:
    """Symmetric (adaptive when ``top_n``) score normalisation.

    ``paired=False``: ``scores[i, j]`` = enroll i vs test j; ``paired=True``: ``scores[k]`` = enroll k vs test k."""
    me, se = cohort_stats(enroll, cohort, top_n)
    mt, st = cohort_stats(test, cohort, top_n)
    if paired:
        return 0.5 * ((scores - me) / se + (scores - mt) / st)
    return 0.5 * ((scores - me[:, None]) / se[:, None] + (scores - mt[None, :]) / st[None, :])


def asv_metrics(target: np.ndarray, nontarget: np.ndarray, spoof: np.ndarray | None = None) -> AsvMetrics:
    target, nontarget = np.asarray(target, float), np.asarray(nontarget, float)
    if target.size == 0 or nontarget.size == 0:
        raise ValueError(f"ASV metrics need target and non-target trials (got {target.size} / {nontarget.size})")
    eer, thr = compute_eer(target, nontarget)
    has_spoof = spoof is not None and np.size(spoof) > 0
    spoof = np.asarray(spoof, float) if has_spoof else None
    return AsvMetrics(
        eer=float(eer), threshold=float(thr), p_miss=float(np.mean(target < thr)),
        p_fa_nontarget=float(np.mean(nontarget >= thr)),
        p_fa_spoof=float(np.mean(spoof >= thr)) if has_spoof else None,
        spf_eer=float(compute_eer(target, spoof)[0]) if has_spoof else None,
        sasv_eer=float(compute_eer(target, np.concatenate([nontarget, spoof]))[0]) if has_spoof else None,
        n_target=int(target.size), n_nontarget=int(nontarget.size), n_spoof=0 if spoof is None else int(spoof.size))


def linkability(mated: np.ndarray, nonmated: np.ndarray, omega: float = 1.0, n_bins: int | None = None
                ) -> tuple[float, np.ndarray, np.ndarray]:
    """D_sys of Gomez-Barrero et al. 2017; returns (D_sys, local D per bin, bin edges).

    Bins: ``min(len(mated) // 10, 100)`` equal-width bins over the joint score range (the reference
    implementation's default), at least 2.
    """
    mated, nonmated = np.asarray(mated, float), np.asarray(nonmated, float)
    if mated.size == 0 or nonmated.size == 0:
        raise ValueError("linkability needs mated and non-mated scores")
    n_bins = n_bins or max(2, min(mated.size // 10, 100))
    lo, hi = min(mated.min(), nonmated.min()), max(mated.max(), nonmated.max())
    if hi <= lo:
        hi = lo + 1e-9
    edges = np.linspace(lo, hi, n_bins + 1)
    p_m = np.histogram(mated, bins=edges, density=True)[0]
    p_n = np.histogram(nonmated, bins=edges, density=True)[0]
    lr = np.divide(p_m, p_n, out=np.ones_like(p_m), where=p_n != 0)
    d = 2 * (omega * lr / (1 + omega * lr)) - 1
    d[omega * lr <= 1] = 0
    d[(p_n == 0) & (p_m != 0)] = 1  # mated scores where no non-mated score falls: fully linkable
    return float(np.sum(d * p_m * (edges[1] - edges[0]))), d, edges


def rank_k_rates(scores: np.ndarray, true_index: np.ndarray, ks: tuple[int, ...] = (1, 5)) -> dict[int, float]:
    """Closed-set identification: ``scores[probe, speaker]``; rank = 1 + speakers scoring above the true one."""
    true_scores = scores[np.arange(len(true_index)), true_index]
    ranks = 1 + (scores > true_scores[:, None]).sum(1)
    return {k: float(np.mean(ranks <= k)) for k in ks if k <= scores.shape[1]}


@dataclass(frozen=True)
class LinkMetrics:
    """Everything a re-identification check reports for one attacker scenario."""

    eer: float
    threshold: float
    d_sys: float
    cllr: float  # scores read as natural-log LRs (cosines are not calibrated: expect a poor value)
    min_cllr: float
    n_mated: int
    n_nonmated: int
    eer_ci: tuple[float, float] | None = None
    d_sys_ci: tuple[float, float] | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def link_metrics(mated: np.ndarray, nonmated: np.ndarray, n_boot: int = 0, seed: int = 0) -> LinkMetrics:
    mated, nonmated = np.asarray(mated, float), np.asarray(nonmated, float)
    eer, thr = compute_eer(mated, nonmated)
    ci = {}
    if n_boot:
        ci["eer_ci"] = bootstrap_ci(lambda a, b: compute_eer(a, b)[0], (mated, nonmated), n_boot, seed=seed)
        ci["d_sys_ci"] = bootstrap_ci(lambda a, b: linkability(a, b)[0], (mated, nonmated), n_boot, seed=seed)
    return LinkMetrics(eer=float(eer), threshold=float(thr), d_sys=linkability(mated, nonmated)[0],
                       cllr=float(cllr(mated, nonmated)), min_cllr=float(min_cllr(mated, nonmated)),
                       n_mated=int(mated.size), n_nonmated=int(nonmated.size), **ci)


__all__ = ["AsvMetrics", "LinkMetrics", "cosine_matrix", "pair_scores", "cohort_stats", "snorm", "asv_metrics", "linkability", "rank_k_rates",
           "link_metrics"]
