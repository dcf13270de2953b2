"""The attack protocol and registry.

An attack is an object called as ``attack(samples, sample_rate)`` (audiomentations
style).  Random parameters are drawn in ``randomize_parameters`` from the
attack's own seeded generator and applied, deterministically, in ``apply``; so
``Attack(seed=3)`` reproduces the same sequence of outputs, and
``attack.apply(x, sr, attack.parameters)`` replays the last draw exactly.

Any constructor parameter declared in ``RANGES`` may be a number or a
``[low, high]`` range drawn uniformly for each call.
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from voiceguard.audio import as_channels_first
from voiceguard.registry import Registry

ATTACKS: Registry[type["Attack"]] = Registry("attack")


register = ATTACKS.register  # class decorator: ATTACKS[cls.name] = cls


class AttackUnavailable(RuntimeError):
    """The attack needs something this machine lacks (e.g. an ffmpeg encoder)."""


class Attack:
    """Base class. Subclasses set ``name``, the contract flags, and implement ``apply``."""

    name: ClassVar[str] = "attack"
    description: ClassVar[str] = ""
    preserves_length: ClassVar[bool] = True
    differentiable: ClassVar[bool] = False  # a torch twin (``apply_torch``) exists
    DEFAULTS: ClassVar[dict[str, Any]] = {}  # every parameter with its default
    RANGES: ClassVar[tuple[str, ...]] = ()  # parameters that accept [low, high]

    def __init__(self, seed: int | None = None, **params: Any):
        unknown = set(params) - set(self.DEFAULTS)
        if unknown:
            raise ValueError(f"{self.name}: unknown parameter(s) {sorted(unknown)}; "
                             f"known: {', '.join(self.DEFAULTS) or 'none'}")
        self.params: dict[str, Any] = {**self.DEFAULTS, **params}
        for k, v in self.params.items():
            if isinstance(v, (list, tuple)) and k in self.RANGES:
                if len(v) != 2 or v[0] > v[1]:
                    raise ValueError(f"{self.name}: range for {k} must be [low, high], got {v}")
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.parameters: dict[str, Any] | None = None
        self.check_available()

    @classmethod
    def check_available(cls) -> None:
        """Raise ``AttackUnavailable`` with an install hint when the attack cannot run here."""

    # ------------------------------------------------------------------ the protocol
    def randomize_parameters(self, samples: np.ndarray, sample_rate: int) -> dict[str, Any]:
        """Draw this call's parameters (ranges resolved, plus any per-call seed)."""
        out = {}
        for k, v in self.params.items():
            if k in self.RANGES and isinstance(v, (list, tuple)):
                out[k] = float(self.rng.uniform(v[0], v[1]))
            else:
                out[k] = v
        out["noise_seed"] = int(self.rng.integers(0, 2**31 - 1))
        return out

    def apply(self, samples: np.ndarray, sample_rate: int, params: dict[str, Any]) -> np.ndarray:
        """Apply with fixed ``params``; ``samples`` is float32 ``[channels, n]``."""
        raise NotImplementedError

    def __call__(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        one_d = np.asarray(samples).ndim == 1
        x = as_channels_first(samples)
        self.parameters = self.randomize_parameters(x, sample_rate)
        y = np.ascontiguousarray(self.apply(x, sample_rate, self.parameters), dtype=np.float32)
        if self.preserves_length and y.shape[-1] != x.shape[-1]:
            raise AssertionError(f"{self.name} broke its length contract: {x.shape[-1]} -> {y.shape[-1]}")
        return y[0] if one_d else y

    def apply_torch(self, wav: "Any", sample_rate: int, params: dict[str, Any]) -> "Any":
        """Differentiable twin on a torch tensor ``[..., n]`` (only when ``differentiable``)."""
        raise NotImplementedError(f"{self.name} has no differentiable version")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


def get_attack(name: str, seed: int | None = None, **params: Any) -> Attack:
    """Build a registered attack by name."""
    return ATTACKS[name](seed=seed, **params)  # an unknown name: UnknownNameError listing the known ones


def fit_length(y: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad ``[C, m]`` to ``n`` samples."""
    if y.shape[-1] >= n:
        return y[..., :n]
    return np.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, n - y.shape[-1])])


def power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


def noise_for_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Scale ``noise`` so that ``10 log10(P_signal / P_noise) == snr_db`` (over the whole clip)."""
    ps, pn = power(signal), power(noise)
    if pn == 0:
        return noise
    return noise * np.sqrt(ps / (pn * 10 ** (snr_db / 10)))
