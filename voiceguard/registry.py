"""The one registry convention: detectors, watermark engines, speaker embedders and attacks.

A ``Registry`` maps a name to a class (or factory) and is filled at package import by the ``register``
decorator, so ``import voiceguard.watermark`` is enough to see every engine.  An unknown name raises
``UnknownNameError`` (a ``VoiceguardError``, exit code 2, also a ``KeyError``) that lists the known names.

>>> ENGINES = Registry("watermark engine")
>>> @ENGINES.register
... class Mine: name = "mine"
>>> ENGINES["mine"] is Mine, sorted(ENGINES)
(True, ['mine'])
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

from .errors import VoiceguardError

T = TypeVar("T")


class UnknownNameError(VoiceguardError, KeyError):
    """A name that no registry entry has; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return Exception.__str__(self)


class Registry(Mapping, Generic[T]):
    """Name -> entry, read-only to callers; ``kind`` names the entries in messages ("attack", ...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, entry: T | None = None, *, name: str | None = None):
        """Add ``entry`` under ``name`` (default: ``entry.name``); usable as ``@REG.register`` or
        ``REG.register(factory, name="x")``.  A name registered twice is a bug (``ValueError``)."""

        def add(obj: T) -> T:
            key = name if name is not None else getattr(obj, "name")
            if key in self._entries:
                raise ValueError(f"{self.kind} {key!r} registered twice")
            self._entries[key] = obj
            return obj

        return add if entry is None else add(entry)

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._entries))}") \
                from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"


__all__ = ["Registry", "UnknownNameError"]
