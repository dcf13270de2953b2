"""File-level wrappers of the attack library (what ``voiceguard attacks ...`` calls)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from voiceguard.attacks import ATTACKS, AttackUnavailable, get_attack, load_suite
from voiceguard.audio import audio_info, load_audio, save_audio
from voiceguard.errors import OutputError, VoiceguardError
from voiceguard.files import same_file
from voiceguard.writers import Record


@dataclass(frozen=True)
class AttackedFile(Record):
    """One attacked file: where it was written, the attack with its parameters, durations in seconds."""

    output: str
    attack: str
    parameters: dict
    in_seconds: float
    out_seconds: float


def parse_attack_params(items: Iterable[str]) -> dict[str, Any]:
    """``key=value`` items -> parameters; values read as YAML (numbers, ``[lo, hi]`` ranges, strings)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise VoiceguardError(f"attack parameter needs key=value, got {item.strip()!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def build_attack(name: str, params: dict[str, Any], seed: int | None):
    """``get_attack`` with user-facing errors (unknown name, bad parameter, unavailable here)."""
    try:
        return get_attack(name, seed=seed, **params)  # an unknown name: UnknownNameError listing the attacks
    except (ValueError, AttackUnavailable) as e:
        raise VoiceguardError(str(e)) from None


def apply_attack_file(name: str, inp: str | Path, out: str | Path, params: dict[str, Any] | None = None, *,
                      seed: int = 0, overwrite: bool = False) -> AttackedFile:
    """Read ``inp``, apply the attack (all channels, native rate), write ``out`` atomically."""
    if same_file(inp, out):
        raise OutputError("is the input file; write the attacked audio somewhere else", source=out)
    attack = build_attack(name, params or {}, seed)
    info = audio_info(inp)
    x, sr = load_audio(inp)
    y = attack(x, sr)
    save_audio(out, y, sr, like=info, overwrite=overwrite)
    shown = {k: v for k, v in (attack.parameters or {}).items() if k != "noise_seed"}
    return AttackedFile(str(out), name, shown, x.shape[-1] / sr, y.shape[-1] / sr)


def attack_catalogue() -> list[dict]:
    """One row per registered attack: defaults, contracts, availability on this machine."""
    rows = []
    for name, cls in sorted(ATTACKS.items()):
        try:
            cls.check_available()
            available = "yes"
        except AttackUnavailable as e:
            available = f"no: {e}"
        rows.append({"name": name, "params": ", ".join(f"{k}={v}" for k, v in cls.DEFAULTS.items()) or "-",
                     "length": "kept" if cls.preserves_length else "changes",
                     "torch": "yes" if cls.differentiable else "no", "available": available,
                     "description": cls.description})
    return rows


#: the columns of ``attack_catalogue``'s rows (``voiceguard attacks list``)
CATALOGUE_COLUMNS = ("name", "params", "length", "torch", "available", "description")


@dataclass(frozen=True)
class SuiteInfo:
    """A suite's conditions (``voiceguard attacks suite``): ``rows`` of ``label``, ``attack``, ``params``."""

    name: str
    description: str
    rows: tuple[dict, ...]

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "rows": [dict(r) for r in self.rows]}


#: the columns of ``SuiteInfo.rows``
SUITE_COLUMNS = ("label", "attack", "params")


def describe_suite(name: str | Path) -> SuiteInfo:
    """A shipped suite (by name) or a suite YAML file, as rows; the description stripped of its margins.

    Raises:
        VoiceguardError: unknown suite, or a malformed suite file.
    """
    suite = load_suite(name)
    return SuiteInfo(suite.name, suite.description.strip(),
                     tuple({"label": r.label, "attack": r.attack, "params": r.params} for r in suite.rows))


@dataclass(frozen=True)
class SuiteOutput(Record):
    """One condition of ``apply_suite_file``: its status, the file written (``ok`` only) and a detail
    (the output duration, or why it did not run)."""

    label: str
    status: str  # "ok" | "unavailable" | "error"
    output: str | None
    detail: str


#: the columns of ``SuiteOutput.to_dict`` (``voiceguard attacks run-suite``)
SUITE_OUTPUT_COLUMNS = ("label", "status", "output", "detail")


def apply_suite_file(suite: str, inp: str | Path, out_dir: str | Path, *, seed: int = 0,
                     overwrite: bool = False) -> list[SuiteOutput]:
    """Every condition of a suite applied to one file; a failing condition is reported, the rest go on."""
    s = load_suite(suite)
    info = audio_info(inp)
    x, sr = load_audio(inp)
    out_dir = Path(out_dir)
    results = []
    for i, row in enumerate(s.rows):
        out = out_dir / f"{row.label}{Path(inp).suffix}"
        try:
            attack = row.build(seed=seed + i)
        except AttackUnavailable as e:
            results.append(SuiteOutput(row.label, "unavailable", None, str(e)))
            continue
        try:
            y = attack(x, sr)
            save_audio(out, y, sr, like=info, overwrite=overwrite)
        except VoiceguardError as e:
            results.append(SuiteOutput(row.label, "error", None, str(e)))
            continue
        results.append(SuiteOutput(row.label, "ok", str(out), f"{y.shape[-1] / sr:.2f} s"))
    return results


__all__ = ["AttackedFile", "SuiteInfo", "SuiteOutput", "parse_attack_params", "build_attack", "apply_attack_file",
           "attack_catalogue", "describe_suite", "apply_suite_file", "CATALOGUE_COLUMNS", "SUITE_COLUMNS",
           "SUITE_OUTPUT_COLUMNS"]
