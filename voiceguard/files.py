"""Atomic output files (write to a temporary sibling, then rename over the target) and the one reader of
text inputs (BOM, CRLF, UTF-16 handled; errors name the file and line)."""
from __future__ import annotations

import csv
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import OutputError, VoiceguardError


_UMASK = os.umask(0)  # read once, at import (single-threaded): os.umask can only be read by setting it
os.umask(_UMASK)


@contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    On any error the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError("is a directory", source=path)
    if path.exists() and not overwrite:
        raise OutputError("already exists (use --overwrite to replace it)", source=path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{path.suffix}", dir=path.parent)
    except OSError as e:
        raise OutputError(f"cannot write here ({e.strerror})", source=path) from None
    os.close(fd)
    try:
        yield tmp
        # mkstemp makes the file private (0600): give it the mode a plain open() would, or keep the
        # replaced file's mode
        if path.exists():
            mode = path.stat().st_mode & 0o777
        else:
            mode = 0o666 & ~_UMASK
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike, text: str, *, overwrite: bool = True) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_output(path, overwrite=overwrite) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return Path(path)


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when both paths name the same existing file (or the same resolved path)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


# --------------------------------------------------------------------------- text inputs
#: Longest line a text table may have: a binary file with no newline must not be read into memory whole.
MAX_LINE_BYTES = 1 << 20
_LONE_CR = re.compile(r"(?<=\r)(?!\n)")  # split after a CR not followed by LF (old Mac line ends)

_BOMS = (  # longest first: the UTF-32 LE mark starts with the UTF-16 LE one
    (b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"),
)


def _check_input(path: Path, error: type[VoiceguardError], what: str) -> None:
    if not path.exists():
        raise error(f"no such {what}", source=path)
    if path.is_dir():
        raise error(f"is a directory, not a {what}", source=path)
    if not path.is_file():
        raise error(f"not a regular file (a device, FIFO or socket), not a {what}", source=path)


def iter_text_lines(path: str | os.PathLike, error: type[VoiceguardError], what: str) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` of a text input, line endings kept (``\\n``, ``\\r\\n`` or ``\\r``).

    The one way every text input (protocols, score files, ASV lists, label CSVs, YAML configs) is read:
    UTF-8, with or without a byte-order mark (spreadsheets write one), or UTF-16/32 with a BOM ("Unicode
    text"); the BOM never reaches the caller.  Streams line by line (UTF-8), so huge protocols are fine.

    Raises ``error`` (a ``VoiceguardError`` subclass) naming the file and ``what`` it should be: missing,
    a folder, not a regular file, a line that is not UTF-8 (with its number), a NUL byte (a binary file),
    or a line longer than ``MAX_LINE_BYTES``.
    """
    path = Path(path)
    _check_input(path, error, what)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            enc = next((e for bom, e in _BOMS if head.startswith(bom)), None)
            if enc in ("utf-16", "utf-32"):
                yield from _wide_lines(head + f.read(), enc, path, error, what)
                return
            f.seek(3 if enc == "utf-8" else 0)
            n = 0  # number of the last line yielded
            while True:
                raw = f.readline(MAX_LINE_BYTES + 1)
                if not raw:
                    return
                n += 1
                if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                    raise error(f"line {n} is longer than {MAX_LINE_BYTES >> 20} MiB: not a text {what}",
                                source=path)
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise error(f"line {n}: not a text {what} (byte {e.start + 1} of the line, "
                                f"0x{raw[e.start]:02x}, is not UTF-8)", source=path) from None
                if "\x00" in text:
                    raise error(f"line {n}: NUL byte: not a text {what} (a binary file?)", source=path)
                pieces = _LONE_CR.split(text) if "\r" in text else [text]
                for piece in pieces:
                    if piece:
                        yield n, piece
                        n += 1
                n -= 1
    except OSError as e:
        raise error(f"cannot read ({e.strerror or e})", source=path) from None


def _wide_lines(data: bytes, enc: str, path: Path, error: type[VoiceguardError], what: str
                ) -> Iterator[tuple[int, str]]:
    try:
        text = data.decode(enc)
    except UnicodeDecodeError as e:
        raise error(f"not a text {what} (byte {e.start + 1} is not {enc.upper()} after its byte-order mark)",
                    source=path) from None
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    for n, line in enumerate(_nl_split(text), 1):
        if "\x00" in line:
            raise error(f"line {n}: NUL character: not a text {what}", source=path)
        yield n, line


def _nl_split(text: str) -> list[str]:
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    return lines + ([parts[-1]] if parts[-1] else [])


def read_text(path: str | os.PathLike, error: type[VoiceguardError], what: str) -> str:
    """The whole text of a small input (a YAML config, a card), read like ``iter_text_lines`` (BOM dropped,
    CRLF and CR ends become ``\\n``); errors as there."""
    return "".join(line.replace("\r\n", "\n").replace("\r", "\n") for _, line in iter_text_lines(path, error, what))


def read_rows(path: str | os.PathLike, error: type[VoiceguardError], what: str) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, whitespace-split columns)`` of a text table, skipping blanks and ``#`` comments.

    Read with ``iter_text_lines`` (BOM, CRLF, UTF-16 handled); a missing path, a folder, a non-regular file
    or undecodable text raises ``error`` naming ``what`` the file should be (and the line).
    """
    for n, line in iter_text_lines(path, error, what):
        parts = line.split()
        if parts and not parts[0].startswith("#"):
            yield n, parts


#: delimiters a CSV table may use (spreadsheets in many locales write ``;``)
CSV_DELIMITERS = (",", ";", "\t")


def read_csv_table(path: str | os.PathLike, error: type[VoiceguardError], what: str, *,
                   delimiter: str | None = None, need: set[str] | frozenset[str] = frozenset()
                   ) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """A CSV table with a header row: ``(header, [(line_number, {column: value}), ...])``.

    Column names are stripped and lower-cased, values stripped; blank rows are skipped; extra cells beyond
    the header are dropped, missing cells read as ``""``; blank and ``#`` lines before the header are skipped.  ``delimiter=None`` picks the first of
    ``CSV_DELIMITERS`` whose header holds every column of ``need`` (else the one splitting the header most).
    Text decoding as ``iter_text_lines``.  Raises ``error`` naming the file for undecodable text, malformed
    quoting (with the line) or a file with no header.
    """
    path = Path(path)
    lines = iter_text_lines(path, error, what)
    first = None
    for n0, line in lines:
        if line.strip() and not line.lstrip().startswith("#"):  # leading blank and comment lines
            first = (n0, line)
            break
    if first is None:
        raise error(f"{what} is empty (no header row)", source=path)
    if delimiter is None:
        delimiter = sniff_csv_delimiter(first[1], need)

    def chained():
        yield first[1]
        for _, ln in lines:
            yield ln

    reader = csv.reader(chained(), delimiter=delimiter)
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        header = [h.strip().lower() for h in next(reader)]
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            n = first[0] + reader.line_num - 1
            rows.append((n, {h: (cells[i].strip() if i < len(cells) else "") for i, h in enumerate(header) if h}))
    except csv.Error as e:
        raise error(f"line {first[0] + reader.line_num - 1}: malformed CSV ({e})", source=path) from None
    return header, rows


def csv_header_cells(line: str, delimiter: str | None = None) -> list[str]:
    """The stripped, lower-cased cells of one CSV line; ``delimiter=None``: all of ``CSV_DELIMITERS``
    together (for recognising a header whatever the delimiter).  Never raises."""
    out: list[str] = []
    for d in ((delimiter,) if delimiter else CSV_DELIMITERS):
        try:
            out += [c.strip().lower() for c in next(csv.reader([line.rstrip("\r\n")], delimiter=d))]
        except (csv.Error, StopIteration):
            pass
    return out


def sniff_csv_delimiter(header_line: str, need: set[str] | frozenset[str] = frozenset()) -> str:
    """The delimiter of a CSV header line: the first of ``CSV_DELIMITERS`` whose cells include every name in
    ``need`` (case-insensitive), else the one giving the most cells (``,`` when none splits it)."""
    if need:
        for d in CSV_DELIMITERS:
            if set(need) <= set(csv_header_cells(header_line, d)):
                return d
    return max(CSV_DELIMITERS, key=lambda d: (len(csv_header_cells(header_line, d)), d == ","))


# --------------------------------------------------------------------------- marked blocks of a README
def block_markers(name: str) -> tuple[str, str]:
    """The HTML comments that delimit a generated block ``name`` of a Markdown file."""
    return f"<!-- voiceguard-{name}:begin -->", f"<!-- voiceguard-{name}:end -->"


def check_marked_block(path: str | os.PathLike, name: str) -> str:
    """The text of ``path`` when it has exactly one pair of ``name`` markers; else ``VoiceguardError``."""
    begin, end = block_markers(name)
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise VoiceguardError(f"cannot read ({e.strerror or e})", source=path) from None
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise VoiceguardError(f"needs exactly one '{begin}' ... '{end}' pair to replace", source=path)
    return text


def replace_marked_block(path: str | os.PathLike, name: str, block: str) -> None:
    """Replace the text between the ``name`` markers of ``path`` with ``block`` (atomically)."""
    begin, end = block_markers(name)
    head, rest = check_marked_block(path, name).split(begin)
    _, tail = rest.split(end)
    atomic_write_text(path, f"{head}{begin}\n{block.strip()}\n{end}{tail}")


def marked_block(path: str | os.PathLike, name: str) -> str:
    """The text currently between the ``name`` markers of ``path``."""
    begin, end = block_markers(name)
    return Path(path).read_text().split(begin, 1)[1].split(end, 1)[0].strip()
