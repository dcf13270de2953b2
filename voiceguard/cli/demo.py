"""CLI of the Gradio demo: ``voiceguard demo [--host] [--port] [--share]``."""
from __future__ import annotations

import click


@click.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True, help="interface to listen on (0.0.0.0: all)")
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True)
@click.option("--share", is_flag=True, help="ask Gradio for a public share link (needs internet)")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="report folder for the Report tab (default: the latest of $VOICEGUARD_REPORT, reports/*, "
                   "docs/report)")
def demo_command(host: str, port: int, share: bool, report_dir: str | None) -> None:
    """Launch the Gradio demo: Scan, Watermark, Attack lab, Voiceprint risk and Report tabs."""
    from voiceguard.demo.app import build_demo
    from voiceguard.demo.handlers import report_candidates

    allowed = [str(p.resolve()) for p in report_candidates(report_dir) if p.is_dir()]  # figures are served
    build_demo(report_dir).queue().launch(server_name=host, server_port=port, share=share, show_error=True,
                                          allowed_paths=allowed)


__all__ = ["demo_command"]
