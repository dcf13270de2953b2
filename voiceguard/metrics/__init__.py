"""Every metric voiceguard reports, in one leaf package (layer 1: numpy / math only, nothing from above).

- ``cm``: countermeasure metrics: DET curve, EER (official ASVspoof tie handling), t-DCF 2019 and 2021,
  minDCF / actDCF (ASVspoof 5), Cllr / minCllr (PAV), bootstrap confidence intervals, ``CmMetrics``.
- ``asv``: speaker verification and linkability: ASV EER and error rates at the EER threshold, SPF-/SASV-EER,
  cosine scoring, s-norm, rank-k identification, D_sys (Gomez-Barrero et al. 2017).
- ``watermark``: SI-SNR of marked audio, the binomial p-value of a decoded message.
- ``scores``: score files (ASVspoof 4- and 2-column CM files, ASV score files): read, join with a protocol,
  write, and evaluate into ``CmMetrics``.

>>> from voiceguard.metrics import eer
>>> eer(bonafide_scores, spoof_scores)   # (EER as a fraction, threshold)
"""
from .asv import AsvMetrics, LinkMetrics, asv_metrics, link_metrics, linkability
from .cm import (CmMetrics, act_dcf, bootstrap_ci, bootstrap_eer, cllr, compute_eer, det_curve, eer, min_cllr,
                 min_dcf, min_tdcf)
from .scores import ScoredTrial, evaluate_cm, evaluate_score_file, read_asv_scores, read_cm_scores, write_cm_scores
from .watermark import match_p_value, si_snr

__all__ = ["AsvMetrics", "CmMetrics", "LinkMetrics", "ScoredTrial", "act_dcf", "asv_metrics", "bootstrap_ci",
           "bootstrap_eer", "cllr", "compute_eer", "det_curve", "eer", "evaluate_cm", "evaluate_score_file",
           "link_metrics", "linkability", "match_p_value", "min_cllr", "min_dcf", "min_tdcf", "read_asv_scores",
           "read_cm_scores", "si_snr", "write_cm_scores"]
