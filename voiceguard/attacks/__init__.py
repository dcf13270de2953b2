"""Robustness attacks: one registry, seeded, called as ``attack(samples, sample_rate)``.

>>> from voiceguard.attacks import get_attack
>>> mp3 = get_attack("mp3", bitrate="32k", seed=0)
>>> y = mp3(x, sample_rate)     # any rate
"""
from __future__ import annotations

from . import codecs, dsp, noise  # noqa: F401  (register the attacks)
from .base import ATTACKS, Attack, AttackUnavailable, get_attack, register
from .suites import Chain, Suite, SuiteRow, list_suites, load_suite, suite_from_rows

__all__ = ["ATTACKS", "Attack", "AttackUnavailable", "Chain", "Suite", "SuiteRow", "get_attack", "list_suites",
           "load_suite", "register", "suite_from_rows"]
