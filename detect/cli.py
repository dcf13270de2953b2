"""CLI of the detection package: the ``detect`` group and the top-level ``scan`` command."""
from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from voiceguard import writers
from voiceguard.audio import audio_info, find_audio_files, stream_audio
from voiceguard.errors import VoiceguardError

EXIT_ERRORS = 2


@dataclass(frozen=True)
class ScanRow:
    """One scanned file. ``verdict`` stays 'unscored' until a detector ships (issue #4)."""

    path: str
    status: str  # "ok" | "error"
    duration_s: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    verdict: str = "unscored"
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def scan_file(path: Path) -> ScanRow:
    """Decode the whole file through the shared audio path (bounded memory) and report it."""
    try:
        info = audio_info(path)
        n = sum(block.shape[1] for block in stream_audio(path, block_seconds=30.0, info=info))
    except VoiceguardError as e:
        return ScanRow(str(path), "error", error=e.reason)
    return ScanRow(str(path), "ok", round(n / info.sample_rate, 3), info.sample_rate, info.channels)


def scan_paths(inputs: list[str]) -> list[ScanRow]:
    """Scan files, folders (recursive) and globs; bad inputs become error rows, never stop the batch."""
    files, problems = find_audio_files(inputs)
    rows = [ScanRow(p.path, "error", error=p.reason) for p in problems]
    rows += [scan_file(f) for f in files]
    return rows


@click.group("detect")
def detect_group() -> None:
    """Spoof detectors: train, score, list models (the detector zoo arrives with issue #4)."""


@click.command("scan")
@click.argument("paths", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(writers.FORMATS), default="table", show_default=True)
def scan_command(paths: tuple[str, ...], fmt: str) -> None:
    """Scan audio files, folders (recursive) or globs.

    Today every file is decoded and checked (format, rate, channels, corrupt
    data, NaN); spoof verdicts need a detector, which ships with issue #4.
    Exit code: 0 all files readable, 2 some files could not be used.
    """
    rows = [r.to_dict() for r in scan_paths(list(paths))]
    cols = ["path", "status", "duration_s", "sample_rate", "channels", "verdict", "error"]
    click.echo(writers.render(rows, fmt, cols), nl=False)
    bad = sum(r["status"] == "error" for r in rows)
    click.echo(f"voiceguard: scanned {len(rows)} file(s): {len(rows) - bad} readable, {bad} with errors; "
               "no spoof detector is shipped yet, so no verdicts (issue #4)", err=True)
    if bad:
        sys.exit(EXIT_ERRORS)
