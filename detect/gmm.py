"""GMM back-ends on LFCC / CQCC: the official ASVspoof baselines (one diagonal GMM per class,
score = mean frame log-likelihood of bona fide minus spoof)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import numpy as np

from voiceguard.audio import SAMPLE_RATE
from voiceguard.errors import ModelCardError

from .base import register_detector
from .features import FEATURES

if TYPE_CHECKING:  # scikit-learn is imported when a GMM is fitted or loaded (importing it takes seconds)
    from sklearn.mixture import GaussianMixture


class GmmDetector:
    """Two diagonal-covariance GMMs over frame features: a ``FittedDetector`` (``fit``, then ``score_batch``)."""

    sample_rate = SAMPLE_RATE
    training = "fit"
    input_samples = 64600  # window length when scoring long files in windows (about 4 s, as the networks)

    def __init__(self, feature: str = "lfcc", n_components: int = 512, seed: int = 0, max_frames: int = 200_000,
                 max_iter: int = 100):
        if feature not in FEATURES:
            raise ValueError(f"unknown feature {feature!r}; one of {', '.join(FEATURES)}")
        self.feature, self.n_components, self.seed = feature, n_components, seed
        self.max_frames, self.max_iter = max_frames, max_iter
        self.name = f"{feature}-gmm"
        self.gmms: dict[str, GaussianMixture] = {}

    def config_dict(self) -> dict:
        return {"n_components": self.n_components, "seed": self.seed, "max_frames": self.max_frames,
                "max_iter": self.max_iter}

    def features(self, audio: np.ndarray) -> np.ndarray:
        return FEATURES[self.feature](np.asarray(audio, dtype=np.float32).ravel(), SAMPLE_RATE)

    def _fit_one(self, feats: list[np.ndarray], seed: int) -> GaussianMixture:
        from sklearn.mixture import GaussianMixture

        frames = np.concatenate(feats).astype(np.float64)
        rng = np.random.default_rng(seed)
        if frames.shape[0] > self.max_frames:
            frames = frames[rng.choice(frames.shape[0], self.max_frames, replace=False)]
        k = min(self.n_components, max(1, frames.shape[0] // 10))
        gmm = GaussianMixture(k, covariance_type="diag", max_iter=self.max_iter, random_state=seed, reg_covar=1e-4)
        return gmm.fit(frames)

    def fit(self, bonafide: Iterable[np.ndarray], spoof: Iterable[np.ndarray]) -> "GmmDetector":
        """Fit on float32 mono waveforms ``[n]`` at ``SAMPLE_RATE`` (one list per class). Returns ``self``."""
        self.gmms = {"bonafide": self._fit_one([self.features(a) for a in bonafide], self.seed),
                     "spoof": self._fit_one([self.features(a) for a in spoof], self.seed + 1)}
        return self

    def score(self, audio: np.ndarray) -> float:
        """Score one whole waveform ``[n]`` at ``SAMPLE_RATE``: mean frame log-likelihood ratio bona fide vs
        spoof (higher = bona fide). Raises ``RuntimeError`` before ``fit`` or ``load_state_dict``."""
        if not self.gmms:
            raise RuntimeError("GMM detector is not trained")
        f = self.features(audio)
        return float(self.gmms["bonafide"].score(f) - self.gmms["spoof"].score(f))

    def score_batch(self, batch: np.ndarray) -> np.ndarray:
        """``[B, n]`` float32 windows -> ``[B]`` scores (``score`` of each window)."""
        return np.array([self.score(w) for w in batch])

    def to(self, device: str) -> "GmmDetector":
        """No-op: the GMMs are numpy arrays, scored on the CPU."""
        return self

    # ----------------------------------------------------------------- weights-only persistence
    def state_dict(self) -> dict:
        import torch

        sd = {}
        for cls, g in self.gmms.items():
            sd[f"{cls}.weights"] = torch.from_numpy(g.weights_)
            sd[f"{cls}.means"] = torch.from_numpy(g.means_)
            sd[f"{cls}.covariances"] = torch.from_numpy(g.covariances_)
        return sd

    def load_state_dict(self, sd: dict) -> "GmmDetector":
        from sklearn.mixture import GaussianMixture

        expected = {f"{c}.{p}" for c in ("bonafide", "spoof") for p in ("weights", "means", "covariances")}
        if set(sd) != expected:
            raise ModelCardError(f"not a GMM checkpoint: keys {sorted(sd)[:6]} (expected {sorted(expected)})")
        for cls in ("bonafide", "spoof"):
            w, m, c = (sd[f"{cls}.{p}"].double().numpy() for p in ("weights", "means", "covariances"))
            g = GaussianMixture(w.size, covariance_type="diag")
            g.weights_, g.means_, g.covariances_ = w, m, c
            g.precisions_cholesky_ = 1.0 / np.sqrt(c)
            self.gmms[cls] = g
        return self


@register_detector("lfcc-gmm", architecture="gmm", preset="lfcc", training="fit")
def lfcc_gmm(**kw) -> GmmDetector:
    """The ASVspoof 2019 LFCC-GMM baseline; ``kw``: ``GmmDetector`` options (``n_components``, ...)."""
    return GmmDetector("lfcc", **kw)


@register_detector("cqcc-gmm", architecture="gmm", preset="cqcc", training="fit")
def cqcc_gmm(**kw) -> GmmDetector:
    """The ASVspoof 2019 CQCC-GMM baseline; ``kw``: ``GmmDetector`` options (``n_components``, ...)."""
    return GmmDetector("cqcc", **kw)
