"""One exception hierarchy for the whole toolkit.

Every error a user can cause (a bad file, a bad protocol, bad scores) is a
``VoiceguardError``.  Its message names the thing at fault and the reason; the
CLI prints it as one line and exits with ``exit_code`` -- never a traceback.
"""
from __future__ import annotations

from pathlib import Path


class VoiceguardError(Exception):
    """Base class: a problem with the user's input or environment, not a bug."""

    exit_code = 2

    def __init__(self, message: str, *, source: str | Path | None = None):
        self.source = None if source is None else str(source)
        self.reason = message
        super().__init__(f"{self.source}: {message}" if self.source else message)


# --- audio ---------------------------------------------------------------
class AudioError(VoiceguardError):
    """A file could not be used as audio."""


class AudioFileNotFoundError(AudioError):
    """The path does not exist."""


class NotAFileError(AudioError):
    """The path is a directory or something else that is not a regular file."""


class AudioDecodeError(AudioError):
    """Unreadable, corrupt, truncated data or not audio at all."""


class EmptyAudioError(AudioError):
    """The file decodes to zero samples."""


class NonFiniteAudioError(AudioError):
    """The samples contain NaN or infinite values."""


class AudioRangeError(AudioError):
    """Float samples far outside [-1, 1] (e.g. int16-scale floats, 1e30): refused, never guessed."""


class VoiceguardWarning(UserWarning):
    """Something the user should know that did not stop the work; the CLI prints it as one line,
    ``voiceguard: warning: FILE: what``."""


class AudioDecodeWarning(VoiceguardWarning):
    """The decoder reported damaged data (resync, bad frame, bad ID3 tag) but produced audio; at most one per file."""


class UnsupportedChannelsError(AudioError):
    """The channel count is not one the consumer accepts."""


class AudioTooShortError(AudioError):
    """The audio is shorter than the model's minimum."""


class OutputError(VoiceguardError):
    """An output could not be written (it exists, it is an input, no permission...)."""


class MissingToolError(VoiceguardError):
    """An external program (ffmpeg, espeak-ng, ...) is not installed."""


# --- protocols, scores, models -------------------------------------------
class ProtocolError(VoiceguardError):
    """A protocol / manifest file is malformed or inconsistent."""


class ScoreError(VoiceguardError):
    """Scores unusable for a metric: NaN/Inf, too few distinct values, missing labels."""


class RiskError(VoiceguardError):
    """A voiceprint-risk check cannot run on this input (too few speakers, mismatched labels, ...)."""


class ModelCardError(VoiceguardError):
    """A model card or checkpoint is missing, malformed or fails its checksum."""


def per_file(fn, path, what: str = "processing"):
    """``fn(path)``, or its failure as a ``VoiceguardError`` naming ``path``: one bad file never stops a batch."""
    try:
        return fn(path)
    except VoiceguardError as e:
        return e
    except Exception as e:  # noqa: BLE001 - anything else (a failing decoder, a model on odd input) is this file's row
        return VoiceguardError(f"unexpected failure while {what} ({type(e).__name__}: {e})", source=path)


def preview(items: list[str], limit: int = 5) -> str:
    """``'a, b, c and 7 more'`` -- for messages that list offending items."""
    shown = ", ".join(str(i) for i in items[:limit])
    rest = len(items) - limit
    return f"{shown} and {rest} more" if rest > 0 else shown
