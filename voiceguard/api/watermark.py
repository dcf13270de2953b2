"""Watermark files: embed into a file or folder, detect in many files (the tasks behind ``voiceguard watermark``).

    >>> from voiceguard.api import embed_file, detect_file
    >>> embed_file("talk.flac", "talk.marked.flac", "0xBEEF").message          # '0xBEEF'
    >>> detect_file("talk.marked.flac", expected=0xBEEF).result.bits_matched   # 16

``engine`` is a registered name (``voiceguard.watermark.WATERMARKERS``, loaded with
``voiceguard.watermark.load_watermarker(engine, **engine_options)``) or an engine already loaded.  A message is
parsed once, here (``parse_message``); the engine gets the int.  Single-file functions raise
``VoiceguardError``; the ``*_files`` iterators turn each bad file into an error row and go on.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Iterable, Iterator

from voiceguard.audio import audio_info, find_audio_files, load_audio, save_audio
from voiceguard.errors import OutputError, VoiceguardError, per_file
from voiceguard.files import same_file
from voiceguard.watermark import DEFAULT_ENGINE, DetectionResult, Watermarker, load_watermarker, parse_message
from voiceguard.writers import printable


@dataclass(frozen=True)
class EmbedRow:
    """One file watermarked (``status="ok"``) or not (``"error"``, with ``error`` saying why)."""

    source: str
    output: str | None
    status: str  # "ok" | "error"
    message: str | None = None  # e.g. "0xBEEF"
    duration_s: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class DetectRow:
    """One file analysed (``status="ok"``, with the engine's ``result``) or not (``"error"``)."""

    path: str
    status: str
    result: DetectionResult | None = None
    error: str | None = None

    def to_dict(self, presence: bool = False) -> dict:
        d: dict = {"path": self.path, "status": self.status}
        if self.result is not None:
            r = self.result.to_dict(presence=presence)
            d.update(detected=r["detected"], probability=r["probability"], message=r["message"],
                     message_status=r["message_status"], bits_corrected=r["bits_corrected"], speed=r["speed"],
                     bits_matched=r["bits_matched"], p_value=r["p_value"],
                     segments=";".join(f"{s['start']:.2f}-{s['end']:.2f}" for s in r["segments"]) or None,
                     duration_s=r["duration"], engine=r["engine"], model=r["model"], threshold=r["threshold"],
                     bit_confidence=r["bit_confidence"], **({"presence": r["presence"]} if presence else {}))
        d["error"] = self.error
        return d


def _engine(engine: str | Watermarker, need: str, options: dict[str, Any]) -> Watermarker:
    """``engine`` itself when already loaded, else ``load_watermarker(engine, need=need, **options)``."""
    if isinstance(engine, Watermarker):
        if any(v is not None for v in options.values()):
            raise TypeError("engine options go with an engine name, not with an engine already loaded")
        return engine
    return load_watermarker(engine, need=need, **options)


# --------------------------------------------------------------------------- embedding
def _embed_one(engine: Watermarker, src: Path, out: Path, message: int | None, overwrite: bool,
               in_place: bool) -> EmbedRow:
    """Watermark ``src`` into ``out`` (checked, written atomically); raises ``VoiceguardError``."""
    if out.exists() and same_file(src, out) and not in_place:
        raise OutputError("output is the input file; pass --in-place to replace it", source=out)
    if out.exists() and not (overwrite or in_place):
        raise OutputError("already exists (pass --overwrite to replace it)", source=out)
    info = audio_info(src)
    audio, sr = load_audio(src)
    value = engine.random_message() if message is None else message
    marked = engine.embed(audio, sr, value, source=str(src))
    out.parent.mkdir(parents=True, exist_ok=True)
    save_audio(out, marked, sr, like=info, overwrite=True)
    return EmbedRow(str(src), str(out), "ok", f"0x{value:04X}", round(audio.shape[-1] / sr, 3), sr, audio.shape[0])


def _embed(engine: Watermarker, src: Path, out: Path, message: int | None, overwrite: bool,
           in_place: bool) -> EmbedRow | VoiceguardError:
    """``_embed_one``, or its failure as a ``VoiceguardError`` naming the file (``per_file``)."""
    return per_file(lambda _: _embed_one(engine, src, out, message, overwrite, in_place), src, "watermarking")


@dataclass(frozen=True)
class EmbedJob:
    """The per-file work of ``embed_files`` (a ``voiceguard.executors.FileJob`` over ``(source, output)`` pairs).

    ``fresh``: outputs that did not exist when the run was planned (Ray): a retried file may replace the output
    an earlier, killed attempt of this run wrote, and nothing else."""

    engine: Watermarker
    message: int | None
    overwrite: bool
    in_place: bool
    fresh: frozenset = frozenset()

    def open(self):
        def process(pairs):
            for f, o in pairs:
                got = _embed(self.engine, f, o, self.message, self.overwrite or o in self.fresh, self.in_place)
                yield EmbedRow(str(f), str(o), "error", error=got.reason) if isinstance(got, VoiceguardError) else got
        return process

    def failed(self, item, reason: str) -> EmbedRow:
        return EmbedRow(str(item[0]), str(item[1]), "error", error=reason)


def embed_file(source: str | os.PathLike, output: str | os.PathLike, message: int | str | None = None, *,
               engine: str | Watermarker = DEFAULT_ENGINE, overwrite: bool = False, **engine_options: Any) -> EmbedRow:
    """Watermark one audio file into ``output``: same format, sample rate, channels and length, written
    atomically.

    Args:
        source: an audio file (any format ``voiceguard.audio`` reads).
        output: the file to write; ``source`` itself only with ``embed_files(..., in_place=True)``.
        message: an int in [0, 2**nbits) or a string such as ``"0xBEEF"``/``"48879"``; None: a random one
            (``EmbedRow.message`` says which).
        engine: an engine name or a loaded engine; ``engine_options`` as for ``load_watermarker`` (with a
            name only; the generator alone is loaded).
        overwrite: replace an existing ``output``.

    Returns:
        ``EmbedRow`` with ``status="ok"``, the message as hex, duration (s), sample rate and channels.

    Raises:
        VoiceguardError: a bad message (``MessageError``), an engine that cannot be loaded, an unreadable or
            too short input, an output that exists or is the input (``OutputError``), a failed write.
    """
    wm = _engine(engine, "embed", engine_options)
    value = parse_message(message, wm.nbits)
    got = _embed(wm, Path(source), Path(output), value, overwrite, False)
    if isinstance(got, VoiceguardError):
        raise got
    return got


def _embed_jobs(src: Path, output: str | os.PathLike | None, in_place: bool) -> tuple[list, list[tuple[Path, Path]]]:
    """(input problems, (source, output) pairs) of an embed run, checking the output first."""
    if output is None and not in_place:
        raise OutputError("no output given (pass OUT, or --in-place to replace the input)", source=src)
    if not src.is_dir():
        out = Path(output) if output is not None else src
        return [], [(src, out / src.name if out.is_dir() else out)]
    out_dir = Path(output) if output is not None else src
    if output is not None and out_dir.exists() and not out_dir.is_dir():
        raise OutputError("input is a folder, so the output must be a folder", source=out_dir)
    files, problems = find_audio_files([src])
    if output is not None and out_dir.resolve() != src.resolve() and out_dir.resolve().is_relative_to(src.resolve()):
        # an output folder inside the input folder: its files are outputs of earlier runs, not inputs
        files = [f for f in files if not f.resolve().is_relative_to(out_dir.resolve())]
    return problems, [(f, out_dir / f.relative_to(src)) for f in files]


def embed_files(source: str | os.PathLike, output: str | os.PathLike | None = None, message: int | str | None = None,
                *, engine: str | Watermarker = DEFAULT_ENGINE, overwrite: bool = False, in_place: bool = False,
                progress=None, skip: Collection[str] = frozenset(), executor=None,
                **engine_options: Any) -> Iterator[EmbedRow]:
    """Watermark a file into a file, or a folder into a folder (relative paths kept); ``in_place`` writes
    over the inputs (atomically).  ``message``, ``engine``, ``engine_options`` and ``overwrite`` as for
    ``embed_file``; with ``message=None`` each file gets its own random message.

    Returns an iterator yielding an ``EmbedRow`` per file as it is done (unreadable inputs first); the engine
    is loaded, the message parsed and the output checked now, before any file.  ``progress``: a
    ``voiceguard.progress.Progress`` (set to the number of files, one step per row).  ``skip``: source paths
    to leave out, as written in outputs (``writers.printable``; used by ``--resume``).  ``executor``: None /
    ``"local"`` (this process, sorted order), ``"ray"`` or a ``voiceguard.executors.ExecutorSpec``: Ray actors
    that each receive the loaded engine once; rows in the order files finish, each file exactly once.  On Ray
    a file whose worker died is embedded again (it may replace the output the killed attempt wrote, as that
    output did not exist when the run was planned); ``in_place`` is refused there, as a retry would mark an
    already marked input a second time.

    Raises:
        OutputError: no output and not ``in_place``, or a folder input with a file as output; ``in_place`` with
            a Ray executor.
        VoiceguardError: a bad message, an engine that cannot be loaded.
    """
    from voiceguard.executors import as_spec, run_job

    spec = as_spec(executor)
    src = Path(source)
    if in_place and not spec.is_local:
        raise OutputError("in-place embedding cannot run on Ray: a retried file would be watermarked twice; "
                          "write to an output folder instead", source=src)
    problems, jobs = _embed_jobs(src, output, in_place)
    wm = _engine(engine, "embed", engine_options)
    value = parse_message(message, wm.nbits)
    problems = [p for p in problems if printable(p.path) not in skip]
    jobs = [(f, o) for f, o in jobs if printable(str(f)) not in skip]
    if progress is not None:
        progress.set_total(len(problems) + len(jobs))

    fresh = frozenset() if spec.is_local else frozenset(o for _, o in jobs if not o.exists())
    job = EmbedJob(wm, value, overwrite, in_place, fresh)

    def rows() -> Iterator[EmbedRow]:
        done = run_job(job, jobs, spec)  # Ray workers start here: their errors come before any row
        for p in problems:
            yield _counted(EmbedRow(p.path, None, "error", error=p.reason), progress)
        for _, row in done:
            yield _counted(row, progress)

    return rows()


def _counted(row, progress):
    if progress is not None:
        progress.advance()
    return row


# --------------------------------------------------------------------------- detection
def _detect(engine: Watermarker, path: Path, expected: int | None) -> DetectRow | VoiceguardError:
    """The file's ``DetectRow``, or its failure as a ``VoiceguardError`` naming the file (``per_file``)."""
    got = per_file(lambda p: engine.detect(*load_audio(p), expected, source=str(p)), path, "detecting")
    return got if isinstance(got, VoiceguardError) else DetectRow(str(path), "ok", got)


@dataclass(frozen=True)
class DetectJob:
    """The per-file work of ``detect_files`` (a ``voiceguard.executors.FileJob`` over file paths)."""

    engine: Watermarker
    expected: int | None = None

    def open(self):
        def process(files):
            for f in files:
                got = _detect(self.engine, Path(f), self.expected)
                yield DetectRow(str(f), "error", error=got.reason) if isinstance(got, VoiceguardError) else got
        return process

    def failed(self, item, reason: str) -> DetectRow:
        return DetectRow(str(item), "error", error=reason)


def detect_file(path: str | os.PathLike, *, engine: str | Watermarker = DEFAULT_ENGINE,
                expected: int | str | None = None, **engine_options: Any) -> DetectRow:
    """Is one audio file watermarked, where, and with which message.

    Args:
        path: an audio file.
        engine: an engine name or a loaded engine; ``engine_options`` as for ``load_watermarker`` (with a
            name only; the detector alone is loaded, e.g. ``threshold=``).
        expected: the message you expect (int or string, as for ``embed_file``): adds ``bits_matched`` and
            ``p_value`` to the result.

    Returns:
        ``DetectRow`` with ``status="ok"`` and ``result`` (a ``DetectionResult``).

    Raises:
        VoiceguardError: a bad ``expected`` (``MessageError``), an engine that cannot be loaded, a missing or
            unreadable file.
    """
    wm = _engine(engine, "detect", engine_options)
    value = parse_message(expected, wm.nbits)
    got = _detect(wm, Path(path), value)
    if isinstance(got, VoiceguardError):
        raise got
    return got


def detect_files(inputs: Iterable[str | os.PathLike], *, engine: str | Watermarker = DEFAULT_ENGINE,
                 expected: int | str | None = None, progress=None, skip: Collection[str] = frozenset(),
                 executor=None, **engine_options: Any) -> Iterator[DetectRow]:
    """Detect in files, folders (recursive) and globs.  ``engine``, ``engine_options`` and ``expected`` as
    for ``detect_file``; ``progress``, ``skip`` and ``executor`` as for ``embed_files`` (with Ray, rows come in
    the order files finish).

    Returns an iterator yielding a ``DetectRow`` per file as it is done (input errors first, then the files in
    sorted order); unreadable files become error rows.  The engine is loaded and ``expected`` parsed now.

    Raises:
        VoiceguardError: a bad ``expected``, an engine that cannot be loaded.
    """
    wm = _engine(engine, "detect", engine_options)
    value = parse_message(expected, wm.nbits)
    files, problems = find_audio_files([str(p) for p in inputs])
    problems = [p for p in problems if printable(p.path) not in skip]
    files = [f for f in files if printable(str(f)) not in skip]
    if progress is not None:
        progress.set_total(len(problems) + len(files))

    from voiceguard.executors import as_spec, run_job

    spec = as_spec(executor)
    job = DetectJob(wm, value)

    def rows() -> Iterator[DetectRow]:
        done = run_job(job, files, spec)  # Ray workers start here: their errors come before any row
        for p in problems:
            yield _counted(DetectRow(p.path, "error", error=p.reason), progress)
        for _, row in done:
            yield _counted(row, progress)

    return rows()


__all__ = ["DetectJob", "DetectRow", "EmbedJob", "EmbedRow", "detect_file", "detect_files", "embed_file", "embed_files"]
