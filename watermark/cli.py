"""CLI of the watermark package."""
from __future__ import annotations

import click


@click.group("watermark")
def watermark_group() -> None:
    """Embed and detect audio watermarks (engines arrive with issue #5)."""
