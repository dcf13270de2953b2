"""CLI of the detection package: ``detect list|train|score`` and the top-level ``scan``."""
from __future__ import annotations

import math
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Iterator

import click

from voiceguard import writers
from voiceguard.audio import find_audio_files
from voiceguard.cli.options import SEED, finite_float, protocol_format_option
from voiceguard.errors import ModelCardError, VoiceguardError
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
    hop = int(hop_seconds * 16000) if hop_seconds else None
    marks: dict[str, tuple[str, float | None]] = {}

    def decode_and_check(path):
        audio, info, mix = decode(path)
        if watermarker is not None:
            try:
                r = watermarker.detect(audio, 16000)
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


def _model_options(f):
    f = click.option("--checkpoint", type=click.Path(dir_okay=False),
                     help="weights to load: replaces the card's file, or with an architecture name as --model")(f)
    return click.option("--model", "model", default=None,
                        help="model card name or .yaml file, or an architecture with --checkpoint "
                             "[default: the shipped model]")(f)


@click.command("scan")
@click.argument("paths", nargs=-1, required=True)
@_model_options
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
    if hop_seconds and hop_seconds * 16000 > loaded.detector.input_samples:
        raise click.BadParameter(f"{hop_seconds:g} s leaves gaps: {loaded.name} scores windows of "
                                 f"{loaded.detector.input_samples / 16000:g} s", param_hint="--hop")
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


@click.group("detect")
def detect_group() -> None:
    """Spoof detectors: list models, train, score protocols."""


@detect_group.command("list")
@click.option("--format", "fmt", type=click.Choice(writers.FORMATS), default="table", show_default=True)
def list_command(fmt: str) -> None:
    """Model cards (shipped or downloadable) and trainable architectures."""
    from voiceguard.detect.base import DETECTORS
    from voiceguard.detect.models import DEFAULT_MODEL, list_cards

    rows = [{"name": c.name + (" (default)" if c.name == DEFAULT_MODEL else ""), "architecture": c.architecture,
             "weights": "shipped" if c.checkpoint and (c.path.parent / c.checkpoint).is_file() else "download",
             "trained_on": (c.training or {}).get("data", "-"),
             "eer": _card_eer(c.metrics or {})} for c in list_cards()]
    click.echo(writers.render(rows, fmt, ["name", "architecture", "weights", "trained_on", "eer"]), nl=False)
    if fmt == "table":
        click.echo(f"\ntrainable architectures: {', '.join(sorted(DETECTORS))}")


def _card_eer(metrics: dict) -> str:
    if "eval" in metrics:
        return f"{metrics['eval']['eer'] * 100:.2f} % (voiceguard corpus eval)"
    return str(metrics.get("reported_eer", "-"))


def _kv(items: tuple[str, ...]) -> dict:
    from voiceguard.detect.train import _number

    out = {}
    for it in items:
        k, eq, v = it.partition("=")
        if not eq:
            raise click.BadParameter(f"{it!r}: expected key=value")
        out[k] = _number(v)
    return out


@detect_group.command("train")
@click.option("--model", required=True, help="architecture: lfcc-gmm, cqcc-gmm, lcnn[-small], rawnet2[-small], "
                                             "aasist, aasist-l, specnet")
@click.option("--protocol", required=True, type=click.Path(), help="training protocol (ASVspoof 2019 LA style, ...)")
@click.option("--audio-dir", type=click.Path(file_okay=False), help="folder of the protocol's audio files")
@click.option("--dev-protocol", type=click.Path(), help="dev protocol: early stopping + calibration")
@click.option("--dev-audio-dir", type=click.Path(file_okay=False), help="[default: --audio-dir]")
@click.option("--ext", default=".flac", show_default=True, help="audio file extension for utterance ids")
@click.option("--out", "out_dir", default="runs/detector", show_default=True, type=click.Path(file_okay=False))
@click.option("--name", help="model name written in the card")
@click.option("--epochs", type=click.IntRange(1, 100_000), default=30, show_default=True)
@click.option("--batch-size", type=click.IntRange(1, 65_536), default=16, show_default=True)
@click.option("--lr", type=finite_float(0, min_open=True), default=1e-3, show_default=True)
@click.option("--weight-decay", type=finite_float(0), default=1e-4, show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--patience", type=click.IntRange(1, 100_000), default=6, show_default=True,
              help="stop after this many epochs without a better dev EER")
@click.option("--augment", multiple=True, help="rawboost[:algo=N], codec, or any attack[:k=v,...]; repeatable")
@click.option("--augment-prob", type=finite_float(0, 1), default=0.5, show_default=True)
@click.option("--config", "model_config", multiple=True, help="model config override key=value; repeatable")
@click.option("--workers", type=click.IntRange(0, 64), default=2, show_default=True, help="data loading processes")
@click.option("--device", default="auto", show_default=True, help="auto (GPU when present), cpu, cuda, cuda:1")
@click.option("--max-train", type=click.IntRange(1, 10 ** 9), default=None, help="train on a seeded subset of this size")
@click.option("--resume", is_flag=True, help="continue from OUT/last.pt")
@click.option("--overwrite", is_flag=True, help="replace a model already trained in OUT")
@protocol_format_option
def train_command(model, protocol, audio_dir, dev_protocol, dev_audio_dir, ext, out_dir, name, epochs, batch_size,
                  lr, weight_decay, seed, patience, augment, augment_prob, model_config, workers, device, max_train,
                  resume, overwrite, protocol_format):
    """Train a detector; writes OUT/model.pt, OUT/card.yaml (calibration, sha256, command), OUT/last.pt."""
    from voiceguard.detect.train import TrainConfig, train_detector

    cfg = TrainConfig(model=model, model_config=_kv(model_config), epochs=epochs, batch_size=batch_size, lr=lr,
                      weight_decay=weight_decay, seed=seed, patience=patience, augment=tuple(augment),
                      augment_prob=augment_prob, workers=workers, device=device, max_train=max_train)
    command = "voiceguard detect " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else None
    res = train_detector(cfg, protocol, audio_dir, out_dir, dev_protocol=dev_protocol, dev_audio_dir=dev_audio_dir,
                         ext=ext, resume=resume, command=command, name=name, overwrite=overwrite,
                         protocol_format=protocol_format)
    picked = (f"dev EER {res.best_dev_eer * 100:.3f} %" if dev_protocol
              else "no dev set: picked by training loss, uncalibrated")
    click.echo(f"best epoch {res.best_epoch + 1}: {picked}; weights {res.checkpoint}; card {res.card}")


@detect_group.command("score")
@_model_options
@click.option("--protocol", required=True, type=click.Path(), help="protocol of the trials to score")
@click.option("--audio-dir", type=click.Path(file_okay=False), help="folder of the protocol's audio files")
@click.option("--ext", default=".flac", show_default=True)
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False), help="score file to write")
@click.option("--columns", type=click.Choice(["4", "2"]), default="4", show_default=True,
              help="4: 'utt attack key score' (LA19 style), 2: 'utt score'")
@click.option("--llr", is_flag=True, help="write calibrated LLRs instead of raw scores")
@click.option("--aggregate", type=click.Choice(["mean", "min"]), default="mean", show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--overwrite", is_flag=True, help="replace an existing score file")
@protocol_format_option
def score_command(model, checkpoint, protocol, audio_dir, ext, out_file, columns, llr, aggregate, workers, overwrite,
                  protocol_format):
    """Score every trial of a protocol (whole files, sliding windows) into an official-format score file
    that ``voiceguard eval eer`` reads. Unreadable files are listed and left out (exit code 2)."""
    from voiceguard.detect.models import load_model
    from voiceguard.detect.batch import score_protocol

    if Path(out_file).exists() and not overwrite:
        raise click.UsageError(f"{out_file} already exists (use --overwrite to replace it)")
    loaded = load_model(model, checkpoint)
    res = score_protocol(loaded, protocol, audio_dir, out_file, ext=ext, columns=int(columns), llr=llr,
                         aggregate=aggregate, workers=workers, progress=sys.stderr.isatty(),
                         protocol_format=protocol_format)
    click.echo(f"scored {res.n_scored} of {res.n_trials} trials with {loaded.name} -> {res.out}", err=True)
    for path, reason in res.errors[:20]:
        click.echo(f"voiceguard: error: {path}: {reason}", err=True)
    if len(res.errors) > 20:
        click.echo(f"voiceguard: ... and {len(res.errors) - 20} more unreadable files", err=True)
    if res.errors:
        sys.exit(EXIT_ERRORS)


__all__ = ["ScanRow", "iter_scan", "scan_paths", "exit_code", "summary_line", "detect_group", "scan_command",
           "VoiceguardError"]
