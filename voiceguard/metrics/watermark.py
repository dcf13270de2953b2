"""Watermark quality and decision metrics: SI-SNR of the marked audio, the p-value of a decoded message.

Pure numpy / math, no imports from above (layer 1)."""
from __future__ import annotations

import math

import numpy as np


def si_snr(ref: np.ndarray, est: np.ndarray) -> float:
    """Scale-invariant signal-to-noise ratio in dB of ``est`` against ``ref`` (both float ``[n]``, same length).

    Le Roux et al., "SDR - half-baked or well done?", ICASSP 2019: both signals are made zero-mean, ``est`` is
    projected on ``ref``, and the ratio of the projection's energy to the residual's is returned (a 1e-20 floor
    keeps silence finite)."""
    ref = ref - ref.mean()
    est = est - est.mean()
    proj = (est @ ref) / max(float(ref @ ref), 1e-20) * ref
    return float(10 * np.log10((proj @ proj) / ((est - proj) @ (est - proj) + 1e-20)))


def match_p_value(matches: int, nbits: int) -> float:
    """P(at least ``matches`` of ``nbits`` fair coin flips agree): the chance that a random message matches the
    expected one as well as the decoded one did (binomial tail, as in AudioSeal's and WavMark's reporting)."""
    return float(sum(math.comb(nbits, i) for i in range(matches, nbits + 1)) / 2 ** nbits)


__all__ = ["match_p_value", "si_snr"]
