"""Writers that render results (dicts from frozen dataclasses' ``to_dict``) per output format.

``render`` turns a finished list of rows into text; ``RowSink`` takes the rows of a batch command one at a
time as each file finishes (streaming JSON-lines / CSV, flushed per row, to stdout or an ``--output`` file
that ``--resume`` can continue).  Every string that reaches an output goes through ``printable`` first, so
file names whose bytes are not UTF-8 never crash a writer and JSON / CSV stay valid UTF-8.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, ContextManager, Sequence, TextIO

from .errors import OutputError

class Record:
    """Mixin for a frozen dataclass result whose ``to_dict()`` is its fields (``dataclasses.asdict``): the
    rows the writers print."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


FORMATS = ("table", "json", "jsonl", "csv")
#: formats written row by row (flushed as each file finishes) and readable back by ``--resume``
STREAMING_FORMATS = ("jsonl", "csv")


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_control(m: re.Match) -> str:
    c = m.group(0)
    return _NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def printable(text: str) -> str:
    """``text`` safe for every output: bytes that are not UTF-8 and control characters become backslash
    escapes (as ``ls -b`` does); other text is unchanged.

    Python decodes a file name whose bytes are not UTF-8 (``b'caf\\xe9.wav'``) with lone surrogates
    (``'caf\\udce9.wav'``, the "surrogateescape" of ``os.fsdecode``); such a string cannot be encoded
    to UTF-8.  This gives ``'caf\\xe9.wav'``: the original bytes, backslash-escaped (as Python's
    ``backslashreplace`` shows undecodable bytes), always valid UTF-8.  A newline, tab, escape or other
    control character (legal in a POSIX file name; it would break a table or CSV line or drive the
    terminal) becomes ``\\n``, ``\\t``, ``\\x1b``...; other lone surrogates (never produced by the
    file system) become ``\\udXXX``.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return _CONTROL.sub(_escape_control, text)


def clean(value: Any) -> Any:
    """``value`` with ``printable`` applied to every string in it (dicts, lists and tuples walked)."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable(str(k)): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def _cell(value: Any, percent: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value * 100:.4f}" if percent else f"{value:.4f}"
    return str(value)


def table(rows: Sequence[dict], columns: Sequence[str], *, percent: Sequence[str] = (),
          headers: dict[str, str] | None = None) -> str:
    """A plain fixed-width text table; ``percent`` columns are shown x100 with 4 decimals."""
    headers = headers or {}
    head = [headers.get(c, c) for c in columns]
    body = [[_cell(r.get(c), c in percent) for c in columns] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths)) for b in body]
    return "\n".join(lines)


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, default=str)


def to_jsonl(rows: Sequence[dict]) -> str:
    return "".join(json.dumps(r, default=str) + "\n" for r in rows)


def to_csv(rows: Sequence[dict], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    return buf.getvalue()


def render(rows: Sequence[dict], fmt: str, columns: Sequence[str], **table_kw: Any) -> str:
    """Render ``rows`` as ``table`` / ``json`` (one array) / ``jsonl`` / ``csv``.

    Strings are passed through ``printable`` (file names that are not UTF-8 come out escaped)."""
    rows = [clean(r) for r in rows]
    if fmt == "table":
        return table(rows, columns, **table_kw) + "\n"
    if fmt == "json":
        return to_json(list(rows)) + "\n"
    if fmt == "jsonl":
        return to_jsonl(rows)
    if fmt == "csv":
        return to_csv(rows, columns)
    raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")


# --------------------------------------------------------------------------- streaming rows
def write_stdout(text: str, *, machine: bool = True) -> None:
    """Write ``text`` to stdout and flush.  ``machine`` output (json, jsonl, csv) is always UTF-8 bytes,
    whatever the locale; a table uses the terminal's encoding, escaping what it cannot show."""
    stream = sys.stdout
    buf = getattr(stream, "buffer", None)
    if buf is None:  # a plain text stream (tests): it takes str
        stream.write(text)
        stream.flush()
        return
    stream.flush()
    enc = "utf-8" if machine else (getattr(stream, "encoding", None) or "utf-8")
    buf.write(text.encode(enc, "backslashreplace"))
    buf.flush()


def _csv_line(row: dict, columns: Sequence[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(["" if row.get(k) is None else row.get(k) for k in columns])
    return buf.getvalue()


def _csv_header(columns: Sequence[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(list(columns))
    return buf.getvalue()


def read_output_file(path: str | os.PathLike, fmt: str, key: str) -> tuple[list[dict], bool]:
    """Rows of an earlier run's ``--output`` file (``jsonl`` or ``csv``), for ``--resume``.

    A last line cut in the middle (the run was killed while writing it) is dropped.  Returns the rows
    (CSV values as strings, ``""`` for empty) and whether the file was clean (False: a cut line was
    dropped, so the file must be rewritten before appending).

    Raises:
        OutputError: the file is not UTF-8, a line other than the last is not a row of this format, or
            the rows have no ``key`` column (not an output of this command).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise OutputError(f"cannot read it to resume ({e.strerror})", source=path) from None
    cut = len(data)
    clean_file = True
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1  # drop the partial last line
        clean_file = False
    try:
        text = data[:cut].decode("utf-8")
    except UnicodeDecodeError as e:
        raise OutputError(f"cannot resume: not UTF-8 text (byte {e.start})", source=path) from None
    lines = text.split("\n")[:-1] if text else []  # rows never hold a newline (printable escapes it)
    rows: list[dict] = []
    if fmt == "jsonl":
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict) or key not in row:
                    raise ValueError(f"no {key!r} field")
            except ValueError as e:
                if n == len(lines):  # a last line that does not parse is a cut write
                    clean_file = False
                    break
                raise OutputError(f"cannot resume: line {n} is not a JSON row of this command ({e})",
                                  source=path) from None
            rows.append(row)
    elif fmt == "csv":
        records = list(csv.reader(lines))
        if records:
            header = records[0]
            if key not in header:
                raise OutputError(f"cannot resume: the CSV header has no {key!r} column (not this command's "
                                  "output?)", source=path)
            for n, rec in enumerate(records[1:], 2):
                if len(rec) != len(header):
                    if n == len(records):
                        clean_file = False
                        break
                    raise OutputError(f"cannot resume: line {n} has {len(rec)} fields, the header "
                                      f"{len(header)}", source=path)
                rows.append(dict(zip(header, rec)))
    else:
        raise ValueError(f"cannot resume a {fmt} file; one of {', '.join(STREAMING_FORMATS)}")
    return rows, clean_file


class RowSink:
    """Where a batch command's rows go, one at a time, as each file finishes.

    ``jsonl`` and ``csv`` rows are written and flushed as they come (stdout, or ``output`` opened for
    appending), so a killed run keeps every row written so far.  ``table`` needs every row for its
    column widths and ``json`` is one document: both are rendered by ``close()`` (to ``output``
    atomically).

    Args:
        fmt: one of ``FORMATS``.
        columns: the columns of ``table`` / ``csv`` (JSON rows keep all their fields).
        output: a file for the rows instead of stdout (``--output``).  It must not exist unless
            ``resume`` (continue it) or ``overwrite`` (replace it).
        resume: read the rows already in ``output`` (``previous``; their ``key`` values in ``done``) and
            append the new ones; a last line cut by a kill is dropped and the file rewritten cleanly.
            Needs a streaming format; a missing ``output`` just starts it.
        key: the column that identifies a row (the input file's path).
        pause: a context factory wrapped around each stdout write (a progress bar steps aside).
        table_kw: extra arguments of ``table`` (``percent``, ``headers``).

    Raises:
        OutputError: ``output`` exists without ``resume``/``overwrite``, is a folder, cannot be read
            back or written.
    """

    def __init__(self, fmt: str, columns: Sequence[str], *, output: str | os.PathLike | None = None,
                 resume: bool = False, overwrite: bool = False, key: str = "path",
                 pause: Callable[[], ContextManager] | None = None, table_kw: dict | None = None):
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
        if resume and fmt not in STREAMING_FORMATS:
            raise ValueError("resume needs a streaming format (jsonl, csv)")
        self.fmt, self.columns, self.key = fmt, list(columns), key
        self.output = None if output is None else Path(output)
        self.pause = pause or nullcontext
        self.table_kw = table_kw or {}
        self.previous: list[dict] = []
        self.buffered: list[dict] = []
        self.written = 0
        self._fh: TextIO | None = None
        self._rewrite = False
        self._append = False
        self._closed = False
        if self.output is not None:
            if self.output.is_dir():
                raise OutputError("is a folder, not a file for the rows", source=self.output)
            if self.output.exists():
                if resume:
                    self.previous, clean_file = read_output_file(self.output, fmt, key)
                    self._rewrite = not clean_file or (fmt == "csv" and not self._header_matches())
                    self._append = True
                elif not overwrite:
                    raise OutputError("already exists (pass --resume to continue it, --overwrite to replace it)",
                                      source=self.output)
        self.done: set[str] = {str(r.get(key)) for r in self.previous}

    def _header_matches(self) -> bool:
        with open(self.output, encoding="utf-8", newline="") as f:
            first = f.readline()
        return next(csv.reader([first]), []) == self.columns

    # ------------------------------------------------------------------ streaming
    def _open(self) -> TextIO:
        if self._fh is None:
            if self._rewrite:  # a cut last line or other columns: rewrite the kept rows cleanly, then append
                from .files import atomic_write_text

                text = (_csv_header(self.columns) + "".join(_csv_line(r, self.columns) for r in self.previous)
                        if self.fmt == "csv" else to_jsonl(self.previous))
                atomic_write_text(self.output, text)
                self._rewrite = False
            try:
                self.output.parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.output, "a" if self._append else "w", encoding="utf-8", newline="")
            except OSError as e:
                raise OutputError(f"cannot write the rows ({e.strerror})", source=self.output) from None
            if self.fmt == "csv" and not (self._append and (self.previous or self.output.stat().st_size)):
                self._fh.write(_csv_header(self.columns))
                self._fh.flush()
        return self._fh

    def _emit(self, text: str) -> None:
        if self.output is None:
            with self.pause():
                write_stdout(text)
            return
        fh = self._open()
        try:
            fh.write(text)
            fh.flush()
        except OSError as e:
            raise OutputError(f"cannot write the rows ({e.strerror})", source=self.output) from None

    def write(self, row: dict) -> None:
        """Add one row: written and flushed now (jsonl, csv) or kept for ``close()`` (table, json)."""
        row = clean(row)
        if self.fmt == "jsonl":
            self._emit(json.dumps(row, default=str) + "\n")
        elif self.fmt == "csv":
            if self.output is None and self.written == 0:
                self._emit(_csv_header(self.columns))
            self._emit(_csv_line(row, self.columns))
        else:
            self.buffered.append(row)
        self.written += 1

    def close(self, abandon: bool = False) -> None:
        """Finish: render a table / JSON document (written atomically to ``output``), or close the row file
        (created, with its CSV header, even when no row came).  ``abandon``: the run failed before its first
        row: write nothing (no empty document, no new empty file; a file being resumed is left as it was).
        Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if abandon:
            if self._fh is not None:
                self._fh.close()
            return
        if self.fmt in STREAMING_FORMATS:
            if self.output is None:
                if self.fmt == "csv" and self.written == 0:
                    self._emit(_csv_header(self.columns))
                return
            self._open()
            self._fh.close()
            return
        text = render(self.buffered, self.fmt, self.columns, **self.table_kw)
        if self.output is None:
            with self.pause():
                write_stdout(text, machine=self.fmt != "table")
        else:
            from .files import atomic_write_text

            atomic_write_text(self.output, text)

    def all_rows(self) -> list[dict]:
        """The rows read back from ``output`` (``--resume``) followed by the ones written by this run (only
        those kept: table/json; for jsonl/csv the caller keeps its own)."""
        return self.previous + self.buffered

