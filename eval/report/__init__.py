"""One-command joint evaluation (``voiceguard eval report``): detectors, watermark, attacks and voiceprint risk
on one eval set, with cached stages, figures and Markdown / HTML / JSON reports.

Modules, one concern each: ``config`` (the YAML config), ``stage`` (how a stage is declared and cached, the
seeding rule), ``data`` (the eval set), ``environment`` (what the figures depend on), ``detection``,
``watermark`` and ``risk`` (the sections and their stages), ``results`` (the typed results, ``report.json``),
``run`` (the loop over the sections), ``figures`` and ``render`` (the written report)."""
from .config import ReportConfig, ReportConfigError, ReportError, list_configs, load_report_config, parse_config
from .render import headline_markdown, readme_block, update_readme
from .results import Report
from .run import run_report

__all__ = ["Report", "ReportConfig", "ReportConfigError", "ReportError", "headline_markdown", "list_configs",
           "load_report_config", "parse_config", "readme_block", "run_report", "update_readme"]
