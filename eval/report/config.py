"""The report's YAML config, read into frozen dataclasses and checked before anything runs."""
from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from voiceguard import configs as _configs
from voiceguard.attacks import AttackUnavailable, Suite, load_suite, suite_from_rows
from voiceguard.errors import VoiceguardError
from voiceguard.executors import LOCAL, ExecutorSpec
from voiceguard.watermark.base import DEFAULT_ENGINE
from voiceguard.files import read_text
from voiceguard.protocols import PROTOCOL_FORMATS

CONFIG_DIR = Path(_configs.__file__).parent  # the repository's configs/, installed as voiceguard.configs

#: where each official layout keeps its eval protocol, audio and organisers' ASV files (relative to ``path``)
LAYOUTS: dict[str, dict[str, Any]] = {
    "corpus": {"protocol": "protocols/VG.cm.eval.trl.txt", "audio_dir": "flac",
               "asv_enroll": ["protocols/VG.asv.eval.enroll.txt"], "asv_trials": "protocols/VG.asv.eval.trl.txt"},
    "asvspoof2019-la": {
        "protocol": "ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.eval.trl.txt",
        "audio_dir": "ASVspoof2019_LA_eval/flac",
        "asv_scores": "ASVspoof2019_LA_asv_scores/ASVspoof2019.LA.asv.eval.gi.trl.scores.txt",
        "asv_enroll": ["ASVspoof2019_LA_asv_protocols/ASVspoof2019.LA.asv.eval.female.trn.txt",
                       "ASVspoof2019_LA_asv_protocols/ASVspoof2019.LA.asv.eval.male.trn.txt"],
        "asv_trials": "ASVspoof2019_LA_asv_protocols/ASVspoof2019.LA.asv.eval.gi.trl.txt"},
    "protocol": {},  # any protocol the readers know (2021 LA/DF, ASVspoof 5, In-the-Wild): give every path
}


def slug(text: str) -> str:
    """A label as it appears in stage and file names."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text).strip("_") or "x"


class ReportConfigError(VoiceguardError):
    """The report config is unusable."""


class ReportError(VoiceguardError):
    """A report stage cannot run."""


@dataclass(frozen=True)
class DataConfig:
    layout: str
    path: str
    protocol: str
    audio_dir: str
    ext: str = ".flac"
    asv_scores: str | None = None  # organisers' ASV scores (t-DCF); else the project's own ASV check
    asv_enroll: tuple[str, ...] = ()
    asv_trials: str | None = None
    build_source: str | None = None  # corpus layout: speech folder to build the corpus from when missing
    build_config: str = "default"
    max_trials: int | None = None  # seeded subset of the eval trials (None = all)
    protocol_format: str = "auto"  # how to read ``protocol``: auto (sniffed) or a voiceguard.protocols reader


@dataclass(frozen=True)
class DetectorConfig:
    label: str
    model: str  # card name, card file, or architecture (then checkpoint)
    checkpoint: str | None = None


@dataclass(frozen=True)
class WatermarkConfig:
    engines: tuple[str, ...] = (DEFAULT_ENGINE,)
    files: int = 20
    suite: Suite | None = None


@dataclass(frozen=True)
class RiskConfig:
    backend: str = "resemblyzer"
    asv: bool = True
    reid_speakers: int = 0  # 0 = no re-identification check
    reid_suite: Suite | None = None
    reid_watermark: bool = True


@dataclass(frozen=True)
class ReportConfig:
    name: str
    seed: int
    data: DataConfig
    detectors: tuple[DetectorConfig, ...]
    attack_suites: tuple[Suite, ...] = ()
    attack_trials: int | None = 300
    watermark: WatermarkConfig | None = None
    risk: RiskConfig | None = None
    executor: ExecutorSpec = LOCAL  # where the file-level stages (detector scoring) run; not in any cache key
    source: str = ""
    raw: dict = field(default_factory=dict, hash=False, compare=False)

    def to_dict(self) -> dict:
        return {"name": self.name, "seed": self.seed, "source": self.source, "config": self.raw}


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand(text: str) -> str:
    """``${VAR}`` and ``${VAR:-default}`` from the environment (an unset ``${VAR}`` is an error)."""
    def sub(m: re.Match) -> str:
        value = os.environ.get(m.group(1))
        if value:
            return value
        if m.group(2) is None:
            raise ReportConfigError(f"environment variable {m.group(1)} is not set (the config uses ${{{m.group(1)}}})")
        return m.group(2)
    return _VAR.sub(sub, text)


def list_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def _find(name_or_path: str | os.PathLike) -> Path:
    p = Path(name_or_path)
    if p.is_file():
        return p
    shipped = CONFIG_DIR / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    raise ReportConfigError(f"no such config file; shipped configs: {', '.join(list_configs())}", source=p)


def _int(d: dict, key: str, default: int | None, where: str, lo: int = 0) -> int | None:
    v = d.get(key, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ReportConfigError(f"{where}.{key} must be an integer >= {lo}, got {v!r}")
    return v


def _suite(value: Any, where: str, inline_name: str = "custom") -> Suite:
    """A suite by name / file, or an inline list of rows; every row's parameters are checked here, and every
    row label must be unique (a repeated one would overwrite another condition's result)."""
    if isinstance(value, str):
        suite = load_suite(value)
    elif isinstance(value, list):
        suite = suite_from_rows(inline_name, "inline rows of the report config", value)
    else:
        raise ReportConfigError(f"{where} must be a suite name, a suite file or a list of attack rows, got {value!r}")
    for row in suite.rows:
        try:
            row.build(seed=0)
        except AttackUnavailable:
            pass  # reported as unavailable in the report, not a config error
        except (ValueError, KeyError, TypeError) as e:
            raise ReportConfigError(f"{where}: row {row.label!r}: {e}") from None
    labels = [r.label for r in suite.rows]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ReportConfigError(f"{where}: repeated condition label(s) {', '.join(dup)} (give each row a 'label:')")
    return suite


def _unknown(d: dict, allowed: set[str], where: str) -> None:
    extra = sorted(set(d) - allowed)
    if extra:
        raise ReportConfigError(f"{where}: unknown key(s) {', '.join(extra)} (allowed: {', '.join(sorted(allowed))})")


def _mapping(v: Any, where: str) -> dict:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ReportConfigError(f"{where} must be a mapping, got {type(v).__name__}")
    return v


def _data(d: dict) -> DataConfig:
    _unknown(d, {"layout", "path", "protocol", "audio_dir", "ext", "asv_scores", "asv_enroll", "asv_trials", "build",
                 "max_trials", "protocol_format"}, "data")
    if d.get("protocol_format", "auto") not in PROTOCOL_FORMATS:
        raise ReportConfigError(f"data.protocol_format must be one of {', '.join(PROTOCOL_FORMATS)}, got "
                                f"{d.get('protocol_format')!r}")
    layout = d.get("layout", "corpus")
    if layout not in LAYOUTS:
        raise ReportConfigError(f"data.layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if not d.get("path"):
        raise ReportConfigError("data.path is required (the corpus or dataset folder)")
    spec = {**LAYOUTS[layout], **{k: v for k, v in d.items() if k in ("protocol", "audio_dir", "asv_scores",
                                                                       "asv_enroll", "asv_trials")}}
    for key in ("protocol", "audio_dir"):
        if not spec.get(key):
            raise ReportConfigError(f"data.{key} is required for layout {layout!r}")
    enroll = spec.get("asv_enroll") or []
    if bool(enroll) != bool(spec.get("asv_trials")):
        raise ReportConfigError("data.asv_enroll and data.asv_trials go together (the ASV check needs both)")
    build = _mapping(d.get("build"), "data.build")
    _unknown(build, {"source", "config"}, "data.build")
    if build and layout != "corpus":
        raise ReportConfigError("data.build is only for layout 'corpus' (a corpus built by voiceguard data build)")
    return DataConfig(layout, str(d["path"]), spec["protocol"], spec["audio_dir"], d.get("ext", ".flac"),
                      spec.get("asv_scores"), tuple([enroll] if isinstance(enroll, str) else enroll),
                      spec.get("asv_trials"), build.get("source"), str(build.get("config", "default")),
                      _int(d, "max_trials", None, "data", 4), str(d.get("protocol_format", "auto")))


def _detectors(items: Any) -> tuple[DetectorConfig, ...]:
    if not isinstance(items, list) or not items:
        raise ReportConfigError("detectors must be a non-empty list (card names, or {model:, checkpoint:, label:})")
    out = []
    for i, it in enumerate(items):
        if isinstance(it, str):
            out.append(DetectorConfig(it, it))
            continue
        it = _mapping(it, f"detectors[{i}]")
        _unknown(it, {"model", "checkpoint", "label"}, f"detectors[{i}]")
        if "model" not in it:
            raise ReportConfigError(f"detectors[{i}] needs 'model' (a card name, card file or architecture)")
        out.append(DetectorConfig(str(it.get("label") or it["model"]), str(it["model"]), it.get("checkpoint")))
    labels = [slug(d.label) for d in out]  # as in stage and file names
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ReportConfigError(f"detector labels must be unique; repeated: {', '.join(dup)} (set 'label:')")
    return tuple(out)


def _executor(d: dict) -> ExecutorSpec:
    """``executor: {kind: local|ray, address: auto|HOST:PORT, workers: N, cpus_per_worker: C, batch_files: B}``."""
    _unknown(d, {"kind", "address", "workers", "cpus_per_worker", "batch_files"}, "executor")
    kind = d.get("kind", "local")
    if kind not in ("local", "ray"):
        raise ReportConfigError(f"executor.kind must be local or ray, got {kind!r}")
    if kind == "local" and set(d) - {"kind"}:
        raise ReportConfigError(f"executor: {', '.join(sorted(set(d) - {'kind'}))} go(es) with kind: ray")
    cpus = d.get("cpus_per_worker", 1)
    if isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or not cpus > 0:
        raise ReportConfigError(f"executor.cpus_per_worker must be a positive number, got {cpus!r}")
    address = d.get("address")
    return ExecutorSpec(kind, address=None if address is None else str(address),
                        workers=_int(d, "workers", None, "executor", 1), cpus_per_worker=float(cpus),
                        batch_files=_int(d, "batch_files", 8, "executor", 1))


def parse_config(data: Any, source: str = "<config>") -> ReportConfig:
    """Check a config mapping (already YAML-loaded and expanded) and return it as dataclasses."""
    if not isinstance(data, dict):
        raise ReportConfigError("a report config must be a YAML mapping", source=source)
    try:
        _unknown(data, {"name", "seed", "data", "detectors", "attacks", "watermark", "risk", "executor"}, "config")
        seed = _int(data, "seed", 0, "config")
        attacks = _mapping(data.get("attacks"), "attacks")
        _unknown(attacks, {"suites", "max_trials"}, "attacks")
        suites = tuple(_suite(s, f"attacks.suites[{i}]", f"custom{i + 1}")
                       for i, s in enumerate(attacks.get("suites") or []))
        names = [x.name for x in suites]
        if len(set(names)) != len(names):
            raise ReportConfigError(f"attacks.suites: a suite is listed twice ({', '.join(names)})")
        wm = None
        if data.get("watermark") is not None:
            w = _mapping(data["watermark"], "watermark")
            _unknown(w, {"engines", "files", "suite"}, "watermark")
            engines = w.get("engines", [DEFAULT_ENGINE])
            if isinstance(engines, str):
                engines = [engines]
            if not isinstance(engines, list):
                raise ReportConfigError(f"watermark.engines must be a list of engine names, got {engines!r}")
            engines = tuple(engines)
            from voiceguard.watermark import WATERMARKERS  # every engine is registered at package import

            bad = [e for e in engines if e not in WATERMARKERS]
            if bad or not engines:
                raise ReportConfigError(f"watermark.engines: unknown engine(s) {', '.join(map(str, bad)) or '(none)'}"
                                        f" (one of {', '.join(sorted(WATERMARKERS))})")
            wm = WatermarkConfig(engines, _int(w, "files", 20, "watermark", 1),
                                 _suite(w["suite"], "watermark.suite") if w.get("suite") else None)
        risk = None
        if data.get("risk") is not None:
            r = _mapping(data["risk"], "risk")
            _unknown(r, {"backend", "asv", "reid"}, "risk")
            reid = _mapping(r.get("reid"), "risk.reid")
            _unknown(reid, {"speakers", "attacks", "watermark"}, "risk.reid")
            from voiceguard.eval.risk import list_embedders

            if str(r.get("backend", "resemblyzer")) not in list_embedders():
                raise ReportConfigError(f"risk.backend must be one of {', '.join(list_embedders())}, got "
                                        f"{r.get('backend')!r}")
            risk = RiskConfig(str(r.get("backend", "resemblyzer")), bool(r.get("asv", True)),
                              _int(reid, "speakers", 0, "risk.reid"),
                              _suite(reid["attacks"], "risk.reid.attacks") if reid.get("attacks") else None,
                              bool(reid.get("watermark", True)))
            if risk.reid_speakers == 1:
                raise ReportConfigError("risk.reid.speakers must be 0 (off) or >= 2")
            taken = [r.label for r in (risk.reid_suite.rows if risk.reid_suite else ())
                     if r.label == "original" or r.label.startswith("watermarked")]
            if taken:
                raise ReportConfigError(f"risk.reid.attacks: label(s) {', '.join(taken)} are the report's own "
                                        "conditions; choose another label")
        name = str(data.get("name", Path(source).stem))
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", name):
            raise ReportConfigError(f"name must be letters, digits and _.+- (it names reports/NAME), got {name!r}")
        return ReportConfig(name, seed, _data(_mapping(data.get("data"), "data")),
                            _detectors(data.get("detectors")), suites, _int(attacks, "max_trials", 300, "attacks", 4),
                            wm, risk, _executor(_mapping(data.get("executor"), "executor")), source, data)
    except VoiceguardError as e:
        raise ReportConfigError(e.reason, source=e.source or source) from None


def load_report_config(name_or_path: str | os.PathLike) -> ReportConfig:
    """A shipped config by name (``mini-la``, ``asvspoof2019-la``) or a YAML file; ``${VAR:-default}`` expanded."""
    p = _find(name_or_path)
    try:
        data = yaml.safe_load(expand(read_text(p, ReportConfigError, "report config")))
    except yaml.YAMLError as e:
        raise ReportConfigError(f"not valid YAML ({e})", source=p) from None
    except ReportConfigError as e:
        raise ReportConfigError(e.reason, source=p) from None
    return parse_config(data, str(p))


__all__ = ["slug", "DataConfig", "DetectorConfig", "LAYOUTS", "ReportConfig", "ReportConfigError", "ReportError", "RiskConfig",
           "WatermarkConfig", "asdict", "expand", "list_configs", "load_report_config", "parse_config"]
