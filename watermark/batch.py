"""Files in, files out: embed into files/folders and detect in many files; a bad file never stops a batch."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Iterator

from voiceguard.audio import audio_info, find_audio_files, load_audio, save_audio
from voiceguard.errors import OutputError, VoiceguardError, per_file
from voiceguard.files import same_file
from voiceguard.writers import printable

from .base import DetectionResult, Watermarker, parse_message


@dataclass(frozen=True)
class EmbedRow:
    source: str
    output: str | None
    status: str  # "ok" | "error"
    message: str | None = None
    duration_s: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class DetectRow:
    path: str
    status: str
    result: DetectionResult | None = None
    error: str | None = None

    def to_dict(self, presence: bool = False) -> dict:
        d: dict = {"path": self.path, "status": self.status}
        if self.result is not None:
            r = self.result.to_dict(presence=presence)
            d.update(detected=r["detected"], probability=r["probability"], message=r["message"],
                     bits_matched=r["bits_matched"], p_value=r["p_value"],
                     segments=";".join(f"{s['start']:.2f}-{s['end']:.2f}" for s in r["segments"]) or None,
                     duration_s=r["duration"], engine=r["engine"], model=r["model"], threshold=r["threshold"],
                     bit_confidence=r["bit_confidence"], **({"presence": r["presence"]} if presence else {}))
        d["error"] = self.error
        return d


def embed_file(engine: Watermarker, source: str | os.PathLike, output: str | os.PathLike, *,
               message: int | str | None = None, overwrite: bool = False, in_place: bool = False) -> EmbedRow:
    """Watermark one file into ``output`` (same format, rate, channels, length), written atomically.
    Any failure becomes the file's error row."""
    src, out = Path(source), Path(output)

    def run(_) -> EmbedRow:
        if out.exists() and same_file(src, out) and not in_place:
            raise OutputError("output is the input file; pass --in-place to replace it", source=out)
        if out.exists() and not (overwrite or in_place):
            raise OutputError("already exists (pass --overwrite to replace it)", source=out)
        try:
            value = parse_message(message, engine.nbits)
        except ValueError as e:
            raise VoiceguardError(str(e)) from None
        info = audio_info(src)
        audio, sr = load_audio(src)
        value = engine.random_message() if value is None else value
        marked = engine.embed(audio, sr, value, source=str(src))
        out.parent.mkdir(parents=True, exist_ok=True)
        save_audio(out, marked, sr, like=info, overwrite=True)
        return EmbedRow(str(src), str(out), "ok", f"0x{value:04X}", round(audio.shape[-1] / sr, 3), sr,
                        audio.shape[0])

    got = per_file(run, src, "watermarking")
    return EmbedRow(str(src), str(out), "error", error=got.reason) if isinstance(got, VoiceguardError) else got


def iter_embed(engine: Watermarker, source: str | os.PathLike, output: str | os.PathLike | None, *,
               message: int | str | None = None, overwrite: bool = False, in_place: bool = False,
               progress=None, skip: Collection[str] = frozenset()) -> Iterator[EmbedRow]:
    """File -> file, or folder -> folder (relative paths kept); ``in_place`` writes over the inputs.

    Returns an iterator yielding an ``EmbedRow`` as each file is done (the output checks run now, before
    any file).  ``progress``: a ``voiceguard.progress.Progress`` (set to the number of files, one step per
    row).  ``skip``: source paths to leave out, as written in outputs (``writers.printable``; used by
    ``--resume``).

    Raises:
        OutputError: no output and not ``in_place``, or a folder input with a file as output.
    """
    src = Path(source)
    if output is None and not in_place:
        raise OutputError("no output given (pass OUT, or --in-place to replace the input)", source=src)
    if src.is_dir():
        out_dir = Path(output) if output is not None else src
        if output is not None and out_dir.exists() and not out_dir.is_dir():
            raise OutputError("input is a folder, so the output must be a folder", source=out_dir)
        files, problems = find_audio_files([src])
        if output is not None and out_dir.resolve() != src.resolve() and out_dir.resolve().is_relative_to(src.resolve()):
            # an output folder inside the input folder: its files are outputs of earlier runs, not inputs
            files = [f for f in files if not f.resolve().is_relative_to(out_dir.resolve())]
        jobs = [(f, out_dir / f.relative_to(src)) for f in files]
    else:
        out = Path(output) if output is not None else src
        if out.is_dir():
            out = out / src.name
        problems, jobs = [], [(src, out)]
    problems = [p for p in problems if printable(p.path) not in skip]
    jobs = [(f, o) for f, o in jobs if printable(str(f)) not in skip]
    if progress is not None:
        progress.set_total(len(problems) + len(jobs))

    def rows() -> Iterator[EmbedRow]:
        for p in problems:
            yield _counted(EmbedRow(p.path, None, "error", error=p.reason), progress)
        for f, o in jobs:
            yield _counted(embed_file(engine, f, o, message=message, overwrite=overwrite, in_place=in_place),
                           progress)

    return rows()


def embed_paths(engine: Watermarker, source: str | os.PathLike, output: str | os.PathLike | None, *,
                message: int | str | None = None, overwrite: bool = False, in_place: bool = False
                ) -> list[EmbedRow]:
    """All rows of ``iter_embed`` in a list (same arguments)."""
    return list(iter_embed(engine, source, output, message=message, overwrite=overwrite, in_place=in_place))


def _counted(row, progress):
    if progress is not None:
        progress.advance()
    return row


def iter_detect(engine: Watermarker, inputs: list[str], *, expected: int | str | None = None, progress=None,
                skip: Collection[str] = frozenset()) -> Iterator[DetectRow]:
    """Detect in files, folders (recursive) and globs, yielding a ``DetectRow`` as each file is done (input
    errors first, then the files in sorted order); unreadable files become error rows.  ``progress`` and
    ``skip`` as for ``iter_embed``."""
    files, problems = find_audio_files(list(inputs))
    problems = [p for p in problems if printable(p.path) not in skip]
    files = [f for f in files if printable(str(f)) not in skip]
    if progress is not None:
        progress.set_total(len(problems) + len(files))
    for p in problems:
        yield _counted(DetectRow(p.path, "error", error=p.reason), progress)
    for f in files:
        got = per_file(lambda p: engine.detect(*load_audio(p), expected, source=str(p)), f, "detecting")
        yield _counted(DetectRow(str(f), "error", error=got.reason) if isinstance(got, VoiceguardError)
                       else DetectRow(str(f), "ok", got), progress)


def detect_paths(engine: Watermarker, inputs: list[str], *, expected: int | str | None = None) -> list[DetectRow]:
    """All rows of ``iter_detect`` in a list (same arguments)."""
    return list(iter_detect(engine, inputs, expected=expected))
