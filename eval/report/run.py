"""``voiceguard eval report`` as a function: the sections the config asks for, run in order over one eval set
(each made of cached stages), then the figures and the written report."""
from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from .config import ReportConfig, ReportError
from .data import resolve_data
from .detection import DETECTION, load_detector
from .environment import TORCH_THREADS, environment, environment_key, fixed_torch_threads
from .results import REPORT_FORMAT, Environment, Report, Results, StageTiming
from .risk import ASV, REID
from .stage import ReportContext, StageCache, stderr_log
from .watermark import WATERMARK

#: the report's sections, in the order they run: the ASV first (its scores give the detectors' t-DCF when the
#: organisers' are not there), re-identification last (its watermarked probes use the watermark engine)
SECTIONS = (ASV, DETECTION, WATERMARK, REID)


def run_report(cfg: ReportConfig, out: str | Path, work: str | Path | None = None, *, force: bool = False,
               progress: bool = False, log: Callable[[str], None] = stderr_log) -> Report:
    """Run every section the config asks for (stages cached under ``work``, default ``out/work``) and return the
    report (also written as ``out/report.json`` with the figures, ``report.md`` and ``report.html``).
    torch runs with ``TORCH_THREADS`` threads meanwhile; the report's ``environment`` states what else the
    figures depend on (package, ffmpeg and codec library versions, CPU kernels, the corpus's tools).
    Raises ReportError (unusable data), ReportConfigError, or a model's loading error before any stage runs."""
    from voiceguard.executors import session

    # one Ray connection (config ``executor: {kind: ray}``) for every file-level stage; a no-op locally
    with fixed_torch_threads(TORCH_THREADS), session(cfg.executor):  # same thread count everywhere (TORCH_THREADS)
        return _run_report(cfg, Path(out), Path(work) if work is not None else Path(out) / "work", force, progress,
                           log)


def _open(cfg: ReportConfig, work: Path, force: bool, progress: bool, log: Callable[[str], None]
          ) -> tuple[ReportContext, dict]:
    """The context the sections run in (detectors loaded first: a missing model fails before any stage; the
    eval set found or built, its time recorded as the ``data`` stage) and the environment."""
    env = environment()
    cache = StageCache(work / "cache", force, log, environment_key(env))
    detectors = {d.label: load_detector(d) for d in cfg.detectors}
    t0 = time.perf_counter()
    data = resolve_data(cfg, progress=progress, log=log)
    if cfg.data.layout == "corpus":  # the tools that made the corpus's audio (it may have just been built)
        env.update({k: v for k, v in environment(data.root, codecs=False).items() if k == "corpus_tools"})
    cache.timings["data"] = {"seconds": round(time.perf_counter() - t0, 2), "cached": False}
    return ReportContext(cfg, data, cache, work, detectors, progress, log), env


def _run_report(cfg: ReportConfig, out: Path, work: Path, force: bool, progress: bool, log: Callable[[str], None]
                ) -> Report:
    from .figures import make_figures
    from .render import write_report

    t_start = time.perf_counter()
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    ctx, env = _open(cfg, work, force, progress, log)
    results = Results(ctx.data.summary(cfg))
    for section in SECTIONS:
        if section.wanted(cfg):
            results = section.run(ctx, results)
    timings = {k: StageTiming.from_dict(v) for k, v in ctx.cache.timings.items()}
    report = Report(cfg.name, cfg.seed, cfg.to_dict(), results, Environment.from_dict(env), timings, started,
                    make_figures(results, out / "figures"), round(time.perf_counter() - t_start, 1))
    write_report(report, out)
    return report


__all__ = ["REPORT_FORMAT", "ReportError", "SECTIONS", "run_report"]
