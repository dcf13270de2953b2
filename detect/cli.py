"""CLI of the detection package: ``detect list|train|score`` and the top-level ``scan``."""
from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from voiceguard import writers
from voiceguard.audio import find_audio_files
from voiceguard.errors import ModelCardError, VoiceguardError

EXIT_SPOOF, EXIT_ERRORS = 1, 2


@dataclass(frozen=True)
class ScanRow:
    """One scanned file."""

    path: str
    status: str  # "ok" | "error"
    verdict: str | None = None  # "bonafide" | "spoof" | "partial-spoof"
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
    segments: tuple = ()

    def to_dict(self, segments: bool = False) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "segments"}
        if segments:
            d["segments"] = [s.to_dict() for s in self.segments]
        return d


COLUMNS = ["path", "status", "verdict", "p_spoof", "llr", "duration_s", "flagged", "model", "watermark", "error"]
ALL_COLUMNS = COLUMNS[:6] + ["sample_rate", "channels"] + COLUMNS[6:-1] + ["wm_probability", "error"]


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
        return float(threshold)
    except ValueError:
        raise click.BadParameter(f"{threshold!r}: expected an LLR number, 'eer' or 'fa:RATE'") from None


def scan_paths(inputs: list[str], loaded, *, threshold: float = 0.0, aggregate: str = "mean",
               hop_seconds: float | None = None, workers: int = 2, progress: bool = False,
               watermarker=None) -> list[ScanRow]:
    """Scan files, folders (recursive) and globs; bad inputs become error rows, never stop the batch.
    With a ``watermarker``, each file is also checked for a watermark (on the decoded 16 kHz audio)."""
    from tqdm import tqdm

    from .batch import decode, score_files
    from .scoring import merge_flagged

    files, problems = find_audio_files(inputs)
    rows = [ScanRow(p.path, "error", error=p.reason) for p in problems]
    hop = int(hop_seconds * 16000) if hop_seconds else None
    marks: dict[str, tuple[str, float | None]] = {}

    def decode_and_check(path):
        audio, info = decode(path)
        if watermarker is not None:
            try:
                r = watermarker.detect(audio, 16000)
                marks[str(path)] = (r.message_hex if r.detected else "none", round(r.probability, 4))
            except Exception as e:  # noqa: BLE001 - the spoof verdict still stands; say why the mark is unknown
                marks[str(path)] = (f"error: {type(e).__name__}", None)
        return audio, info

    scored = score_files(loaded.detector, files, calibration=loaded.calibration, threshold=threshold, hop=hop,
                         aggregate=aggregate, workers=workers, decode=decode_and_check)
    for s in tqdm(scored, total=len(files), desc="scan", unit="file", file=sys.stderr, disable=not progress):
        if s.result is None:
            rows.append(ScanRow(s.source, "error", model=loaded.name, error=s.error))
            continue
        r = s.result
        spans = ";".join(f"{a:.2f}-{b:.2f}" for a, b in merge_flagged(r.segments))
        mark, wm_p = marks.get(str(s.source), (None, None))
        rows.append(ScanRow(s.source, "ok", r.verdict, round(r.p_spoof, 4), round(r.llr, 3), s.duration_s,
                            s.info.sample_rate if s.info else None, s.info.channels if s.info else None,
                            spans or None, loaded.name, watermark=mark, wm_probability=wm_p, segments=r.segments))
    return rows


def exit_code(rows: list[ScanRow]) -> int:
    """2 when any file could not be scanned, else 1 when any spoof (or partial spoof) was found, else 0."""
    if any(r.status == "error" for r in rows):
        return EXIT_ERRORS
    return EXIT_SPOOF if any(r.verdict in ("spoof", "partial-spoof") for r in rows) else 0


def _model_options(f):
    f = click.option("--checkpoint", type=click.Path(dir_okay=False),
                     help="weights to load: replaces the card's file, or with an architecture name as --model")(f)
    return click.option("--model", "model", default=None,
                        help="model card name or .yaml file, or an architecture with --checkpoint "
                             "[default: the shipped model]")(f)


@click.command("scan")
@click.argument("paths", nargs=-1, required=True)
@_model_options
@click.option("--format", "fmt", type=click.Choice(writers.FORMATS), default="table", show_default=True)
@click.option("--threshold", default="0", show_default=True,
              help="decision threshold: an LLR (below = spoof), 'eer' (dev EER point) or 'fa:0.01'")
@click.option("--aggregate", type=click.Choice(["mean", "min"]), default="mean", show_default=True,
              help="file score from window scores: mean, or min (the most spoof-like window)")
@click.option("--hop", "hop_seconds", type=click.FloatRange(min=0.01), default=None,
              help="window hop in seconds, at most one window [default: half a window]")
@click.option("--segments", is_flag=True, help="include per-window scores (json/jsonl)")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True, help="decoding threads")
@click.option("--watermark/--no-watermark", "check_watermark", default=True, show_default=True,
              help="also detect watermarks (shipped AudioSeal-format model): message or 'none' per file")
@click.option("--progress/--no-progress", default=None, help="progress bar on stderr [default: when a terminal]")
def scan_command(paths, model, checkpoint, fmt, threshold, aggregate, hop_seconds, segments, check_watermark, workers,
                 progress):
    """Scan audio files, folders (recursive) or globs for spoofed speech.

    Every file is decoded through the shared audio path (any format, rate,
    channels), scored in sliding windows over its whole length, and reported
    with a calibrated spoof probability, LLR (bona fide vs spoof), verdict and
    the flagged segments, and (unless --no-watermark) the watermark message found
    in it or 'none'. Unreadable files are reported in their row; the scan goes on.

    Exit code: 0 all files bona fide, 1 spoof found, 2 some files could not be scanned.
    """
    from .models import load_model

    loaded = load_model(model, checkpoint)
    if hop_seconds and hop_seconds * 16000 > loaded.detector.input_samples:
        raise click.BadParameter(f"{hop_seconds:g} s leaves gaps: {loaded.name} scores windows of "
                                 f"{loaded.detector.input_samples / 16000:g} s", param_hint="--hop")
    thr = resolve_threshold(threshold, loaded)
    show = sys.stderr.isatty() if progress is None else progress
    watermarker = None
    if check_watermark:
        from voiceguard.watermark import load_watermarker

        watermarker = load_watermarker("audioseal", generator=None)
    rows = scan_paths(list(paths), loaded, threshold=thr, aggregate=aggregate, hop_seconds=hop_seconds,
                      workers=workers, progress=show, watermarker=watermarker)
    dicts = [r.to_dict(segments and fmt in ("json", "jsonl")) for r in rows]
    click.echo(writers.render(dicts, fmt, COLUMNS if fmt == "table" else ALL_COLUMNS), nl=False)
    n_err = sum(r.status == "error" for r in rows)
    n_spoof = sum(r.verdict == "spoof" for r in rows)
    n_part = sum(r.verdict == "partial-spoof" for r in rows)
    cal = "" if loaded.calibrated else " (uncalibrated model: LLR = raw score)"
    click.echo(f"voiceguard: scanned {len(rows)} file(s) with {loaded.name}{cal}: {len(rows) - n_err - n_spoof - n_part}"
               f" bona fide, {n_spoof} spoof, {n_part} partial spoof, {n_err} error(s)", err=True)
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
    from .base import DETECTORS
    from .models import DEFAULT_MODEL, list_cards

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
    from .train import _number

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
@click.option("--epochs", type=click.IntRange(1), default=30, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--weight-decay", type=float, default=1e-4, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--patience", type=click.IntRange(1), default=6, show_default=True,
              help="stop after this many epochs without a better dev EER")
@click.option("--augment", multiple=True, help="rawboost[:algo=N], codec, or any attack[:k=v,...]; repeatable")
@click.option("--augment-prob", type=click.FloatRange(0, 1), default=0.5, show_default=True)
@click.option("--config", "model_config", multiple=True, help="model config override key=value; repeatable")
@click.option("--workers", type=click.IntRange(0), default=2, show_default=True, help="data loading processes")
@click.option("--device", default="auto", show_default=True, help="auto (GPU when present), cpu, cuda, cuda:1")
@click.option("--max-train", type=click.IntRange(1), default=None, help="train on a seeded subset of this size")
@click.option("--resume", is_flag=True, help="continue from OUT/last.pt")
@click.option("--overwrite", is_flag=True, help="replace a model already trained in OUT")
def train_command(model, protocol, audio_dir, dev_protocol, dev_audio_dir, ext, out_dir, name, epochs, batch_size,
                  lr, weight_decay, seed, patience, augment, augment_prob, model_config, workers, device, max_train,
                  resume, overwrite):
    """Train a detector; writes OUT/model.pt, OUT/card.yaml (calibration, sha256, command), OUT/last.pt."""
    from .train import TrainConfig, train_detector

    cfg = TrainConfig(model=model, model_config=_kv(model_config), epochs=epochs, batch_size=batch_size, lr=lr,
                      weight_decay=weight_decay, seed=seed, patience=patience, augment=tuple(augment),
                      augment_prob=augment_prob, workers=workers, device=device, max_train=max_train)
    command = "voiceguard detect " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else None
    res = train_detector(cfg, protocol, audio_dir, out_dir, dev_protocol=dev_protocol, dev_audio_dir=dev_audio_dir,
                         ext=ext, resume=resume, command=command, name=name, overwrite=overwrite)
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
def score_command(model, checkpoint, protocol, audio_dir, ext, out_file, columns, llr, aggregate, workers, overwrite):
    """Score every trial of a protocol (whole files, sliding windows) into an official-format score file
    that ``voiceguard eval eer`` reads. Unreadable files are listed and left out (exit code 2)."""
    from .models import load_model
    from .batch import score_protocol

    if Path(out_file).exists() and not overwrite:
        raise click.UsageError(f"{out_file} already exists (use --overwrite to replace it)")
    loaded = load_model(model, checkpoint)
    res = score_protocol(loaded, protocol, audio_dir, out_file, ext=ext, columns=int(columns), llr=llr,
                         aggregate=aggregate, workers=workers, progress=sys.stderr.isatty())
    click.echo(f"scored {res.n_scored} of {res.n_trials} trials with {loaded.name} -> {res.out}", err=True)
    for path, reason in res.errors[:20]:
        click.echo(f"voiceguard: error: {path}: {reason}", err=True)
    if len(res.errors) > 20:
        click.echo(f"voiceguard: ... and {len(res.errors) - 20} more unreadable files", err=True)
    if res.errors:
        sys.exit(EXIT_ERRORS)


__all__ = ["ScanRow", "scan_paths", "exit_code", "detect_group", "scan_command", "VoiceguardError"]
