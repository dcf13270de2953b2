"""The detector protocol and registry: a detector scores 16 kHz mono audio, higher = more bona fide."""
from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import numpy as np

from voiceguard.registry import Registry


@runtime_checkable
class Detector(Protocol):
    name: str
    sample_rate: int

    def score(self, audio: np.ndarray) -> float:
        """Score one mono float waveform ``[n]`` at ``sample_rate`` (higher = bona fide)."""


DETECTORS: Registry[Callable[..., Detector]] = Registry("detector architecture")


def register_detector(name: str):
    """Decorator registering a factory ``(**config) -> Detector`` under ``name``."""
    return DETECTORS.register(name=name)
