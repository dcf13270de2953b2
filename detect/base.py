"""The detector protocol and the one detector registry.

A detector scores fixed-length windows of 16 kHz mono audio, higher = more bona fide.  ``DETECTORS`` maps a
name (``lfcc-gmm``, ``lcnn-small``, ``aasist-l``, ...) to a ``DetectorEntry``: the architecture and preset it
stands for, how its trainer works (``training``) and a factory for an untrained detector.  Every entry is
registered when ``voiceguard.detect`` is imported; an unknown name raises ``UnknownNameError`` listing the
known ones.

Adding a detector: write a class that satisfies ``Detector`` (plus ``fit`` for ``training="fit"``, or a torch
``module`` for ``training="epochs"``) and register a factory in a module that ``detect/__init__.py`` imports::

    @register_detector("mfcc-gmm", architecture="gmm", preset="mfcc", training="fit")
    def mfcc_gmm(**config) -> Detector: ...
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Literal, Protocol, runtime_checkable

import numpy as np

from voiceguard.registry import Registry

#: how ``voiceguard detect train`` trains a detector: ``fit`` = one pass over the training waveforms
#: (``FittedDetector.fit``), ``epochs`` = gradient descent on its torch ``module`` (``NetworkDetector``),
#: ``features`` = gradient descent on the ``head`` of a module whose frozen ``features`` are computed once and cached
Training = Literal["fit", "epochs", "features"]


@runtime_checkable
class Detector(Protocol):
    """What every caller of a detector uses (scan, ``detect score``, training, the report, the demo)."""

    name: str  #: registry name of the architecture (``lcnn-small``, ``lfcc-gmm``, ...)
    sample_rate: int  #: always ``voiceguard.audio.SAMPLE_RATE`` (Hz)
    input_samples: int  #: window length in samples; long files are scored in windows of this length
    training: Training  #: which trainer ``detect train`` runs for it

    def score_batch(self, batch: np.ndarray) -> np.ndarray:
        """``[B, input_samples]`` float32 windows at ``sample_rate`` -> ``[B]`` float scores (higher = bona
        fide; uncalibrated, a card's calibration maps them to LLRs)."""

    def config_dict(self) -> dict:
        """The architecture config as plain YAML-able data (what a model card's ``config`` holds)."""

    def state_dict(self) -> dict[str, Any]:
        """The weights as a flat ``name -> torch.Tensor`` dict (saved with ``torch.save``, loaded weights-only)."""

    def load_state_dict(self, state: dict[str, Any]) -> "Detector":
        """Load ``state_dict()``'s output; raises ``ModelCardError`` when it does not fit. Returns ``self``."""

    def to(self, device: str) -> "Detector":
        """Move the weights to a torch device (``cpu``, ``cuda``, ``cuda:1``; a no-op without torch weights)."""


@runtime_checkable
class FittedDetector(Detector, Protocol):
    """``training == "fit"``: trained by one call on whole training waveforms (the GMM baselines)."""

    def fit(self, bonafide: Iterable[np.ndarray], spoof: Iterable[np.ndarray]) -> "FittedDetector":
        """Fit on float32 mono waveforms ``[n]`` at ``SAMPLE_RATE``, one iterable per class. Returns ``self``."""


@runtime_checkable
class NetworkDetector(Detector, Protocol):
    """``training == "epochs"``: a torch network trained by the epoch loop of ``detect train``."""

    module: Any  #: ``torch.nn.Module``: ``[B, input_samples]`` float32 -> ``[B, 2]`` logits (index 1 = bona fide)
    device: str


@dataclass(frozen=True)
class DetectorEntry:
    """One registered detector: ``DETECTORS["aasist-l"]`` is the ``aasist`` architecture, ``light`` preset.

    Calling the entry (``DETECTORS[name](**config)``) builds an untrained detector; ``config`` overrides
    fields of the preset's config (unknown keys raise ``ModelCardError``)."""

    name: str
    architecture: str  #: network family or back-end (``aasist``, ``lcnn``, ``gmm``, ...)
    preset: str  #: named configuration of the architecture (``default``, ``small``, ``light``, ``lfcc``, ...)
    training: Training
    build: Callable[..., Detector]

    def __call__(self, **config: Any) -> Detector:
        return self.build(**config)


DETECTORS: Registry[DetectorEntry] = Registry("detector")


def register_detector(name: str, *, architecture: str, preset: str = "default", training: Training):
    """Decorator registering a factory ``(**config) -> Detector`` under ``name`` (returns the factory)."""

    def add(build: Callable[..., Detector]) -> Callable[..., Detector]:
        DETECTORS.register(DetectorEntry(name, architecture, preset, training, build))
        return build

    return add


__all__ = ["DETECTORS", "Detector", "DetectorEntry", "FittedDetector", "NetworkDetector", "Training",
           "register_detector"]
