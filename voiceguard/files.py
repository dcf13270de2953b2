"""Atomic output files: write to a temporary sibling, then rename over the target."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import OutputError, VoiceguardError


_UMASK = os.umask(0)  # read once, at import (single-threaded): os.umask can only be read by setting it
os.umask(_UMASK)


@contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    On any error the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError("is a directory", source=path)
    if path.exists() and not overwrite:
        raise OutputError("already exists (use --overwrite to replace it)", source=path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{path.suffix}", dir=path.parent)
    except OSError as e:
        raise OutputError(f"cannot write here ({e.strerror})", source=path) from None
    os.close(fd)
    try:
        yield tmp
        # mkstemp makes the file private (0600): give it the mode a plain open() would, or keep the
        # replaced file's mode
        if path.exists():
            mode = path.stat().st_mode & 0o777
        else:
            mode = 0o666 & ~_UMASK
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike, text: str, *, overwrite: bool = True) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_output(path, overwrite=overwrite) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return Path(path)


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when both paths name the same existing file (or the same resolved path)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def read_rows(path: str | os.PathLike, error: type[VoiceguardError], what: str) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, whitespace-split columns)`` of a text table, skipping blanks and ``#`` comments.

    A missing path, a folder or undecodable text raises ``error`` naming ``what`` the file should be.
    """
    path = Path(path)
    if not path.exists():
        raise error(f"no such {what}", source=path)
    if path.is_dir():
        raise error(f"is a directory, not a {what}", source=path)
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                parts = line.split()
                if parts and not parts[0].startswith("#"):
                    yield n, parts
    except UnicodeDecodeError as e:
        raise error(f"not a text {what} (byte {e.start} is not UTF-8)", source=path) from None
