"""One-command joint evaluation (``voiceguard eval report``): detectors, watermark, attacks and voiceprint risk
on one eval set, with cached stages, figures and Markdown / HTML / JSON reports."""
from .config import ReportConfig, ReportConfigError, list_configs, load_report_config, parse_config
from .render import headline_markdown, readme_block, update_readme
from .run import run_report
from .stages import ReportError

__all__ = ["ReportConfig", "ReportConfigError", "ReportError", "headline_markdown", "list_configs",
           "load_report_config", "parse_config", "readme_block", "run_report", "update_readme"]
