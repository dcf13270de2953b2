"""CLI of the Gradio demo: ``voiceguard demo [--host] [--port] [--share]``."""
from __future__ import annotations

import click


@click.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True, help="interface to listen on (0.0.0.0: all)")
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True)
@click.option("--share", is_flag=True, help="ask Gradio for a public share link (needs internet)")
def demo_command(host: str, port: int, share: bool) -> None:
    """Launch the Gradio demo: Scan, Watermark, Attack lab and Voiceprint risk tabs."""
    from .app import build_demo

    build_demo().queue().launch(server_name=host, server_port=port, share=share, show_error=True)


__all__ = ["demo_command"]
