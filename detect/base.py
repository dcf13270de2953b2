"""The detector protocol and registry: a detector scores 16 kHz mono audio, higher = more bona fide."""
from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Detector(Protocol):
    name: str
    sample_rate: int

    def score(self, audio: np.ndarray) -> float:
        """Score one mono float waveform ``[n]`` at ``sample_rate`` (higher = bona fide)."""


DETECTORS: dict[str, Callable[..., Detector]] = {}


def register_detector(name: str):
    def deco(factory):
        if name in DETECTORS:
            raise ValueError(f"detector {name!r} registered twice")
        DETECTORS[name] = factory
        return factory
    return deco
