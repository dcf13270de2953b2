"""Trials and the protocol formats of the anti-spoofing world.

One frozen ``Trial`` per utterance.  Readers for ASVspoof 2019 LA/PA CM
protocols, ASVspoof 2021 LA/DF keys (``trial_metadata.txt``), ASVspoof 5
protocol files, In-the-Wild ``meta.csv`` and a generic CSV
(``path,label[,attack,speaker]``); writers for the 2019 format.  The format is
sniffed from the content (``detect_format``); every file is read through
``voiceguard.files`` (byte-order marks, CRLF, UTF-16 handled).
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

from .errors import ProtocolError, preview
from .files import atomic_write_text, csv_header_cells, iter_text_lines, read_csv_table, read_rows

BONAFIDE = "bonafide"
SPOOF = "spoof"
_LABELS = {
    "bonafide": BONAFIDE, "bona-fide": BONAFIDE, "bona_fide": BONAFIDE, "bona fide": BONAFIDE,
    "genuine": BONAFIDE, "real": BONAFIDE, "human": BONAFIDE, "0": BONAFIDE,
    "spoof": SPOOF, "spoofed": SPOOF, "fake": SPOOF, "synthetic": SPOOF, "deepfake": SPOOF, "1": SPOOF,
}


@dataclass(frozen=True)
class Trial:
    """One utterance of a protocol."""

    utt_id: str
    label: str  # "bonafide" | "spoof"
    attack: str = "-"  # attack / system id ("-" for bona fide), e.g. "A07"
    speaker: str = "-"
    path: str | None = None  # audio path when the format gives one (relative paths resolve against audio_dir)
    condition: str = "-"  # codec / channel / environment condition, e.g. "alaw", "mp3m4a", "aaa"
    extra: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def is_bonafide(self) -> bool:
        return self.label == BONAFIDE

    @property
    def source(self) -> str:
        """Where the recording comes from (``extra["source"]``, ``"-"`` when unknown): the bona fide corpus of
        a CSV protocol's ``system``/``source`` column, ASVspoof 2021's SOURCE column."""
        return self.extra.get("source") or "-"

    def audio_path(self, audio_dir: str | os.PathLike | None = None, ext: str = ".flac") -> Path:
        """The file of this trial: its own path, else ``audio_dir/utt_id + ext``."""
        if self.path is not None:
            p = Path(self.path)
            return p if p.is_absolute() or audio_dir is None else Path(audio_dir) / p
        return Path(audio_dir or ".") / f"{self.utt_id}{ext}"


def normalize_label(value: str, *, source: str = "", line: int | None = None) -> str:
    """Map the many spellings of bona fide / spoof to ``"bonafide"`` / ``"spoof"``."""
    key = value.strip().lower()
    if key in _LABELS:
        return _LABELS[key]
    where = f"line {line}: " if line is not None else ""
    raise ProtocolError(f"{where}unknown label {value!r} (expected bonafide or spoof)", source=source or None)


# --------------------------------------------------------------------------- readers
def _rows(path: Path) -> Iterable[tuple[int, list[str]]]:
    return read_rows(path, ProtocolError, "protocol file")


def _need(parts: list[str], k: int, path: Path, n: int, what: str) -> None:
    if len(parts) < k:
        raise ProtocolError(f"line {n}: expected {what} ({k} columns), got {len(parts)}: {' '.join(parts)!r}",
                            source=path)


def read_asvspoof2019(path: str | os.PathLike) -> list[Trial]:
    """ASVspoof 2019 LA or PA CM protocol: ``SPEAKER UTT ENV|- ATTACK|- KEY``."""
    path = Path(path)
    trials = []
    for n, p in _rows(path):
        _need(p, 5, path, n, "SPEAKER UTT - ATTACK KEY")
        trials.append(Trial(utt_id=p[1], label=normalize_label(p[4], source=str(path), line=n),
                            attack=p[3], speaker=p[0], condition=p[2]))
    return _checked(trials, path)


def read_asvspoof2021(path: str | os.PathLike) -> list[Trial]:
    """ASVspoof 2021 LA/DF/PA keys (``trial_metadata.txt``).

    LA: ``SPK UTT CODEC TRANSMISSION ATTACK KEY TRIM SUBSET``;
    DF: ``SPK UTT CODEC SOURCE ATTACK KEY TRIM SUBSET VOCODER ...``.
    The codec becomes ``condition``; other columns go to ``extra``.
    """
    path = Path(path)
    names = ["speaker", "utt", "codec", "source", "attack", "key", "trim", "subset", "vocoder"]
    trials = []
    for n, p in _rows(path):
        _need(p, 6, path, n, "SPK UTT CODEC SOURCE ATTACK KEY ...")
        extra = {names[i]: p[i] for i in (3, 6, 7, 8) if i < len(p)}
        if len(p) > 9:
            extra["rest"] = " ".join(p[9:])
        trials.append(Trial(utt_id=p[1], label=normalize_label(p[5], source=str(path), line=n), attack=p[4],
                            speaker=p[0], condition=p[2], extra=extra))
    return _checked(trials, path)


def read_asvspoof5(path: str | os.PathLike) -> list[Trial]:
    """ASVspoof 5 protocol: ``SPK FILE GENDER CODEC CODEC_Q CODEC_SEED ATTACK_TAG ATTACK_LABEL KEY [TMP]``.

    ``condition`` is ``CODEC`` (with ``CODEC_Q`` when given, e.g. ``C05-2``).
    """
    path = Path(path)
    trials = []
    first = True
    for n, p in _rows(path):
        if first and _is_a5_header(p):
            first = False
            continue  # header row
        first = False
        _need(p, 9, path, n, "SPK FILE GENDER CODEC CODEC_Q CODEC_SEED ATTACK_TAG ATTACK_LABEL KEY")
        cond = p[3] if p[3] == "-" or p[4] in ("-", "0") else f"{p[3]}-{p[4]}"  # eval marks uncoded as "- 0"
        trials.append(Trial(utt_id=p[1], label=normalize_label(p[8], source=str(path), line=n), attack=p[7],
                            speaker=p[0], condition=cond,
                            extra={"gender": p[2], "codec_seed": p[5], "attack_tag": p[6]}))
    return _checked(trials, path)


def _is_a5_header(p: list[str]) -> bool:
    """The ASVspoof 5 header row (``SPEAKER_ID FLAC_FILE_NAME ... KEY [TMP]``), not a data row."""
    return len(p) >= 9 and p[0].upper() in {"SPEAKER_ID", "SPK", "SPEAKER"} and p[8].lower() not in _LABELS


_ITW_COLUMNS = frozenset({"file", "speaker", "label"})
_CSV_COLUMNS = frozenset({"path", "label"})


def _csv_rows(path: Path, need: frozenset[str]) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    return read_csv_table(path, ProtocolError, "protocol file", need=need)


def read_in_the_wild(path: str | os.PathLike) -> list[Trial]:
    """In-the-Wild ``meta.csv``: ``file,speaker,label`` (label ``spoof`` / ``bona-fide``)."""
    path = Path(path)
    header, rows = _csv_rows(path, _ITW_COLUMNS)
    missing = _ITW_COLUMNS - set(header)
    if missing:
        raise ProtocolError(f"In-the-Wild meta.csv needs columns file,speaker,label; missing {sorted(missing)}",
                            source=path)
    trials = []
    for n, r in rows:
        if not r["file"]:
            raise ProtocolError(f"line {n}: empty file name", source=path)
        label = normalize_label(r["label"], source=str(path), line=n)
        trials.append(Trial(utt_id=Path(r["file"]).stem, label=label, attack="-" if label == BONAFIDE else "itw",
                            speaker=r["speaker"] or "-", path=r["file"]))
    return _checked(trials, path)


def read_csv_protocol(path: str | os.PathLike) -> list[Trial]:
    """Generic CSV with a header: ``path,label[,attack,speaker]`` (extra columns kept in ``extra``).

    Optional columns: ``utt_id``, ``condition``, ``source`` and ``system``.  Without an ``attack`` column a
    spoof's ``system`` is its attack; a bona fide row's ``system`` (or its ``source``) is the corpus it comes
    from, kept as ``extra["source"]`` (``Trial.source``) for the bona fide false-alarm rate per corpus.
    """
    path = Path(path)
    header, rows = _csv_rows(path, _CSV_COLUMNS)
    missing = _CSV_COLUMNS - set(header)
    if missing:
        raise ProtocolError(f"CSV protocol needs a header with path,label[,attack,speaker]; missing "
                            f"{sorted(missing)}", source=path)
    trials = []
    for n, r in rows:
        if not r.get("path"):
            raise ProtocolError(f"line {n}: empty path", source=path)
        label = normalize_label(r["label"], source=str(path), line=n)
        system = r.get("system") or ""
        attack = r.get("attack") or ("-" if label == BONAFIDE else system or "unknown")
        known = {"path", "label", "attack", "speaker", "utt_id", "condition"}
        extra = {k: v for k, v in r.items() if k not in known}
        if label == BONAFIDE and not r.get("source") and system:
            extra["source"] = system
        trials.append(Trial(utt_id=r.get("utt_id") or Path(r["path"]).stem, label=label, attack=attack,
                            speaker=r.get("speaker") or "-", path=r["path"], condition=r.get("condition") or "-",
                            extra=extra))
    return _checked(trials, path)


READERS: dict[str, Callable[[str | os.PathLike], list[Trial]]] = {
    "asvspoof2019": read_asvspoof2019,
    "asvspoof2021": read_asvspoof2021,
    "asvspoof5": read_asvspoof5,
    "in-the-wild": read_in_the_wild,
    "csv": read_csv_protocol,
}


#: what ``--protocol-format`` accepts: ``auto`` (sniff the content) or one of the readers
PROTOCOL_FORMATS = ("auto", *READERS)


def detect_format(path: str | os.PathLike) -> str:
    """Guess the protocol format from the file's content (never from its name).

    A first row that is a CSV header (``,``, ``;`` or tab separated) naming ``file,speaker,label`` is
    In-the-Wild, one naming ``path,label`` the generic CSV; otherwise the whitespace columns of the first
    row tell ASVspoof 2019 (5), 2021 (label in column 6) and ASVspoof 5 (label in column 9 or a
    ``SPEAKER_ID`` header) apart.  Blank lines, ``#`` comments and a byte-order mark are skipped.
    Raises ``ProtocolError`` (file, line, and the ``--protocol-format`` choices) when no format fits.
    """
    path = Path(path)
    for n, line in iter_text_lines(path, ProtocolError, "protocol file"):
        p = line.split()
        if not p or p[0].startswith("#"):
            continue
        cells = set(csv_header_cells(line))
        if _ITW_COLUMNS <= cells:
            return "in-the-wild"
        if _CSV_COLUMNS <= cells:
            return "csv"
        if _is_a5_header(p):
            return "asvspoof5"
        if len(p) == 5:
            return "asvspoof2019"
        if len(p) >= 9 and p[8].lower() in _LABELS:
            return "asvspoof5"
        if len(p) >= 6 and p[5].lower() in _LABELS:
            return "asvspoof2021"
        if "," in line or ";" in line or path.suffix.lower() == ".csv":  # a CSV without the needed columns:
            return "in-the-wild" if "file" in cells else "csv"  # its reader names the missing ones
        raise ProtocolError(f"line {n}: cannot tell the protocol format from {preview_text(line)}; give it "
                            f"with --protocol-format (one of {', '.join(READERS)})", source=path)
    raise ProtocolError("protocol file has no rows", source=path)


def preview_text(line: str, limit: int = 80) -> str:
    """``repr`` of a stripped line, cut to ``limit`` characters (for error messages)."""
    line = line.strip()
    return repr(line if len(line) <= limit else line[:limit] + "...")


def read_protocol(path: str | os.PathLike, fmt: str | None = "auto") -> list[Trial]:
    """Read any supported protocol; ``fmt='auto'`` (or ``None``) detects the format from the content.

    Returns one ``Trial`` per row (at least one, ids unique).  Raises ``ProtocolError`` naming the file (and
    the line) for anything malformed: unknown format, wrong column count, unknown label, duplicated ids.
    """
    fmt = detect_format(path) if fmt in (None, "auto") else fmt
    if fmt not in READERS:
        raise ProtocolError(f"unknown protocol format {fmt!r} (one of {', '.join(READERS)})", source=path)
    return READERS[fmt](path)


# --------------------------------------------------------------------------- validation
def _checked(trials: list[Trial], path: Path) -> list[Trial]:
    if not trials:
        raise ProtocolError("protocol has no trials", source=path)
    counts = Counter(t.utt_id for t in trials)
    dups = [u for u, c in counts.items() if c > 1]
    if dups:
        raise ProtocolError(f"{len(dups)} duplicated utterance id(s): {preview(dups)}", source=path)
    return trials


def check_audio_files(trials: list[Trial], audio_dir: str | os.PathLike | None = None, ext: str = ".flac",
                      *, source: str | None = None) -> None:
    """Raise ``ProtocolError`` listing the first missing audio files and counting the rest."""
    missing = [str(t.audio_path(audio_dir, ext)) for t in trials if not t.audio_path(audio_dir, ext).is_file()]
    if missing:
        raise ProtocolError(f"{len(missing)} of {len(trials)} audio files are missing: {preview(missing)}",
                            source=source)


@dataclass(frozen=True)
class ProtocolSummary:
    """Counts of a protocol."""

    n_trials: int
    n_bonafide: int
    n_spoof: int
    n_speakers: int
    attacks: Mapping[str, int]
    sources: Mapping[str, int] = field(default_factory=dict)  # bona fide trials per source corpus (when named)

    def to_dict(self) -> dict:
        d = {"n_trials": self.n_trials, "n_bonafide": self.n_bonafide, "n_spoof": self.n_spoof,
             "n_speakers": self.n_speakers, "attacks": dict(self.attacks)}
        if self.sources:
            d["sources"] = dict(self.sources)
        return d


def summarize(trials: list[Trial]) -> ProtocolSummary:
    """Counts of ``trials``: per class, per spoof attack, speakers, and bona fide trials per source corpus
    (``sources``, empty when no bona fide trial names one)."""
    nb = sum(t.is_bonafide for t in trials)
    attacks = Counter(t.attack for t in trials if not t.is_bonafide)
    sources = Counter(t.source for t in trials if t.is_bonafide)
    return ProtocolSummary(len(trials), nb, len(trials) - nb, len({t.speaker for t in trials}),
                           dict(sorted(attacks.items())), dict(sorted(sources.items())) if set(sources) - {"-"} else {})


# --------------------------------------------------------------------------- writers
def format_asvspoof2019(trials: Iterable[Trial]) -> str:
    """The 5-column LA19 format: ``SPEAKER UTT CONDITION ATTACK KEY``."""
    return "".join(f"{t.speaker} {t.utt_id} {t.condition} {t.attack} {t.label}\n" for t in trials)


def write_asvspoof2019(path: str | os.PathLike, trials: Iterable[Trial]) -> Path:
    """Write a protocol in the ASVspoof 2019 5-column format (atomically)."""
    return atomic_write_text(path, format_asvspoof2019(trials))
