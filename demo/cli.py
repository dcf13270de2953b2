"""CLI of the Gradio demo."""
from __future__ import annotations

import click


@click.group("demo")
def demo_group() -> None:
    """The Gradio demo (arrives with issue #7)."""
