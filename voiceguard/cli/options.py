"""Click parameter types shared by every command, so a number out of range is a usage error (exit 2) that
says the range -- never an ``OverflowError`` deep inside numpy (exit 3), and never a negative silently
meaning 0.

- ``SEED``: random seeds, 0..2**32-1 (what numpy and torch both accept).
- ``finite_float(min, max, ...)``: a float range that also refuses ``nan`` and ``inf`` (click's
  ``FloatRange`` lets ``nan`` through: every comparison with it is false).
- ``protocol_format_option``: ``--protocol-format`` for every command that reads a protocol.
- ``format_option``: ``--format table|json|jsonl|csv`` (with ``--json`` as an alias of ``--format json``) for
  every command that prints results.
"""
from __future__ import annotations

import math

import click

from voiceguard.protocols import PROTOCOL_FORMATS, READERS
from voiceguard.writers import FORMATS

SEED_MAX = 2 ** 32 - 1
#: random seeds: numpy's ``default_rng`` refuses negatives, torch's ``manual_seed`` values past 2**64
SEED = click.IntRange(0, SEED_MAX)
#: worker processes / threads
WORKERS = click.IntRange(1, 64)

def protocol_format_option(f):
    """``--protocol-format``: how to read the command's protocol(s); ``auto`` sniffs it from the content."""
    return click.option("--protocol-format", "protocol_format", type=click.Choice(PROTOCOL_FORMATS),
                        default="auto", show_default=True,
                        help="format of the protocol: auto (sniffed from the content) or one of "
                             + ", ".join(READERS) + ".")(f)


def format_option(f=None, *, default: str = "table", help: str | None = None):
    """``--format table|json|jsonl|csv`` (the command's parameter ``fmt``) plus ``--json``, an alias of
    ``--format json`` kept for scripts written against older releases.  Usable as ``@format_option`` or
    ``@format_option(default="jsonl", help=...)``."""

    def json_alias(ctx: click.Context, param: click.Parameter, value: bool) -> None:
        if value:
            ctx.meta["voiceguard.json_alias"] = True

    def use_alias(ctx: click.Context, param: click.Parameter, value: str) -> str:
        return "json" if ctx.meta.get("voiceguard.json_alias") else value

    def decorate(fn):
        # --json is processed first (is_eager), so --format sees it whichever comes first on the line
        fn = click.option("--format", "fmt", type=click.Choice(FORMATS), default=default, show_default=True,
                          callback=use_alias,
                          help=help or "output: a table, one JSON document, JSON lines or CSV")(fn)
        return click.option("--json", "_json_alias", is_flag=True, is_eager=True, expose_value=False,
                            callback=json_alias, help="same as --format json")(fn)

    return decorate if f is None else decorate(f)


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses ``nan`` and ``±inf``."""

    def convert(self, value, param, ctx):
        rv = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(rv, param, ctx)


def finite_float(min: float | None = None, max: float | None = None, *, min_open: bool = False,
                 max_open: bool = False) -> FiniteFloatRange:
    """A finite float in [min, max] (open ends as asked; ``None`` = unbounded)."""
    return FiniteFloatRange(min, max, min_open=min_open, max_open=max_open)


__all__ = ["SEED", "SEED_MAX", "WORKERS", "format_option", "protocol_format_option", "FiniteFloatRange", "finite_float"]
