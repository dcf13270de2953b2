"""Spoof detection (``voiceguard.detect``): detectors score 16 kHz mono audio, higher = more bona fide.

Importing the package registers every detector in ``DETECTORS`` (the GMM baselines and the network presets;
the torch networks themselves are imported only when one is built):

    >>> from voiceguard.detect import DETECTORS
    >>> DETECTORS["lcnn-small"].architecture, DETECTORS["lcnn-small"].preset
    ('lcnn', 'small')
    >>> det = DETECTORS["lfcc-gmm"](n_components=64)     # untrained; ``voiceguard detect train`` trains one
"""
from . import gmm, neural  # noqa: F401  (register the detectors)
from .base import DETECTORS, Detector, DetectorEntry, FittedDetector, NetworkDetector, register_detector

__all__ = ["DETECTORS", "Detector", "DetectorEntry", "FittedDetector", "NetworkDetector", "register_detector"]
