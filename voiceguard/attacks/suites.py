"""Named attack suites in YAML: each row is ``attack: {params}`` (or ``chain: [...]`` for cascades)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from voiceguard.errors import VoiceguardError
from voiceguard.files import read_text

from .base import ATTACKS, Attack, AttackUnavailable, get_attack, register

SUITE_DIR = Path(__file__).with_name("suites")


@register
class Chain(Attack):
    """Several attacks in series (e.g. the ASVspoof 2021 DF cascades mp3 -> m4a)."""

    name = "chain"
    description = "apply attacks in series: steps=[{name: {params}}, ...]"
    DEFAULTS = {"steps": ()}
    preserves_length = False

    def __init__(self, seed=None, **params):
        super().__init__(seed, **params)
        self.steps = [get_attack(n, seed=None if seed is None else seed + i, **(p or {}))
                      for i, (n, p) in enumerate(_row_items(s) for s in self.params["steps"])]
        self.differentiable = all(s.differentiable for s in self.steps)

    def randomize_parameters(self, samples, sample_rate):
        return {"steps": [s.randomize_parameters(samples, sample_rate) for s in self.steps]}

    def apply(self, samples, sample_rate, params):
        y = samples
        for step, p in zip(self.steps, params["steps"]):
            y = step.apply(y, sample_rate, p)
        return y

    def apply_torch(self, wav, sample_rate, params):
        for step, p in zip(self.steps, params["steps"]):
            wav = step.apply_torch(wav, sample_rate, p)
        return wav


def _row_items(row: Any) -> tuple[str, dict]:
    if isinstance(row, str):
        return row, {}
    if not isinstance(row, dict) or len(row) != 1:
        raise VoiceguardError(f"a suite row must be 'attack: {{params}}', got {row!r}")
    (name, params), = row.items()
    if name == "chain":
        return "chain", {"steps": params}
    if params is not None and not isinstance(params, dict):
        raise VoiceguardError(f"parameters of {name!r} must be a mapping (e.g. {name}: {{key: value}}), got {params!r}")
    return name, dict(params or {})


@dataclass(frozen=True)
class SuiteRow:
    """One condition of a suite."""

    label: str
    attack: str
    params: dict = field(hash=False)

    def build(self, seed: int | None = None) -> Attack:
        return get_attack(self.attack, seed=seed, **self.params)


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    rows: tuple[SuiteRow, ...]


def list_suites() -> list[str]:
    return sorted(p.stem for p in SUITE_DIR.glob("*.yaml"))


def load_suite(name_or_path: str | os.PathLike) -> Suite:
    """Load a shipped suite by name, or any YAML file by path."""
    p = Path(name_or_path)
    if not p.is_file():
        p = SUITE_DIR / f"{name_or_path}.yaml"
    if not p.is_file():
        raise VoiceguardError(f"unknown attack suite {str(name_or_path)!r}; shipped: {', '.join(list_suites())}")
    try:
        data = yaml.safe_load(read_text(p, VoiceguardError, "suite file"))
    except yaml.YAMLError as e:
        raise VoiceguardError(f"not valid YAML ({e})", source=p) from None
    if not isinstance(data, dict):
        raise VoiceguardError("a suite file must be a mapping with an 'attacks' list", source=p)
    return suite_from_rows(data.get("name", p.stem), data.get("description", ""), data.get("attacks"), source=p)


def suite_from_rows(name: str, description: str, rows: Any, *, source: str | os.PathLike | None = None) -> Suite:
    """A suite from rows written as in a suite file (``attack: {params}``, optional ``label:``)."""
    out = []
    for i, row in enumerate(rows or []):
        label = None
        if isinstance(row, dict) and "label" in row:
            row = dict(row)
            label = row.pop("label")
        try:
            name_, params = _row_items(row)
        except VoiceguardError as e:
            raise VoiceguardError(f"row {i + 1}: {e.reason}", source=source) from None
        if name_ not in ATTACKS:
            raise VoiceguardError(f"row {i + 1}: unknown attack {name_!r}", source=source)
        out.append(SuiteRow(str(label or _default_label(name_, params)), name_, params))
    if not out:
        raise VoiceguardError("suite has no attacks", source=source)
    return Suite(name, description, tuple(out))


def _default_label(name: str, params: dict) -> str:
    if name == "chain":
        return "+".join(_row_items(s)[0] for s in params["steps"])
    return name + "".join(f"_{v}" for v in params.values() if not isinstance(v, (list, dict)))


__all__ = ["Chain", "Suite", "SuiteRow", "list_suites", "load_suite", "suite_from_rows", "AttackUnavailable"]
