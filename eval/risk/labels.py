"""Speaker labels for a set of audio files: from folder names, a CSV, or an ASVspoof-style protocol."""
from __future__ import annotations

import os
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from voiceguard.audio import find_audio_files
from voiceguard.errors import RiskError, VoiceguardWarning, preview
from voiceguard.files import csv_header_cells, iter_text_lines, read_csv_table
from voiceguard.protocols import read_protocol

SPEAKER_FROM = ("folder", "prefix")


@dataclass(frozen=True)
class LabeledFile:
    """One audio file and the speaker it is (or claims to be)."""

    path: str
    speaker: str
    key: str = "bonafide"  # bonafide | spoof: spoofs claim ``speaker``


def labels_from_folder(folder: str | os.PathLike, speaker_from: str = "folder") -> list[LabeledFile]:
    """``folder``: speaker = the first sub-folder under DIR (``DIR/SPEAKER/**/file``);
    ``prefix``: speaker = the file name up to its first ``-`` or ``_`` (``SPK-CHAPTER-UTT.flac``)."""
    root = Path(folder)
    if not root.is_dir():
        raise RiskError("no such folder", source=root)
    if speaker_from not in SPEAKER_FROM:
        raise RiskError(f"unknown speaker source {speaker_from!r} (folder or prefix)")
    files, problems = find_audio_files([root])
    if not files:
        raise RiskError(problems[0].reason if problems else "folder holds no audio files", source=root)
    out = []
    if speaker_from == "folder":
        loose = [str(f) for f in files if f.parent == root]
        if loose:
            raise RiskError(f"{len(loose)} file(s) sit directly in the folder, not in a speaker sub-folder "
                            f"({preview(loose)}); lay files out as DIR/SPEAKER/..., or use --speaker-from prefix "
                            f"or --labels CSV", source=root)
        for f in files:
            out.append(LabeledFile(str(f), f.relative_to(root).parts[0]))
    else:
        for f in files:
            stem = f.stem
            cut = min((i for i in (stem.find("-"), stem.find("_")) if i > 0), default=-1)
            if cut < 0:
                raise RiskError("file name has no SPEAKER- or SPEAKER_ prefix (use --speaker-from folder or "
                                "--labels CSV)", source=f)
            out.append(LabeledFile(str(f), stem[:cut]))
    return out


def labels_from_csv(path: str | os.PathLike, root: str | os.PathLike | None = None) -> list[LabeledFile]:
    """CSV with a header holding ``path`` (or ``file``) and ``speaker`` (optional ``key``: bonafide/spoof).

    Relative paths resolve against ``root`` (default: the CSV's folder).  Read with the shared reader
    (byte-order mark, CRLF, ``,``/``;``/tab delimiters).  Raises ``RiskError`` naming the file (and line)."""
    path = Path(path)
    base = Path(root) if root else path.parent
    header, rows = read_csv_table(path, RiskError, "label file", need={"speaker"})
    cols = set(header)
    col = "path" if "path" in cols else "file" if "file" in cols else None
    if col is None or "speaker" not in cols:
        raise RiskError(f"label CSV needs a header with path (or file) and speaker; got {sorted(cols)}",
                        source=path)
    out = []
    for n, row in rows:
        if not row.get(col) or not row.get("speaker"):
            raise RiskError(f"line {n}: empty {col} or speaker", source=path)
        p = Path(row[col])
        key = (row.get("key") or "bonafide").lower()
        if key not in ("bonafide", "spoof"):
            raise RiskError(f"line {n}: key {key!r} is not bonafide or spoof", source=path)
        out.append(LabeledFile(str(p if p.is_absolute() else base / p), row["speaker"], key))
    if not out:
        raise RiskError("label CSV has no rows", source=path)
    return out


def is_label_csv(path: str | os.PathLike) -> bool:
    """True when the file's first row is a label-CSV header (``path``/``file`` and ``speaker``, no ``label``
    column): read it with ``labels_from_csv``; anything else is a protocol (In-the-Wild ``meta.csv`` has
    ``label`` and is one).  Never raises: an unreadable file is left to the reader that reports it."""
    try:
        for _, line in iter_text_lines(path, RiskError, "label file"):
            if line.strip() and not line.lstrip().startswith("#"):
                cells = set(csv_header_cells(line))
                return "speaker" in cells and bool({"path", "file"} & cells) and "label" not in cells
    except RiskError:
        pass
    return False


def labels_from_protocol(path: str | os.PathLike, audio_dir: str | os.PathLike, ext: str = ".flac",
                         fmt: str = "auto") -> list[LabeledFile]:
    """An ASVspoof 2019/2021/5, In-the-Wild or CSV protocol (``fmt``: ``auto`` sniffs it): speaker column,
    bona fide / spoof key.  Raises ``ProtocolError`` naming the file and line."""
    return [LabeledFile(str(t.audio_path(audio_dir, ext)), t.speaker, t.label) for t in read_protocol(path, fmt)]


def labeled_files(source: str | os.PathLike, labels: str | os.PathLike | None = None, speaker_from: str = "folder",
                  protocol_format: str = "auto") -> list[LabeledFile]:
    """The labelled files of ``source``: from ``labels`` when given -- a label CSV (``path,speaker[,key]``,
    relative to ``source`` when it is a folder) or a protocol (paths relative to ``source``; told apart by
    content unless ``protocol_format`` names one) -- else from the folder layout (``labels_from_folder``).

    Raises:
        RiskError / ProtocolError: unreadable labels, no such folder, no audio files.
    """
    if labels:
        if protocol_format == "auto" and is_label_csv(labels):
            return labels_from_csv(labels, root=source if Path(source).is_dir() else None)
        return labels_from_protocol(labels, source, fmt=protocol_format)
    return labels_from_folder(source, speaker_from)


def files_to_check(source: str | os.PathLike, labels: str | os.PathLike | None = None, speaker_from: str = "folder",
                   protocol_format: str = "auto") -> list[LabeledFile] | list[str]:
    """The files of a check that may go without speakers: ``labeled_files`` unless ``labels`` is None and
    ``speaker_from`` is ``none``; then the path of every audio file under ``source`` (each one left out, e.g.
    unreadable, is a ``VoiceguardWarning`` ``PATH: REASON (left out)``).

    Raises:
        RiskError: no audio files (or as ``labeled_files``).
    """
    if labels or speaker_from != "none":
        return labeled_files(source, labels, speaker_from, protocol_format)
    found, problems = find_audio_files([source])
    for p in problems:
        warnings.warn(VoiceguardWarning(f"{p.path}: {p.reason} (left out)"), stacklevel=2)
    if not found:
        raise RiskError("no audio files", source=source)
    return [str(p) for p in found]


def check_labels(files: list[LabeledFile], *, what: str, min_speakers: int = 2, min_per_speaker: int = 1
                 ) -> dict[str, list[LabeledFile]]:
    """Group by speaker; clear errors for too few speakers, too few files, missing or doubly labelled files."""
    missing = [f.path for f in files if not Path(f.path).is_file()]
    if missing:
        raise RiskError(f"{what}: {len(missing)} labelled file(s) do not exist: {preview(missing)}")
    dup = [p for p, c in Counter(f.path for f in files).items() if c > 1]
    clash = [p for p in dup if len({f.speaker for f in files if f.path == p}) > 1]
    if clash:
        raise RiskError(f"{what}: file(s) labelled with two different speakers: {preview(clash)}")
    by: dict[str, list[LabeledFile]] = defaultdict(list)
    seen: set[str] = set()
    for f in files:
        if f.path not in seen:
            seen.add(f.path)
            by[f.speaker].append(f)
    if len(by) < min_speakers:
        raise RiskError(f"{what}: {len(by)} speaker(s) ({preview(sorted(by))}); this check needs at least "
                        f"{min_speakers}")
    few = [f"{s} ({len(v)} file: {v[0].path})" for s, v in sorted(by.items()) if len(v) < min_per_speaker]
    if few:
        raise RiskError(f"{what}: every speaker needs at least {min_per_speaker} files; too few for "
                        f"{preview(few)}")
    return dict(by)


__all__ = ["LabeledFile", "labels_from_folder", "labels_from_csv", "labels_from_protocol", "labeled_files",
           "files_to_check", "check_labels", "SPEAKER_FROM", "is_label_csv"]
