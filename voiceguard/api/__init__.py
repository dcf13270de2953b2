"""The front door (layer 4): the user tasks as plain functions; the CLI, the demo, the report and the bench
scripts are adapters over it.  ``import voiceguard`` forwards these names (``voiceguard.scan(...)``)::

    import voiceguard
    rows = list(voiceguard.scan(["incoming/"]))     # one ScanRow per file: verdict, p_spoof, llr, watermark
    code = voiceguard.exit_code(rows)               # as `voiceguard scan`: 2 error, 1 spoof, 4 no speech, 0

Keep this package light to import (no torch, no scikit-learn): every ``voiceguard`` command imports it at
start-up (through ``voiceguard.cli.scan``).  Its modules import the heavy layers inside their functions;
names that are heavy themselves are listed in ``_LAZY`` and imported on first use.
"""
from __future__ import annotations

import importlib

from .scan import ScanRow, exit_code, scan
from .watermark import DetectRow, EmbedRow, detect_file, detect_files, embed_file, embed_files
from .evaluate import evaluate

# further tasks: one import line each (a light module), and their names in __all__ below

#: name -> module it comes from, imported on first access (PEP 562): the model loaders import torch
_LAZY = {"load_model": "voiceguard.detect.models", "load_watermarker": "voiceguard.watermark"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["ScanRow", "scan", "exit_code", "load_model", "load_watermarker", "DetectRow", "EmbedRow",
           "detect_file", "detect_files", "embed_file", "embed_files", "evaluate"]
