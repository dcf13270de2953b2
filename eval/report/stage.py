"""How the report's work is declared and cached.

A ``Stage`` is one cached computation, declared as its name (the cache entry, ``WORK/cache/NAME.json``), its
inputs (the JSON-able values that identify its result: the cache key) and its computation, side by side. A
``StageCache`` returns the stored value when the inputs, the code that computes it (``_CACHED_CODE``) and the
environment are unchanged, else computes and stores it atomically: a killed run resumes where it stopped, a rerun
only renders, a changed seed or model is a new evaluation.

The seeding rule of every evaluation (the report's and the bench scripts'): ``file_seed``."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from voiceguard.version import __version__
from voiceguard.files import atomic_write_text

if TYPE_CHECKING:
    from .config import ReportConfig
    from .data import EvalData
    from .results import Results

CACHE_VERSION = 2

#: modules whose code computes the cached values: editing any of them invalidates the cache (the report's
#: stages, the metrics, the risk checks, and the audio path, attacks, networks, features and engines they run)
_CACHED_CODE = ("voiceguard.eval.report.stage", "voiceguard.eval.report.data", "voiceguard.eval.report.detection",
                "voiceguard.eval.report.watermark", "voiceguard.eval.report.risk",
                "voiceguard.metrics.cm", "voiceguard.metrics.asv", "voiceguard.metrics.watermark",
                "voiceguard.metrics.scores", "voiceguard.eval.risk.checks", "voiceguard.eval.risk.embed",
                "voiceguard.eval.risk.embedders", "voiceguard.detect.batch", "voiceguard.detect.scoring",
                "voiceguard.detect.features", "voiceguard.detect.neural", "voiceguard.detect.gmm",
                "voiceguard.detect.lcnn", "voiceguard.detect.rawnet2", "voiceguard.detect.aasist",
                "voiceguard.detect.specnet", "voiceguard.watermark.base", "voiceguard.watermark.audioseal_engine",
                "voiceguard.watermark.dsp", "voiceguard.watermark.models", "voiceguard.attacks.base",
                "voiceguard.attacks.noise", "voiceguard.attacks.dsp", "voiceguard.attacks.codecs",
                "voiceguard.attacks.suites", "voiceguard.audio", "voiceguard.vad")


def file_seed(seed: int, index: int) -> int:
    """The seeding rule of the evaluations: the random draw (attack parameters, noise) applied to the
    ``index``-th file of an evaluation seeded with ``seed`` is seeded with ``seed * 100_003 + index``, so each
    file gets its own parameters, the same on every run, whatever else the run does."""
    return seed * 100_003 + index


def unavailable(row) -> str | None:
    """Why the attack condition ``row`` (a suite row) cannot run on this machine (e.g. a codec ffmpeg lacks), or
    None when it can."""
    from voiceguard.attacks import AttackUnavailable

    try:
        row.build(seed=0)
    except AttackUnavailable as e:
        return str(e)
    return None


def stderr_log(msg: str) -> None:
    """The default progress log: one line on stderr."""
    print(f"voiceguard report: {msg}", file=sys.stderr, flush=True)


def _code_digest() -> str:
    """sha256 over the sources of the modules in ``_CACHED_CODE``."""
    h = hashlib.sha256()
    for mod in _CACHED_CODE:
        h.update(Path(importlib.util.find_spec(mod).origin).read_bytes())
    return h.hexdigest()[:16]


_CODE: list[str] = []  # computed on first use: the modules above import this one


def fingerprint(obj: Any) -> str:
    """A stable hash of JSON-able inputs and of the code that computes the values (edited code recomputes)."""
    if not _CODE:
        _CODE.append(_code_digest())
    text = json.dumps({"v": CACHE_VERSION, "voiceguard": __version__, "code": _CODE[0], "in": obj}, sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Stage:
    """One cached computation: ``name`` (its cache entry), ``inputs`` (JSON-able: what identifies the value)
    and ``compute`` (returns a JSON-able value; a rerun reads back the same types: lists, not tuples)."""

    name: str
    inputs: Any
    compute: Callable[[], Any] = field(compare=False, repr=False)


@dataclass(frozen=True)
class StageCache:
    """The store of stage values under ``root``; ``timings`` collects each stage's wall time and whether this run
    reused it, in the order the stages ran. ``force`` recomputes every stage. ``environment``
    (``environment.environment_key(...)``) is part of every key: a value cached under other libraries, codecs,
    thread count or CPU kernels is recomputed."""

    root: Path
    force: bool = False
    log: Callable[[str], None] = stderr_log
    environment: Any = None
    timings: dict[str, dict] = field(default_factory=dict, compare=False)

    def run(self, stage: Stage) -> Any:
        """The cached value of ``stage`` when its inputs (and the environment) are unchanged, else
        ``stage.compute()`` (stored atomically)."""
        key = fingerprint(stage.inputs if self.environment is None
                          else {"inputs": stage.inputs, "env": self.environment})
        path = self.root / f"{stage.name}.json"
        if not self.force and path.is_file():
            try:
                got = json.loads(path.read_text())
                if got.get("key") == key:
                    self.timings[stage.name] = {"seconds": got["seconds"], "cached": True}
                    self.log(f"{stage.name}: cached ({got['seconds']:.1f} s when computed)")
                    return got["value"]
            except (OSError, ValueError, KeyError):
                pass  # unreadable entry: recompute
        self.log(f"{stage.name}: running")
        t0 = time.perf_counter()
        value = json.loads(json.dumps(stage.compute()))  # what a rerun reads back: same types (lists, not tuples)
        seconds = round(time.perf_counter() - t0, 2)
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"key": key, "seconds": seconds, "value": value}))
        self.timings[stage.name] = {"seconds": seconds, "cached": False}
        self.log(f"{stage.name}: done in {seconds:.1f} s")
        return value


@dataclass(frozen=True)
class ReportContext:
    """What every section of a report runs with: the config, the eval set, the stage cache, the work folder
    (score files, processed audio), the config's detectors (loaded before any stage runs: a missing model fails
    first), whether to show progress bars, and the log."""

    cfg: ReportConfig
    data: EvalData
    cache: StageCache
    work: Path
    detectors: dict = field(default_factory=dict)  # label -> detection.LoadedDetector
    progress: bool = False
    log: Callable[[str], None] = stderr_log


@dataclass(frozen=True)
class Section:
    """A part of the report (ASV, detection, watermark, re-identification): ``wanted(cfg)`` says whether the
    config asks for it; ``run(ctx, results)`` runs its stages and returns ``results`` with its part filled in
    (later sections read earlier parts: the detectors' t-DCF uses the ASV scores)."""

    name: str
    wanted: Callable[[ReportConfig], bool]
    run: Callable[[ReportContext, Results], Results]


__all__ = ["CACHE_VERSION", "ReportContext", "Section", "Stage", "StageCache", "file_seed", "fingerprint", "stderr_log",
           "unavailable"]
