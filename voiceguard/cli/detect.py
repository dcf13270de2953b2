"""CLI of the detection package: ``detect list|train|score``."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from voiceguard.cli.options import (SEED, echo_catalogue, echo_result, executor_options, executor_spec, finite_float,
                                    format_option, protocol_format_option, recorded_command)
from voiceguard.cli.scan import EXIT_ERRORS, model_options


@click.group("detect")
def detect_group() -> None:
    """Spoof detectors: list models, train, score protocols."""


@detect_group.command("list")
@format_option
def list_command(fmt: str) -> None:
    """Model cards (shipped or downloadable) and trainable architectures."""
    from voiceguard.detect import DETECTORS
    from voiceguard.detect.models import CATALOGUE_COLUMNS, model_catalogue

    echo_catalogue(fmt, model_catalogue(), CATALOGUE_COLUMNS, f"trainable architectures: {', '.join(DETECTORS.names())}")


def _kv(items: tuple[str, ...]) -> dict:
    from voiceguard.detect.train import parse_value

    out = {}
    for it in items:
        k, eq, v = it.partition("=")
        if not eq:
            raise click.BadParameter(f"{it!r}: expected key=value")
        out[k] = parse_value(v)
    return out


@detect_group.command("train")
@click.option("--model", required=True, help="architecture: lfcc-gmm, cqcc-gmm, lcnn[-small], rawnet2[-small], "
                                             "aasist, aasist-l, specnet, whisper-asp, whisper-seq")
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
@click.option("--views", type=click.IntRange(1, 1000), default=1, show_default=True,
              help="whisper-*: augmented crops per training file whose front-end features are cached")
@click.option("--feature-cache", type=click.Path(file_okay=False),
              help="whisper-*: folder of cached front-end features, shared by runs [default: OUT/features]")
@click.option("--resume", is_flag=True, help="continue from OUT/last.pt")
@click.option("--overwrite", is_flag=True, help="replace a model already trained in OUT")
@protocol_format_option
@format_option(help="output: one line (table), or the result with its per-epoch history as JSON / JSON lines / CSV")
def train_command(model, protocol, audio_dir, dev_protocol, dev_audio_dir, ext, out_dir, name, epochs, batch_size,
                  lr, weight_decay, seed, patience, augment, augment_prob, model_config, workers, device, max_train,
                  views, feature_cache, resume, overwrite, protocol_format, fmt):
    """Train a detector; writes OUT/model.pt, OUT/card.yaml (calibration, sha256, command), OUT/last.pt."""
    from voiceguard.detect.train import TrainConfig, TrainData, train_detector

    cfg = TrainConfig(model=model, model_config=_kv(model_config), epochs=epochs, batch_size=batch_size, lr=lr,
                      weight_decay=weight_decay, seed=seed, patience=patience, augment=tuple(augment),
                      augment_prob=augment_prob, workers=workers, device=device, max_train=max_train, views=views,
                      feature_cache=feature_cache)
    command = recorded_command("detect")
    data = TrainData(protocol, audio_dir, dev_protocol, dev_audio_dir, ext, protocol_format)
    res = train_detector(cfg, data, out_dir, resume=resume, overwrite=overwrite, name=name, command=command)
    picked = (f"dev EER {res.best_dev_eer * 100:.3f} %" if dev_protocol
              else "no dev set: picked by training loss, uncalibrated")
    line = f"best epoch {res.best_epoch + 1}: {picked}; weights {res.checkpoint}; card {res.card}\n"
    echo_result(fmt, res, [res.to_dict()], ["out_dir", "checkpoint", "card", "best_epoch", "best_dev_eer"],
                lambda: line)


@detect_group.command("score")
@model_options
@click.option("--protocol", required=True, type=click.Path(), help="protocol of the trials to score")
@click.option("--audio-dir", type=click.Path(file_okay=False), help="folder of the protocol's audio files")
@click.option("--ext", default=".flac", show_default=True)
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False), help="score file to write")
@click.option("--columns", type=click.Choice(["4", "2"]), default="4", show_default=True,
              help="4: 'utt attack key score' (LA19 style), 2: 'utt score'")
@click.option("--llr", is_flag=True, help="write calibrated LLRs instead of raw scores")
@click.option("--aggregate", type=click.Choice(["mean", "min"]), default="mean", show_default=True)
@executor_options
@click.option("--workers", type=click.IntRange(1, 4096), default=None,
              help="local: decoding threads [default: 2]; ray: actors, each holding the model [default: one per "
                   "CPU of the cluster]")
@click.option("--overwrite", is_flag=True, help="replace an existing score file")
@protocol_format_option
@format_option(help="table: the summary on stderr only (default); json / jsonl / csv: the result on stdout too")
def score_command(model, checkpoint, protocol, audio_dir, ext, out_file, columns, llr, aggregate, executor,
                  ray_address, workers, overwrite, protocol_format, fmt):
    """Score every trial of a protocol (whole files, sliding windows) into an official-format score file
    that ``voiceguard eval eer`` reads. Unreadable files are listed and left out (exit code 2).
    With --executor ray the files are scored by Ray actors; the score file is the same, in protocol order."""
    from voiceguard.detect.models import load_model
    from voiceguard.detect.batch import score_protocol

    if Path(out_file).exists() and not overwrite:
        raise click.UsageError(f"{out_file} already exists (use --overwrite to replace it)")
    spec = executor_spec(executor, ray_address, workers)
    loaded = load_model(model, checkpoint)
    res = score_protocol(loaded, protocol, audio_dir, out_file, ext=ext, columns=int(columns), llr=llr,
                         aggregate=aggregate, workers=workers or 2, progress=sys.stderr.isatty(),
                         protocol_format=protocol_format, executor=spec)
    click.echo(f"scored {res.n_scored} of {res.n_trials} trials with {loaded.name} -> {res.out}", err=True)
    if fmt != "table":
        summary = {"model": loaded.name, "out": res.out, "n_trials": res.n_trials, "n_scored": res.n_scored,
                   "errors": [{"path": p, "reason": r} for p, r in res.errors]}
        echo_result(fmt, summary, [summary], ["model", "out", "n_trials", "n_scored"], lambda: "")
    for path, reason in res.errors[:20]:
        click.echo(f"voiceguard: error: {path}: {reason}", err=True)
    if len(res.errors) > 20:
        click.echo(f"voiceguard: ... and {len(res.errors) - 20} more unreadable files", err=True)
    if res.errors:
        sys.exit(EXIT_ERRORS)
