"""voiceguard: defend against audio deepfakes -- spoof detection, watermarking, evaluation.

The front door is ``voiceguard.api``; its names are forwarded here on first use, so ``import voiceguard``
stays light (no numpy, no torch) and the model loads only when a task runs::

    import voiceguard
    rows = list(voiceguard.scan(["incoming/"]))     # one ScanRow per file: verdict, p_spoof, llr, watermark
    code = voiceguard.exit_code(rows)               # as `voiceguard scan`: 2 error, 1 spoof, 4 no speech, 0

At load time this module imports only ``voiceguard.version`` (foundation layer), because Python runs it for
every ``import voiceguard.<anything>``; the api is imported on first use of one of its names.
"""
from .version import __version__

#: the names of ``voiceguard.api.__all__``, forwarded lazily (a test keeps the two lists equal)
_API = ("ScanRow", "scan", "exit_code", "load_model", "load_watermarker", "DetectRow", "EmbedRow", "detect_file",
        "detect_files", "embed_file", "embed_files", "evaluate")


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))


__all__ = ["__version__", *_API]
