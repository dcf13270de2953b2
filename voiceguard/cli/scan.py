"""``voiceguard scan``: spoof verdict + watermark check for files, folders and globs (an adapter over
``voiceguard.api.scan``: options in, rows streamed out)."""
from __future__ import annotations

import sys

import click

from voiceguard.api.scan import EXIT_ERRORS, ScanOptionError, ScanRow, exit_code, scan, summary_line
from voiceguard.cli.options import executor_options, executor_spec, finite_float, format_option
from voiceguard.cli.streaming import (EXIT_INTERRUPTED, announce_resume, from_output_row, interrupted_message,
                                      open_sink, output_options, stream_rows)

COLUMNS = ["path", "status", "verdict", "p_spoof", "llr", "duration_s", "flagged", "model", "watermark", "error",
           "note"]
ALL_COLUMNS = COLUMNS[:6] + ["sample_rate", "channels", "speech_s"] + COLUMNS[6:-2] + ["wm_probability", "error",
                                                                                       "note"]


def model_options(f):
    f = click.option("--checkpoint", type=click.Path(dir_okay=False),
                     help="weights to load: replaces the card's file, or with an architecture name as --model")(f)
    return click.option("--model", "model", default=None,
                        help="model card name or .yaml file, or an architecture with --checkpoint "
                             "[default: the shipped model]")(f)


@click.command("scan")
@click.argument("paths", nargs=-1, required=True)
@model_options
@format_option(help="jsonl/csv: a row per file as it finishes; table/json: printed at the end")
@click.option("--threshold", default="default", show_default=True,
              help="decision threshold: 'default' (the model card's operating point: at most 1 % of dev bona "
                   "fide called spoof in any channel condition; LLR 0 without one), an LLR (below = spoof), "
                   "'eer' (dev EER point) or 'fa:0.01'")
@click.option("--aggregate", type=click.Choice(["mean", "min"]), default="mean", show_default=True,
              help="file score from window scores: mean, or min (the most spoof-like window)")
@click.option("--hop", "hop_seconds", type=finite_float(min=0.01), default=None,
              help="window hop in seconds, at most one window [default: half a window]")
@click.option("--segments", is_flag=True, help="include per-window scores (json/jsonl)")
@executor_options
@click.option("--workers", type=click.IntRange(1, 4096), default=None,
              help="local: decoding threads [default: 2]; ray: actors, each holding the model [default: one per "
                   "CPU of the cluster]")
@click.option("--watermark/--no-watermark", "check_watermark", default=True, show_default=True,
              help="also detect watermarks: the verified message, 'unreadable', 'unverified' or 'none' per file")
@click.option("--watermark-engine", metavar="NAME", default=None,
              help="engine whose mark to check [default: the default engine, spread-spectrum]")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="progress on stderr: a bar on a terminal, else a line every few seconds")
@output_options
def scan_command(paths, model, checkpoint, fmt, threshold, aggregate, hop_seconds, segments, check_watermark,
                 watermark_engine, executor, ray_address, workers, progress, output_file, resume, overwrite):
    """Scan audio files, folders (recursive) or globs for spoofed speech.

    Every file is decoded through the shared audio path (any format, rate,
    channels), scored in sliding windows over its whole length, and reported
    with a calibrated spoof probability, LLR (bona fide vs spoof), verdict and
    the flagged segments, and (unless --no-watermark) the watermark check: the
    message when it passes the engine's integrity check, 'unreadable' (a mark
    whose message failed it), 'unverified' (audioseal: no check value) or
    'none'. Only one engine's mark is checked per scan: the default engine's, or
    --watermark-engine's (a file marked by another engine reads 'none'). Unreadable files are reported in their row; the scan goes on.

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

    With --executor ray the files are scored by Ray actors (on this machine,
    or on the cluster of --ray-address) that each hold the model once; rows
    are written in the order files finish, each file exactly once, with the
    same values as locally; a worker that dies is restarted and its files
    retried. Paths must be readable by every worker (a shared file system).
    """
    from voiceguard.detect.models import load_model
    from voiceguard.progress import Progress

    spec = executor_spec(executor, ray_address, workers)
    prog = Progress("scan", enabled=progress)
    sink = open_sink(fmt, COLUMNS if fmt == "table" else ALL_COLUMNS, output_file, resume=resume,
                     overwrite=overwrite, progress=prog)
    loaded = load_model(model, checkpoint)
    if check_watermark and watermark_engine is not None:
        from voiceguard.errors import VoiceguardError
        from voiceguard.watermark import load_watermarker

        try:
            check_watermark = load_watermarker(watermark_engine, need="detect")
        except (VoiceguardError, KeyError) as e:
            raise click.BadParameter(str(getattr(e, "reason", None) or e), param_hint="--watermark-engine") from None
    try:
        scanned = scan(list(paths), model=loaded, threshold=threshold, aggregate=aggregate, hop_seconds=hop_seconds,
                       workers=workers or 2, watermark=check_watermark, progress=prog, skip=sink.done,
                       executor=spec)
    except ScanOptionError as e:
        raise click.BadParameter(e.reason, param_hint=e.option) from None
    announce_resume(sink)
    new, interrupted = stream_rows(scanned, sink, lambda r: r.to_dict(segments and fmt in ("json", "jsonl")), prog)
    rows = [from_output_row(ScanRow, d) for d in sink.previous] + new  # the summary covers old + new rows
    click.echo(summary_line(rows, loaded.name, loaded.calibrated), err=True)
    if interrupted:
        click.echo(interrupted_message(sink, len(new)), err=True)
        sys.exit(EXIT_INTERRUPTED)
    code = exit_code(rows)
    if code:
        sys.exit(code)


__all__ = ["COLUMNS", "ALL_COLUMNS", "EXIT_ERRORS", "model_options", "scan_command"]
