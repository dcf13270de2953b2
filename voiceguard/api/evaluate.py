"""``voiceguard.evaluate``: the joint report (detectors, watermark, attacks, voiceprint risk on one eval set).

The one entry point of an evaluation: ``voiceguard eval report`` is an adapter over it. Importing this module is
light (no torch): the evaluation package loads when ``evaluate`` is called.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from voiceguard.eval.report import Report, ReportConfig


def _stderr_log(msg: str) -> None:
    from voiceguard.eval.report.stage import stderr_log

    stderr_log(msg)


def evaluate(config: ReportConfig | str | os.PathLike, out: str | os.PathLike | None = None, *,
             work: str | os.PathLike | None = None, force: bool = False, progress: bool = False,
             log: Callable[[str], None] = _stderr_log) -> Report:
    """Run the report ``config`` describes and write it under ``out``; return it as a typed ``Report``.

    ``config``: a ``ReportConfig``, a shipped config name (``"mini-la"``, ``"asvspoof2019-la"``) or a YAML path.
    ``out``: the folder for ``report.md``, ``report.html``, ``report.json`` and ``figures/`` (default
    ``reports/NAME``). ``work``: the folder for the cached stages, score files and processed audio (default
    ``OUT/work``): a rerun reuses every stage whose inputs are unchanged, a killed run resumes; ``force``
    recomputes them all. ``progress``: progress bars on stderr. ``log(line)`` receives one line per stage
    (default: stderr).

    Raises ``ReportConfigError`` (an unusable config), ``ReportError`` (unusable data) and the models' loading
    errors, all ``VoiceguardError``s, before any stage runs where they can be found early.
    """
    from voiceguard.eval.report import ReportConfig, load_report_config, run_report

    cfg = config if isinstance(config, ReportConfig) else load_report_config(config)
    out = Path(out) if out is not None else Path("reports") / cfg.name
    return run_report(cfg, out, work, force=force, progress=progress, log=log)


__all__ = ["evaluate"]
