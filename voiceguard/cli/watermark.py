"""CLI of the watermark package: ``watermark embed|detect|train|calibrate|list``."""
from __future__ import annotations

import sys

import click

from voiceguard import writers
from voiceguard.cli.options import (SEED, echo_catalogue, executor_options, executor_spec, finite_float, format_option,
                                    recorded_command, registered)
from voiceguard.cli.streaming import (EXIT_INTERRUPTED, announce_resume, interrupted_message, open_sink, output_options,
                                      stream_rows)
from voiceguard.watermark import DEFAULT_ENGINE, WATERMARKERS, load_watermarker, parse_message

EXIT_FOUND, EXIT_ERRORS = 1, 2
DETECT_COLUMNS = ["path", "status", "detected", "probability", "message", "message_status", "p_value", "segments",
                  "error"]
DETECT_ALL = DETECT_COLUMNS[:-1] + ["bits_matched", "bits_corrected", "speed", "duration_s", "engine", "model",
                                   "threshold", "error"]
CALIBRATION_COLUMNS = ["threshold", "target_fpr", "fpr", "false_positives", "n_windows", "n_heldout", "seed"]


def detect_columns(fmt: str, expect: int | None = None) -> list[str]:
    """Columns of ``watermark detect``: the short set for the table (plus ``bits_matched`` before
    ``p_value`` when ``--expect`` is given), every column for json/jsonl/csv."""
    if fmt != "table":
        return DETECT_ALL
    if expect is None:
        return DETECT_COLUMNS
    i = DETECT_COLUMNS.index("p_value")
    return DETECT_COLUMNS[:i] + ["bits_matched"] + DETECT_COLUMNS[i:]


def _message(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """``--message`` / ``--expect``: parsed once, here (a bad one is ``MessageError``: one line, exit 2)."""
    return parse_message(value)


def _ray_workers(f):
    f = click.option("--workers", type=click.IntRange(1, 4096), default=None,
                     help="with --executor ray: actors, each holding the engine [default: one per CPU of the "
                          "cluster]")(f)
    return executor_options(f)


def _engine_options(f):
    f = click.option("--key", type=click.IntRange(0, 2 ** 63 - 1), default=None,
                     help="spread-spectrum: the secret key (an integer >= 0)")(f)
    f = click.option("--detector", "detector", default=None,
                     help="audioseal: detector card name or audioseal-format .pth [default: the shipped one]")(f)
    f = click.option("--generator", "generator", default=None,
                     help="audioseal: generator card name or audioseal-format .pth [default: the shipped one]")(f)
    return click.option("--engine", metavar="NAME", default=DEFAULT_ENGINE, show_default=True, callback=registered(lambda: WATERMARKERS),
                        help=f"watermark engine: {' or '.join(sorted(WATERMARKERS))}")(f)


@click.group("watermark")
def watermark_group() -> None:
    """Embed and detect audio watermarks (16-bit messages), train and calibrate the model."""


@watermark_group.command("embed")
@click.argument("source", type=click.Path())
@click.argument("output", type=click.Path(), required=False)
@click.option("--message", default=None, callback=_message,
              help="16-bit message: 0xBEEF, 48879 or 0b... [default: random]")
@_engine_options
@click.option("--strength", type=finite_float(min=0, min_open=True), default=None,
              help="watermark amplitude factor [default: the model card's]")
@click.option("--in-place", is_flag=True, help="replace the input file(s) (atomically)")
@click.option("--overwrite", is_flag=True, help="replace existing output files (and an existing --report FILE)")
@format_option(help="of the report: jsonl/csv a row per file as it is done, table/json at the end")
@click.option("--report", "report_file", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="write the report rows to FILE instead of stdout (jsonl/csv: appended and flushed per file)")
@click.option("--resume", is_flag=True,
              help="continue an interrupted folder run: skip the sources already in --report FILE (jsonl or csv)")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="progress on stderr: a bar on a terminal, else a line every few seconds")
@_ray_workers
def embed_command(source, output, message, engine, generator, detector, key, strength, in_place, overwrite, fmt,
                  report_file, resume, progress, executor, ray_address, workers):
    """Watermark SOURCE into OUTPUT (file -> file, or folder -> folder keeping relative paths).

    Output keeps the input's format, sample rate, channels and length; it is
    written atomically and an input is never replaced unless --in-place.
    Exit code: 0 all files done, 2 some files failed (listed in their rows),
    130 interrupted (the rows so far are kept; continue with --report FILE --resume).

    --executor ray embeds on Ray actors (folder mode; not with --in-place, as
    a retried file would be marked twice); rows come in the order files finish.
    """
    from voiceguard.api.watermark import embed_files
    from voiceguard.progress import Progress

    if output is not None and in_place:
        raise click.UsageError("give OUTPUT or --in-place, not both")
    if output is None and not in_place:
        raise click.UsageError("no output given (pass OUTPUT, or --in-place to replace the input)")
    if in_place and executor == "ray":
        raise click.UsageError("--in-place cannot run with --executor ray: a retried file would be watermarked "
                               "twice; give an OUTPUT folder")
    spec = executor_spec(executor, ray_address, workers, local_workers=False)
    prog = Progress("embed", enabled=progress)
    sink = open_sink(fmt, ["source", "output", "status", "message", "duration_s", "error"], report_file,
                     resume=resume, overwrite=overwrite, key="source", progress=prog, option="--report",
                     resume_with_overwrite=True)
    wm = load_watermarker(engine, need="embed", generator=generator, detector=detector, key=key, strength=strength)
    announce_resume(sink)
    todo = embed_files(source, output, message, engine=wm, overwrite=overwrite, in_place=in_place, progress=prog,
                       skip=sink.done, executor=spec)
    new, interrupted = stream_rows(todo, sink, lambda r: r.to_dict(), prog)
    rows = sink.previous + [r.to_dict() for r in new]  # the summary covers old + new rows
    n_err = sum(r.get("status") == "error" for r in rows)
    click.echo(f"voiceguard: watermarked {len(rows) - n_err} file(s) with {wm.model}, {n_err} error(s)", err=True)
    if interrupted:
        click.echo(interrupted_message(sink, len(new), drop=()), err=True)
        sys.exit(EXIT_INTERRUPTED)
    if n_err:
        sys.exit(EXIT_ERRORS)


@watermark_group.command("detect")
@click.argument("paths", nargs=-1, required=True)
@_engine_options
@click.option("--expect", default=None, callback=_message,
              help="the message you expect: adds bits matched and a p-value")
@click.option("--threshold", type=finite_float(0, 1), default=None,
              help="detection threshold on the 1 s window presence [default: the card's calibrated one]")
@click.option("--presence", is_flag=True, help="include per-frame presence (json/jsonl, 50 frames/s)")
@click.option("--speed-search", is_flag=True,
              help="spread-spectrum: when no message is read, search playback speeds 0.94-1.06 (about 3 s per "
                   "such file); the speed found is in the 'speed' column")
@format_option(help="jsonl/csv: a row per file as it is done; table/json: printed at the end")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="progress on stderr: a bar on a terminal, else a line every few seconds")
@output_options
@_ray_workers
def detect_command(paths, engine, generator, detector, key, expect, threshold, presence, speed_search, fmt, progress,
                   output_file, resume, overwrite, executor, ray_address, workers):
    """Detect watermarks in files, folders (recursive) or globs: detected, probability, message,
    p-value (with --expect) and watermarked segments.

    Exit code: 0 no watermark found, 1 a watermark found, 2 some files could not be read,
    130 interrupted (the rows so far are kept; continue with --output FILE --resume).

    --executor ray detects on Ray actors; rows come in the order files finish.
    """
    from voiceguard.api.watermark import detect_files
    from voiceguard.progress import Progress

    spec = executor_spec(executor, ray_address, workers, local_workers=False)
    prog = Progress("detect", enabled=progress)
    sink = open_sink(fmt, detect_columns(fmt, expect), output_file, resume=resume, overwrite=overwrite,
                     progress=prog)
    wm = load_watermarker(engine, need="detect", generator=generator, detector=detector, key=key, threshold=threshold,
                          speed_search=speed_search or None)
    announce_resume(sink)
    todo = detect_files(paths, engine=wm, expected=expect, progress=prog, skip=sink.done, executor=spec)
    new, interrupted = stream_rows(todo, sink, lambda r: r.to_dict(presence=presence and fmt in ("json", "jsonl")),
                                   prog)
    rows = sink.previous + [r.to_dict() for r in new]  # the summary and exit code cover old + new rows
    n_err = sum(r.get("status") == "error" for r in rows)
    n_found = sum(str(r.get("detected")).lower() == "true" for r in rows)  # jsonl: true, csv: "True"
    click.echo(f"voiceguard: {n_found} of {len(rows)} file(s) watermarked ({wm.model}, threshold "
               f"{wm.threshold:.4f}), {n_err} error(s)", err=True)
    if interrupted:
        click.echo(interrupted_message(sink, len(new)), err=True)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(EXIT_ERRORS if n_err else EXIT_FOUND if n_found else 0)


@watermark_group.command("list")
@format_option
def list_command(fmt: str) -> None:
    """Watermark engines and model cards."""
    from voiceguard.watermark.models import CATALOGUE_COLUMNS, model_catalogue

    echo_catalogue(fmt, model_catalogue(), CATALOGUE_COLUMNS, f"engines: {', '.join(sorted(WATERMARKERS))} (default: {DEFAULT_ENGINE})")


@watermark_group.command("train")
@click.option("--data", multiple=True, required=True, type=click.Path(exists=True),
              help="speech files or folders (recursive); repeatable")
@click.option("--out", "out_dir", default="runs/watermark", show_default=True, type=click.Path(file_okay=False))
@click.option("--steps", type=click.IntRange(1, 10 ** 9), default=3000, show_default=True)
@click.option("--batch-size", type=click.IntRange(1, 65_536), default=8, show_default=True)
@click.option("--lr", type=finite_float(0, min_open=True), default=1e-3, show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--n-filters", type=click.IntRange(1, 4096), default=12, show_default=True, help="SEANet width")
@click.option("--dimension", type=click.IntRange(1, 65_536), default=48, show_default=True, help="SEANet latent size")
@click.option("--target-snr", "target_snr_db", type=finite_float(-100, 200), default=28.0, show_default=True,
              help="the watermark's level below the host (dB), reached after 3000 steps")
@click.option("--threads", type=click.IntRange(0, 1024), default=0, show_default=True, help="torch threads (0: default)")
@click.option("--device", default="auto", show_default=True, help="auto (GPU when present), cpu, cuda, cuda:1")
@click.option("--resume", is_flag=True, help="continue OUT from its last checkpoint")
def train_command(data, out_dir, steps, batch_size, lr, seed, n_filters, dimension, target_snr_db, threads, device,
                  resume):
    """Train an AudioSeal generator + detector jointly; writes OUT/generator.pth and OUT/detector.pth
    (audioseal's checkpoint format), OUT/state.pt (resume) and OUT/log.jsonl (per-step metrics)."""
    from voiceguard.watermark.train import WatermarkTrainConfig, train_watermark

    cfg = WatermarkTrainConfig(data=tuple(data), out=out_dir, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                               n_filters=n_filters, dimension=dimension, target_snr_db=target_snr_db,
                               threads=threads, device=device)
    command = recorded_command("watermark")
    res = train_watermark(cfg, resume=resume, progress=sys.stderr.isatty(), command=command)
    click.echo(f"trained to step {res['step']}: " + ", ".join(f"{k} {v:.3f}" for k, v in res["running"].items())
               + f"; checkpoints in {res['out']}")


@watermark_group.command("calibrate")
@_engine_options
@click.option("--speech", multiple=True, type=click.Path(exists=True),
              help="clean speech files or folders (half the windows); repeatable")
@click.option("--windows", type=click.IntRange(100, 10_000_000), default=10000, show_default=True,
              help="clean 1 s windows to set the threshold on (as many again measure the rate)")
@click.option("--target-fpr", type=finite_float(0, 1, min_open=True), default=1e-3, show_default=True)
@click.option("--seconds", type=(finite_float(0.1, 600), finite_float(0.1, 600)), default=(1.0, 1.0),
              show_default=True, metavar="MIN MAX", help="clip lengths, drawn uniformly from MIN to MAX seconds")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default=None,
              help="write the calibration as JSON here")
@click.option("--update-card", is_flag=True, help="store threshold and measured FPR in the detector's card")
@format_option(default="json", help="of the result (--out FILE is always JSON)")
def calibrate_command(engine, generator, detector, key, speech, windows, target_fpr, seconds, seed, out_file,
                      update_card, fmt):
    """Set the detection threshold for a target false-positive rate on clean 1 s windows (speech, noise,
    tones, music-like) and measure the rate on as many independent windows."""
    from voiceguard.watermark.calibrate import calibrate_engine

    command = recorded_command("watermark")
    cal, card = calibrate_engine(engine, generator=generator, detector=detector, key=key, speech=speech,
                                 windows=windows, target_fpr=target_fpr, seed=seed, seconds=seconds,
                                 out_file=out_file,
                                 update_card=update_card, command=command, progress=sys.stderr.isatty())
    if card is not None:
        click.echo(f"voiceguard: calibration written to {card}", err=True)
    text = writers.to_json(cal.to_dict())
    click.echo(text if fmt == "json" else writers.render([cal.to_dict()], fmt, CALIBRATION_COLUMNS), nl=False)


@watermark_group.command("export")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--to", "dest", type=click.Path(file_okay=False), required=True, help="folder for checkpoints + cards")
@click.option("--generator-name", default=None, help="[default: vg_wm_16bits_small]")
@click.option("--detector-name", default=None, help="[default: vg_detector_16bits_small]")
@click.option("--command", "train_command_text", default=None,
              help="the training command to record in the cards [default: the one in RUN/train.json]")
def export_command(run_dir, dest, generator_name, detector_name, train_command_text):
    """Turn a training run into audioseal-format checkpoints with cards (sha256, training summary)."""
    from voiceguard.watermark.models import export_run

    for p in export_run(run_dir, dest, generator_name=generator_name, detector_name=detector_name,
                        command=train_command_text):
        click.echo(str(p))
