"""``voiceguard scan``: spoof verdict + watermark check for files, folders and globs."""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Collection, Iterator

import click

from voiceguard import writers
from voiceguard.audio import SAMPLE_RATE, find_audio_files
from voiceguard.cli.options import finite_float
from voiceguard.errors import ModelCardError
from voiceguard.cli.streaming import (EXIT_INTERRUPTED, announce_resume, from_output_row, interrupted_message,
                                  open_sink, output_options, stream_rows)

EXIT_SPOOF, EXIT_ERRORS, EXIT_NO_SPEECH = 1, 2, 4


@dataclass(frozen=True)
class ScanRow:
    """One scanned file.  A ``no-speech`` row (status ``ok``) has no ``p_spoof``/``llr`` (``None``) and
    says why in ``note``; ``p_spoof``/``llr`` are never NaN (a non-finite model score is an error row)."""

    path: str
    status: str  # "ok" | "error"
    verdict: str | None = None  # "bonafide" | "spoof" | "partial-spoof" | "no-speech"
    p_spoof: float | None = None
    llr: float | None = None
    duration_s: float | None = None
    sample_rate: int | None = None  # of the file as stored
    channels: int | None = None
    flagged: str | None = None  # merged flagged spans "start-end;..." in seconds
    model: str | None = None
    watermark: str | None = None  # decoded message ("0xBEEF") when watermarked, "none" when not, else None
    wm_probability: float | None = None  # highest 1 s window watermark presence
    error: str | None = None
    speech_s: float | None = None  # seconds of speech the VAD found in the analysed signal
    note: str | None = None  # no-speech reason, or which channel was analysed instead of the mean
    segments: tuple = ()

    def to_dict(self, segments: bool = False) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "segments"}
        if segments:
            d["segments"] = [s.to_dict() for s in self.segments]
        return d


COLUMNS = ["path", "status", "verdict", "p_spoof", "llr", "duration_s", "flagged", "model", "watermark", "error",
           "note"]
ALL_COLUMNS = COLUMNS[:6] + ["sample_rate", "channels", "speech_s"] + COLUMNS[6:-2] + ["wm_probability", "error",
                                                                                       "note"]


def resolve_threshold(threshold: str, loaded) -> float:
    """``--threshold``: an LLR value, ``eer`` (the card's dev EER point) or ``fa:RATE`` (target spoof FAR)."""
    cal = loaded.calibration
    if threshold == "eer":
        if cal.eer_threshold is None:
            raise ModelCardError(f"model {loaded.name!r} has no calibration; give --threshold as an LLR value")
        return float(cal.llr(cal.eer_threshold))
    if threshold.startswith("fa:"):
        rate = threshold[3:]
        if rate not in cal.fa_thresholds:
            raise ModelCardError(f"model {loaded.name!r} has no threshold for a false-alarm rate of {rate}; "
                                 f"known: {', '.join(cal.fa_thresholds) or 'none'}")
        return float(cal.llr(cal.fa_thresholds[rate]))
    try:
        value = float(threshold)
    except ValueError:
        raise click.BadParameter(f"{threshold!r}: expected an LLR number, 'eer' or 'fa:RATE'") from None
    if not math.isfinite(value):
        raise click.BadParameter(f"{threshold!r}: the LLR threshold must be a finite number")
    return value


def iter_scan(inputs: list[str], loaded, *, threshold: float = 0.0, aggregate: str = "mean",
              hop_seconds: float | None = None, workers: int = 2, progress=None, watermarker=None,
              skip: Collection[str] = frozenset()) -> Iterator[ScanRow]:
    """Scan files, folders (recursive) and globs, yielding a ``ScanRow`` as each file finishes (input errors
    first, then the files in sorted order); bad inputs become error rows, never stop the batch.

    ``progress`` (a ``voiceguard.progress.Progress``, or True for one on stderr) gets the number of inputs
    and one step per row.  ``skip``: paths to leave out (as written in outputs, i.e. after
    ``writers.printable``; used by ``scan --resume``).

    Each file is decoded at 16 kHz and down-mixed by the channel rule (``voiceguard.vad.choose_mix``);
    silero-vad then checks for speech: a file with less than ``voiceguard.vad.MIN_SPEECH_SECONDS`` of
    speech gets verdict ``no-speech`` (``p_spoof``/``llr`` None, reason in ``note``) and is not scored.
    With a ``watermarker``, each file is also checked for a watermark (on the same 16 kHz signal; no-speech
    files too, a mark in silence is still a mark).  A model score that is not finite makes the file an
    error row.  ``exit_code(rows)`` maps the rows to the CLI's exit code."""
    from voiceguard.progress import Progress

    from voiceguard.detect.batch import decode_speech as decode, score_files
    from voiceguard.detect.scoring import merge_flagged

    files, problems = find_audio_files(inputs)
    if skip:
        files = [f for f in files if writers.printable(str(f)) not in skip]
        problems = [p for p in problems if writers.printable(p.path) not in skip]
    if not isinstance(progress, Progress):
        progress = Progress("scan", enabled=bool(progress))
    progress.set_total(len(files) + len(problems))
    for p in problems:
        yield ScanRow(p.path, "error", error=p.reason)
        progress.advance()
    hop = int(hop_seconds * SAMPLE_RATE) if hop_seconds else None
    marks: dict[str, tuple[str, float | None]] = {}

    def decode_and_check(path):
        audio, info, mix = decode(path)
        if watermarker is not None:
            try:
                r = watermarker.detect(audio, SAMPLE_RATE)
                marks[str(path)] = (r.message_hex if r.detected else "none", round(r.probability, 4))
            except Exception as e:  # noqa: BLE001 - the spoof verdict still stands; say why the mark is unknown
                marks[str(path)] = (f"error: {type(e).__name__}", None)
        return audio, info, mix

    scored = score_files(loaded.detector, files, calibration=loaded.calibration, threshold=threshold, hop=hop,
                         aggregate=aggregate, workers=workers, decode=decode_and_check)
    for s in scored:
        progress.advance()  # counted before the yield: the consumer writes the row at once
        mark, wm_p = marks.pop(str(s.source), (None, None))
        stored = dict(sample_rate=s.info.sample_rate if s.info else None,
                      channels=s.info.channels if s.info else None)
        if s.no_speech is not None:
            yield (ScanRow(s.source, "ok", "no-speech", None, None, s.duration_s, **stored, model=loaded.name,
                           watermark=mark, wm_probability=wm_p, speech_s=s.speech_s,
                           note="; ".join(filter(None, (s.no_speech, s.note)))))
            continue
        if s.result is None:
            yield (ScanRow(s.source, "error", model=loaded.name, error=s.error))
            continue
        r = s.result
        spans = ";".join(f"{a:.2f}-{b:.2f}" for a, b in merge_flagged(r.segments))
        yield (ScanRow(s.source, "ok", r.verdict, round(r.p_spoof, 4), round(r.llr, 3), s.duration_s,
                       **stored, flagged=spans or None, model=loaded.name, watermark=mark, wm_probability=wm_p,
                       speech_s=s.speech_s, note=s.note, segments=r.segments))


def scan_paths(inputs: list[str], loaded, *, threshold: float = 0.0, aggregate: str = "mean",
               hop_seconds: float | None = None, workers: int = 2, progress: bool = False,
               watermarker=None) -> list[ScanRow]:
    """All rows of ``iter_scan`` in a list (same arguments)."""
    return list(iter_scan(inputs, loaded, threshold=threshold, aggregate=aggregate, hop_seconds=hop_seconds,
                          workers=workers, progress=progress, watermarker=watermarker))


def exit_code(rows: list[ScanRow]) -> int:
    """The scan's exit code, by priority: 2 when any file could not be scanned, else 1 when any spoof (or
    partial spoof) was found, else 4 when some file had no speech (no verdict possible), else 0 (every
    scanned file bona fide)."""
    if any(r.status == "error" for r in rows):
        return EXIT_ERRORS
    if any(r.verdict in ("spoof", "partial-spoof") for r in rows):
        return EXIT_SPOOF
    return EXIT_NO_SPEECH if any(r.verdict == "no-speech" for r in rows) else 0


def summary_line(rows: list[ScanRow], model: str, calibrated: bool = True) -> str:
    """The one-line scan summary for stderr; no-speech files are counted apart from bona fide / spoof."""
    count = {v: sum(r.status == "ok" and r.verdict == v for r in rows)
             for v in ("bonafide", "spoof", "partial-spoof", "no-speech")}
    n_err = sum(r.status == "error" for r in rows)
    cal = "" if calibrated else " (uncalibrated model: LLR = raw score)"
    return (f"voiceguard: scanned {len(rows)} file(s) with {model}{cal}: {count['bonafide']} bona fide, "
            f"{count['spoof']} spoof, {count['partial-spoof']} partial spoof, {count['no-speech']} no speech, "
            f"{n_err} error(s)")


def model_options(f):
    f = click.option("--checkpoint", type=click.Path(dir_okay=False),
                     help="weights to load: replaces the card's file, or with an architecture name as --model")(f)
    return click.option("--model", "model", default=None,
                        help="model card name or .yaml file, or an architecture with --checkpoint "
                             "[default: the shipped model]")(f)


@click.command("scan")
@click.argument("paths", nargs=-1, required=True)
@model_options
@click.option("--format", "fmt", type=click.Choice(writers.FORMATS), default="table", show_default=True,
              help="jsonl/csv: a row per file as it finishes; table/json: printed at the end")
@click.option("--threshold", default="0", show_default=True,
              help="decision threshold: an LLR (below = spoof), 'eer' (dev EER point) or 'fa:0.01'")
@click.option("--aggregate", type=click.Choice(["mean", "min"]), default="mean", show_default=True,
              help="file score from window scores: mean, or min (the most spoof-like window)")
@click.option("--hop", "hop_seconds", type=finite_float(min=0.01), default=None,
              help="window hop in seconds, at most one window [default: half a window]")
@click.option("--segments", is_flag=True, help="include per-window scores (json/jsonl)")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True, help="decoding threads")
@click.option("--watermark/--no-watermark", "check_watermark", default=True, show_default=True,
              help="also detect watermarks (shipped AudioSeal-format model): message or 'none' per file")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="progress on stderr: a bar on a terminal, else a line every few seconds")
@output_options
def scan_command(paths, model, checkpoint, fmt, threshold, aggregate, hop_seconds, segments, check_watermark, workers,
                 progress, output_file, resume, overwrite):
    """Scan audio files, folders (recursive) or globs for spoofed speech.

    Every file is decoded through the shared audio path (any format, rate,
    channels), scored in sliding windows over its whole length, and reported
    with a calibrated spoof probability, LLR (bona fide vs spoof), verdict and
    the flagged segments, and (unless --no-watermark) the watermark message found
    in it or 'none'. Unreadable files are reported in their row; the scan goes on.

    Multi-channel files are analysed as the channel mean, or as the channel with
    the most speech when the channels cancel in the mean or one channel has no
    speech (dead, near-silent, noise only). A file in which silero-vad finds
    less than 0.3 s of speech gets verdict 'no-speech' (no p_spoof / LLR; the
    reason in 'note') and is not counted as bona fide or spoof.

    \b
    Exit code (first that applies):
      2  some file could not be scanned
      1  spoof (or partial spoof) found
      4  no spoof found, but some file had no speech (cannot tell)
      0  every scanned file bona fide

    Output: jsonl and csv rows are written (and flushed) as each file
    finishes; a table (it needs every row for its column widths) and json (one
    document) are printed at the end. With --output FILE the rows go to FILE;
    --resume continues an interrupted run from it (Ctrl-C or SIGTERM keep the
    rows written so far and exit 130).
    """
    from voiceguard.progress import Progress

    from voiceguard.detect.models import load_model

    prog = Progress("scan", enabled=progress)
    sink = open_sink(fmt, COLUMNS if fmt == "table" else ALL_COLUMNS, output_file, resume=resume,
                     overwrite=overwrite, progress=prog)
    loaded = load_model(model, checkpoint)
    if hop_seconds and hop_seconds * SAMPLE_RATE > loaded.detector.input_samples:
        raise click.BadParameter(f"{hop_seconds:g} s leaves gaps: {loaded.name} scores windows of "
                                 f"{loaded.detector.input_samples / SAMPLE_RATE:g} s", param_hint="--hop")
    thr = resolve_threshold(threshold, loaded)
    watermarker = None
    if check_watermark:
        from voiceguard.watermark import load_watermarker

        watermarker = load_watermarker("audioseal", generator=None)
    announce_resume(sink)
    scanned = iter_scan(list(paths), loaded, threshold=thr, aggregate=aggregate, hop_seconds=hop_seconds,
                        workers=workers, progress=prog, watermarker=watermarker, skip=sink.done)
    new, interrupted = stream_rows(scanned, sink, lambda r: r.to_dict(segments and fmt in ("json", "jsonl")), prog)
    rows = [from_output_row(ScanRow, d) for d in sink.previous] + new  # the summary covers old + new rows
    click.echo(summary_line(rows, loaded.name, loaded.calibrated), err=True)
    if interrupted:
        click.echo(interrupted_message(sink, len(new)), err=True)
        sys.exit(EXIT_INTERRUPTED)
    code = exit_code(rows)
    if code:
        sys.exit(code)
__all__ = ["ScanRow", "iter_scan", "scan_paths", "exit_code", "summary_line", "scan_command"]
