"""Running a batch command's rows through a ``RowSink`` so that an interruption keeps what was done.

Ctrl-C (SIGINT) and SIGTERM stop the batch between two rows: the rows written so far stay (flushed
per row for jsonl/csv), a table or JSON document is rendered with the rows so far, and the command
exits 130 with a line saying how to continue (``--resume``).
"""
from __future__ import annotations

import dataclasses
import shlex
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, TypeVar

import click

from voiceguard.errors import OutputError
from voiceguard.writers import STREAMING_FORMATS, RowSink, printable

T = TypeVar("T")
EXIT_INTERRUPTED = 130


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises ``KeyboardInterrupt`` like Ctrl-C (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stream_rows(rows: Iterable[T], sink: RowSink, to_dict: Callable[[T], dict],
                progress: Any = None) -> tuple[list[T], bool]:
    """Write each row to ``sink`` as it comes; returns ``(rows of this run, interrupted)``.

    On Ctrl-C or SIGTERM the iteration stops (the row generator is closed, so its worker threads
    finish), ``progress`` and ``sink`` are closed, and ``interrupted`` is True.  The sink is closed in
    every case, so a table / JSON document holds the rows so far; when the rows fail with an error before
    the first one (the executor could not start), nothing is written (``RowSink.close(abandon=True)``).
    """
    out: list[T] = []
    interrupted = failed = False
    with sigterm_as_interrupt():
        try:
            for r in rows:
                sink.write(to_dict(r))
                out.append(r)
        except KeyboardInterrupt:
            interrupted = True
            close = getattr(rows, "close", None)
            if close is not None:
                close()
        except BaseException:
            failed = True  # e.g. the Ray workers could not start: leave no empty output behind
            raise
        finally:
            if progress is not None:
                progress.close()
            sink.close(abandon=failed and sink.written == 0)
    return out, interrupted


def resume_command(argv: list[str] | None = None, prog: str = "voiceguard",
                   drop: tuple[str, ...] = ("--overwrite",)) -> str:
    """The command line that continues this run: the same arguments (less ``drop``) with ``--resume``,
    shell-quoted, with undecodable bytes escaped."""
    args = list(sys.argv[1:] if argv is None else argv)
    args = [a for a in args if a not in drop]
    if "--resume" not in args:
        args.append("--resume")
    return shlex.join([prog] + [printable(a) for a in args])


def interrupted_message(sink: RowSink, n_new: int, what: str = "file(s)",
                        drop: tuple[str, ...] = ("--overwrite",)) -> str:
    """The line printed when a batch is interrupted: what was kept and how to continue."""
    head = f"voiceguard: interrupted after {n_new} {what}"
    if sink.output is None:
        hint = ("the rows printed so far are complete; pass --output FILE (--format jsonl or csv) "
                "to be able to continue an interrupted run with --resume")
        return f"{head}: {hint}"
    where = printable(str(sink.output))
    total = len(sink.previous) + n_new
    if sink.fmt not in STREAMING_FORMATS:
        return (f"{head}: {where} holds the {total} row(s) so far; a {sink.fmt} file cannot be resumed "
                "(use --format jsonl or csv)")
    return f"{head}; {total} row(s) are in {where}; continue with: {resume_command(drop=drop)}"


# --------------------------------------------------------------------------- CLI glue
OUTPUT_HELP = ("write the rows to FILE instead of stdout: jsonl/csv rows are appended and flushed as each file "
               "finishes; a table or json document is written (atomically) at the end")
RESUME_HELP = ("continue an interrupted run: read the rows already in --output FILE (jsonl or csv), skip those "
               "files and append the others; the summary and exit code cover all rows")


def output_options(f, *, overwrite: bool = True, output_flag: tuple[str, ...] = ("--output", "-o"),
                   dest: str = "output_file"):
    """Add ``--output FILE`` (``-o``), ``--resume`` and (unless the command has its own) ``--overwrite``."""
    if overwrite:
        f = click.option("--overwrite", is_flag=True, help="replace an existing --output FILE")(f)
    f = click.option("--resume", is_flag=True, help=RESUME_HELP)(f)
    return click.option(*output_flag, dest, type=click.Path(dir_okay=False), default=None, metavar="FILE",
                        help=OUTPUT_HELP)(f)


def open_sink(fmt: str, columns: list[str], output: str | None, *, resume: bool, overwrite: bool,
              key: str = "path", progress: Any = None, option: str = "--output",
              resume_with_overwrite: bool = False, table_kw: dict | None = None) -> RowSink:
    """The ``RowSink`` of a batch command, after checking the option combination (``click.UsageError``).

    ``resume_with_overwrite``: ``--overwrite`` is also about other files (embed's audio outputs), so it
    may come with ``--resume``; the rows file is then resumed, not replaced.
    """
    if resume and output is None:
        raise click.UsageError(f"--resume needs {option} FILE (the rows of the run to continue)")
    if resume and fmt not in STREAMING_FORMATS:
        raise click.UsageError(f"--resume needs --format jsonl or csv (a {fmt} document is only written at the "
                               "end, so an interrupted run cannot be continued)")
    if resume and overwrite and not resume_with_overwrite:
        raise click.UsageError("give --resume (continue FILE) or --overwrite (replace it), not both")
    return RowSink(fmt, columns, output=output, resume=resume, overwrite=overwrite and not resume, key=key,
                   pause=getattr(progress, "pause", None), table_kw=table_kw)


def announce_resume(sink: RowSink, what: str = "file(s)") -> None:
    """One stderr line when ``--resume`` found rows to keep."""
    if sink.previous:
        click.echo(f"voiceguard: resuming: {len(sink.previous)} {what} already in "
                   f"{printable(str(sink.output))} are skipped", err=True)


def from_output_row(cls: type[T], row: dict) -> T:
    """Rebuild a row dataclass (e.g. ``ScanRow``) from a row read back by ``--resume``.

    CSV values are strings: ``""`` becomes None and a field annotated ``int`` / ``float`` / ``bool`` is
    converted; a value that does not convert becomes None.  Fields missing from ``row`` keep their
    defaults; fields that are not simple values (tuples, nested results) are left at their defaults.

    Raises:
        OutputError: a required field (without default) is missing.
    """
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in row:
            continue
        v, t = row[f.name], str(f.type)
        if isinstance(v, str):
            if v == "" and "None" in t:
                v = None
            elif "bool" in t:
                v = v.lower() in ("true", "1", "yes")
            elif "float" in t or "int" in t:
                try:
                    v = float(v) if "float" in t else int(float(v))
                except ValueError:
                    v = None
        if v is not None and not isinstance(v, (str, int, float, bool)):
            continue
        kwargs[f.name] = v
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise OutputError(f"cannot resume: a row lacks a required field ({e})") from None
