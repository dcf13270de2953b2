"""Click parameter types shared by every command, so a number out of range is a usage error (exit 2) that
says the range -- never an ``OverflowError`` deep inside numpy (exit 3), and never a negative silently
meaning 0.

- ``SEED``: random seeds, 0..2**32-1 (what numpy and torch both accept).
- ``finite_float(min, max, ...)``: a float range that also refuses ``nan`` and ``inf`` (click's
  ``FloatRange`` lets ``nan`` through: every comparison with it is false).
- ``protocol_format_option``: ``--protocol-format`` for every command that reads a protocol.
- ``format_option``: ``--format table|json|jsonl|csv`` (with ``--json`` as an alias of ``--format json``) for
  every command that prints results; ``echo_result`` prints a result in the chosen format.
- ``BOOTSTRAP``: bootstrap resamples, 0 (off) or ``BOOTSTRAP_MIN``..``BOOTSTRAP_MAX``.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any, Callable, Sequence

import click

from voiceguard import writers
from voiceguard.errors import VoiceguardWarning
from voiceguard.metrics.cm import BOOTSTRAP_MAX, BOOTSTRAP_MIN
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


def format_option(f=None, *, default: str = "table", help: str | None = None, legacy: Sequence[str] = ()):
    """``--format table|json|jsonl|csv`` (the command's parameter ``fmt``) plus ``--json``, an alias of
    ``--format json`` kept for scripts written against older releases.  Usable as ``@format_option`` or
    ``@format_option(default="jsonl", help=...)``.  ``legacy``: further values ``--format`` still accepts
    (an older meaning of the flag; the command maps them, e.g. with ``legacy_protocol_format``)."""

    def json_alias(ctx: click.Context, param: click.Parameter, value: bool) -> None:
        if value:
            ctx.meta["voiceguard.json_alias"] = True

    def use_alias(ctx: click.Context, param: click.Parameter, value: str) -> str:
        return "json" if ctx.meta.get("voiceguard.json_alias") else value

    def decorate(fn):
        # --json is processed first (is_eager), so --format sees it whichever comes first on the line
        choices = FORMATS + tuple(v for v in legacy if v not in FORMATS)
        fn = click.option("--format", "fmt", type=click.Choice(choices), default=default, show_default=True,
                          callback=use_alias,
                          help=help or "output: a table, one JSON document, JSON lines or CSV")(fn)
        return click.option("--json", "_json_alias", is_flag=True, is_eager=True, expose_value=False,
                            callback=json_alias, help="same as --format json")(fn)

    return decorate if f is None else decorate(f)


def legacy_protocol_format(fmt: str, protocol_format: str) -> tuple[str, str]:
    """``(output format, protocol format)`` of a command whose ``--format`` used to name the protocol's format.

    A ``--format`` value that is a protocol format and no output format (``auto``, ``asvspoof2019``, ...)
    still selects the protocol format, with a ``VoiceguardWarning`` (deprecated; use ``--protocol-format``),
    and the output is a table.  ``csv`` is both: it now means CSV output.

    Raises:
        click.UsageError: the old ``--format`` and ``--protocol-format`` name two different formats.
    """
    if fmt in FORMATS:
        return fmt, protocol_format
    if protocol_format not in ("auto", fmt):
        raise click.UsageError(f"--format {fmt} (a protocol format) contradicts --protocol-format {protocol_format}")
    warnings.warn(VoiceguardWarning(f"--format {fmt} as a protocol format is deprecated: use --protocol-format "
                                    f"{fmt} (--format is the output format: {'|'.join(FORMATS)})"), stacklevel=2)
    return "table", fmt


def echo_result(fmt: str, result: Any, rows: Sequence[dict], columns: Sequence[str],
                table: Callable[[], str]) -> None:
    """Print a command's result on stdout in the ``--format`` chosen.

    Args:
        fmt: ``table`` (``table()``: the command's human-readable text, ending with a newline), ``json`` (the
            result's ``to_dict()``, or ``rows`` as one array when ``result`` has no ``to_dict``), ``jsonl`` or
            ``csv`` (``rows`` with ``columns``, via ``voiceguard.writers.render``).
        result: a frozen result with ``to_dict()``, a plain dict, or None.
        rows: the result as flat rows (dicts of numbers and strings).
        columns: the CSV columns, in order.
        table: builds the table text; called only for ``table``.
    """
    if fmt == "table":
        click.echo(table(), nl=False)
    elif fmt == "json" and result is not None:
        data = result.to_dict() if hasattr(result, "to_dict") else result
        writers.write_stdout(writers.to_json(writers.clean(data)) + "\n")
    else:
        writers.write_stdout(writers.render(rows, fmt, columns))


def recorded_command(group: str) -> str | None:
    """The command line being run, as it is recorded in cards (``voiceguard GROUP ARGS...``, shell-quoted), or
    None when there are no arguments (e.g. called from Python)."""
    import shlex
    import sys

    if len(sys.argv) <= 2:
        return None
    return f"voiceguard {group} " + " ".join(shlex.quote(a) for a in sys.argv[2:])


def echo_catalogue(fmt: str, rows: Sequence[dict], columns: Sequence[str], footer: str) -> None:
    """A ``list`` command's output: ``rows`` in the ``--format`` chosen; ``footer`` (e.g. the registered names)
    follows the table only."""
    click.echo(writers.render(rows, fmt, columns), nl=False)
    if fmt == "table":
        click.echo(f"\n{footer}")


EXECUTOR_HELP = ("where files are processed: local (this process) or ray (Ray actors that each hold the model; "
                 "pip install 'voiceguard[ray]')")
RAY_ADDRESS_HELP = ("with --executor ray: 'auto' (the cluster this machine joined with `ray start`), HOST:PORT of a "
                    "cluster's head, or ray://HOST:10001 [default: start a private Ray instance on this machine]")


def executor_options(f):
    """``--executor local|ray`` and ``--ray-address`` (the command's parameters ``executor``, ``ray_address``);
    ``executor_spec`` turns them, with the command's ``--workers``, into a ``voiceguard.executors.ExecutorSpec``."""
    f = click.option("--ray-address", "ray_address", default=None, metavar="auto|HOST:PORT", help=RAY_ADDRESS_HELP)(f)
    return click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                        help=EXECUTOR_HELP)(f)


def executor_spec(executor: str, ray_address: str | None, workers: int | None = None, *,
                  local_workers: bool = True):
    """The ``ExecutorSpec`` of ``--executor`` / ``--ray-address`` / ``--workers`` (Ray actors with ``ray``).

    ``local_workers``: the command's ``--workers`` also means something locally (decoding threads); when False,
    ``--workers`` without ``--executor ray`` is a usage error.  With Ray, the connection (``executors.session``)
    is opened here and closed when the command ends.

    Raises:
        click.UsageError: ``--ray-address`` or (``local_workers=False``) ``--workers`` without ``--executor ray``.
    """
    from voiceguard.executors import ExecutorSpec, session

    if executor != "ray" and ray_address is not None:
        raise click.UsageError("--ray-address goes with --executor ray")
    if executor != "ray" and workers is not None and not local_workers:
        raise click.UsageError("--workers (Ray actors) goes with --executor ray")
    if executor != "ray" and workers is not None and workers > WORKERS.max:
        raise click.UsageError(f"--workers {workers}: at most {WORKERS.max} decoding threads locally (more Ray "
                               "actors with --executor ray)")
    spec = ExecutorSpec(executor, address=ray_address, workers=workers if executor == "ray" else None)
    # Ray is connected now, before any output is written, and stays connected until the command ends
    click.get_current_context().with_resource(session(spec))
    return spec


class BootstrapCount(click.ParamType):
    """Bootstrap resamples: 0 (off) or ``BOOTSTRAP_MIN``..``BOOTSTRAP_MAX`` (voiceguard.metrics.cm)."""

    name = "N"

    def convert(self, value, param, ctx):
        n = click.INT.convert(value, param, ctx)
        if n == 0 or BOOTSTRAP_MIN <= n <= BOOTSTRAP_MAX:
            return n
        if n < 0:
            self.fail(f"{n} is negative: use 0 (no interval) or {BOOTSTRAP_MIN}..{BOOTSTRAP_MAX}.", param, ctx)
        if n < BOOTSTRAP_MIN:
            self.fail(f"{n} resamples are too few for a 95 % interval: use 0 (no interval) or at least "
                      f"{BOOTSTRAP_MIN}.", param, ctx)
        self.fail(f"{n} resamples is above the cap of {BOOTSTRAP_MAX} (more does not make a 95 % interval any "
                  f"more exact; 1000-10000 is usual).", param, ctx)


#: ``--bootstrap`` of every command with a bootstrap interval
BOOTSTRAP = BootstrapCount()


def registered(registry: Callable[[], Mapping]) -> Callable:
    """A click callback checking that an option's value is a name of ``registry()`` (called lazily, so the
    registry's package is imported only when the command runs); else ``UnknownNameError`` listing the names
    (one line, exit 2)."""

    def check(ctx: click.Context, param: click.Parameter, value):
        if value is not None:
            registry()[value]  # Registry.__getitem__ raises UnknownNameError for a name nothing registered
        return value

    return check


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


__all__ = ["SEED", "SEED_MAX", "WORKERS", "executor_options", "executor_spec", "BOOTSTRAP", "BootstrapCount", "format_option", "protocol_format_option",
           "legacy_protocol_format", "echo_result", "FiniteFloatRange", "finite_float"]
