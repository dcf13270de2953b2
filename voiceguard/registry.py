"""The one registry pattern: a dict of classes by their ``name`` and a decorator that fills it."""
from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T", bound=type)


def registrar(registry: dict[str, T], what: str) -> Callable[[T], T]:
    """Class decorator adding ``cls`` to ``registry`` under ``cls.name``; a name registered twice is a bug."""

    def register(cls: T) -> T:
        if cls.name in registry:
            raise ValueError(f"{what} {cls.name!r} registered twice")
        registry[cls.name] = cls
        return cls

    return register
