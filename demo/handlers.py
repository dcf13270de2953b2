"""Pure handlers of the Gradio demo: file paths and plain values in, frozen views (text + figures) out.

They know nothing of Gradio, so they are unit-tested directly; ``app.py`` only wires them to widgets and
turns a ``VoiceguardError`` into a message in the page. Models load once, lazily, offline (shipped ones).
"""
from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from voiceguard.audio import AudioInfo, audio_info
from voiceguard.errors import VoiceguardError
from voiceguard.watermark.base import DEFAULT_ENGINE

MAX_MB = 50.0
MAX_SECONDS = 600.0


class DemoInputError(VoiceguardError):
    """An upload the demo will not process (none, too large, too long, not audio)."""


@lru_cache(maxsize=None)
def detector():
    from voiceguard.detect.models import load_model

    return load_model()


def engines() -> list[str]:
    """The registered watermark engines (``voiceguard.watermark.WATERMARKERS``), sorted."""
    from voiceguard.watermark import WATERMARKERS

    return sorted(WATERMARKERS)


@lru_cache(maxsize=None)
def watermarker(engine: str = DEFAULT_ENGINE):
    """The engine by registry name (``UnknownNameError`` listing the engines for another name)."""
    from voiceguard.watermark import load_watermarker

    return load_watermarker(engine)


@lru_cache(maxsize=None)
def embedder():
    from voiceguard.eval.risk import load_embedder

    return load_embedder("resemblyzer")


#: the clips offered in the Scan and Watermark tabs: (folder, file name, label). The synthetic clip ships in
#: the checkout's ``examples/``; the real one is read from the reference speech folder (``$VOICEGUARD_SPEECH``,
#: default ``../shared/data/speech/librispeech`` beside the checkout) and offered only when it is there:
#: reference material is never copied into the repository
EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
SPEECH_DIR = Path(os.environ.get("VOICEGUARD_SPEECH", EXAMPLES_DIR.parent.parent / "shared/data/speech/librispeech"))
EXAMPLE_CLIPS = (("speech", "train-clean-100/5339-14133-0000.flac",
                  "real speech: LibriSpeech 5339-14133-0000 (CC BY 4.0)"),
                 ("examples", "hello_espeak.flac", "synthetic speech: espeak-ng (a spoof)"))


def example_clips(folder: str | os.PathLike | None = None) -> list[tuple[str, str]]:
    """``(absolute path, label)`` of the example clips that exist (``folder`` replaces both the examples and
    the speech folder, for tests); an installed wheel without either offers none."""
    roots = {"examples": EXAMPLES_DIR, "speech": SPEECH_DIR} if folder is None else \
        {"examples": Path(folder), "speech": Path(folder)}
    return [(str(roots[k] / name), label) for k, name, label in EXAMPLE_CLIPS if (roots[k] / name).is_file()]


def check_upload(path: str | os.PathLike | None, *, what: str = "clip", max_mb: float = MAX_MB,
                 max_seconds: float = MAX_SECONDS) -> AudioInfo:
    """The upload exists, is audio, and is within the demo's size and duration limits."""
    if not path:
        raise DemoInputError(f"upload or record a {what} first")
    p = Path(path)
    if not p.is_file():
        raise DemoInputError(f"the uploaded {what} is gone (upload it again)")
    mb = p.stat().st_size / 1e6
    if mb > max_mb:
        raise DemoInputError(f"the {what} is {mb:.0f} MB; the demo takes files up to {max_mb:.0f} MB "
                             "(use the voiceguard CLI for larger ones)")
    info = audio_info(p)
    if info.duration > max_seconds:
        raise DemoInputError(f"the {what} is {info.duration / 60:.1f} min long; the demo takes up to "
                             f"{max_seconds / 60:.0f} min (use the voiceguard CLI for longer ones)")
    return info


def _figure(width: float = 7.0, height: float = 2.4):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    return fig, ax


def presence_figure(result, title: str = "watermark presence"):
    fig, ax = _figure()
    t = np.arange(result.presence.size) / result.frame_rate
    ax.plot(t, result.presence, lw=1, color="tab:blue")
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    for s in result.segments:
        ax.axvspan(s.start, s.end, color="tab:green", alpha=0.15)
    ax.set(ylim=(-0.02, 1.02), xlabel="time (s)", ylabel="presence", title=title)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- Scan tab
@dataclass(frozen=True)
class ScanView:
    verdict: str  # "bonafide" | "spoof" | "partial-spoof" | "no-speech"
    p_spoof: float | None  # None for "no-speech"
    llr: float | None
    flagged: tuple[tuple[float, float], ...]
    watermark: str  # message hex or "none"
    wm_probability: float
    summary: str  # markdown
    window_plot: Any = field(repr=False, compare=False)
    presence_plot: Any = field(repr=False, compare=False)


def scan_clip(path: str | os.PathLike | None) -> ScanView:
    """Spoof verdict with per-window scores and flagged segments, plus watermark detection: one
    ``voiceguard.api.scan`` of the clip (one decode).  A clip without speech gets verdict ``no-speech`` (no
    score; the watermark is still checked)."""
    from voiceguard.api import scan
    from voiceguard.detect.scoring import merge_flagged

    check_upload(path)
    loaded = detector()
    row = next(scan([str(path)], model=loaded, workers=1, watermark=watermarker()))
    if row.status == "error":
        raise DemoInputError(row.error or "could not scan the clip", source=Path(path).name)
    mark = row.mark
    if mark is None:
        raise DemoInputError(f"could not check the watermark ({row.watermark})", source=Path(path).name)
    wm_line = f"**Watermark: {row.watermark}** (presence {mark.probability:.3f}, threshold {mark.threshold:.3f})"
    if row.score is None:  # no speech: nothing for a spoof detector to judge
        summary = (f"**Verdict: no-speech**: {row.note}; a spoof verdict needs speech (model "
                   f"`{loaded.name}` not run)\n\n{wm_line}")
        return ScanView("no-speech", None, None, (), row.watermark, float(mark.probability), summary, None,
                        presence_figure(mark))
    r = row.score
    flagged = tuple(merge_flagged(r.segments))
    fig, ax = _figure()
    mids = [(s.start_s + s.end_s) / 2 for s in r.segments]
    ax.plot(mids, [s.p_spoof for s in r.segments], marker="o", ms=3, lw=1, color="tab:red")
    for a, b in flagged:
        ax.axvspan(a, b, color="tab:red", alpha=0.15)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set(ylim=(-0.02, 1.02), xlabel="time (s)", ylabel="P(spoof)", title=f"{loaded.name}: per-window score")
    fig.tight_layout()
    spans = ", ".join(f"{a:.1f}-{b:.1f} s" for a, b in flagged) or "none"
    channel = f"\n\n{row.note[0].upper()}{row.note[1:]}." if row.note else ""
    summary = (f"**Verdict: {r.verdict}** (P(spoof) {r.p_spoof:.3f}, LLR {r.llr:+.2f}, model `{loaded.name}`)\n\n"
               f"Flagged segments: {spans}{channel}\n\n{wm_line}")
    return ScanView(r.verdict, float(r.p_spoof), float(r.llr), flagged, row.watermark, float(mark.probability),
                    summary, fig, presence_figure(mark))


# --------------------------------------------------------------------------- Watermark tab
@dataclass(frozen=True)
class EmbedView:
    output: str  # the watermarked copy (same format, rate, channels and length as the upload)
    message: str
    summary: str


def _message(text: str | None) -> int | None:
    from voiceguard.watermark import parse_message

    try:
        return parse_message((text or "").strip() or None)
    except ValueError as e:
        raise DemoInputError(str(e)) from None


def embed_clip(path: str | os.PathLike | None, message: str, out_dir: str | os.PathLike | None = None,
               engine: str = DEFAULT_ENGINE) -> EmbedView:
    """Watermark an upload with ``message`` (hex or int) into a new file; the upload is untouched."""
    from voiceguard.api import embed_file

    info = check_upload(path)
    value = _message(message)
    if value is None:
        raise DemoInputError("type a message to embed, e.g. 0xBEEF or 48879")
    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="voiceguard-demo-"))
    wm = watermarker(engine)
    try:
        row = embed_file(path, out_dir / f"{Path(path).stem}.watermarked{Path(path).suffix}", value, engine=wm,
                         overwrite=True)
    except VoiceguardError as e:
        raise DemoInputError(e.reason or "could not watermark the clip", source=Path(path).name) from None
    return EmbedView(row.output, row.message, f"Embedded **{row.message}** with `{engine}` into "
                                              f"{info.duration:.1f} s at {row.sample_rate} Hz ({row.channels} "
                                              "channel(s)); download it below.")


@dataclass(frozen=True)
class DetectView:
    detected: bool
    message: str
    probability: float
    bits_matched: int | None  # of 16, against the expected message (None: none expected or no mark)
    summary: str
    plot: Any = field(repr=False, compare=False)


def detect_clip(path: str | os.PathLike | None, expected: str | None = None, engine: str = DEFAULT_ENGINE
                ) -> DetectView:
    from voiceguard.api import detect_file

    check_upload(path)
    exp = _message(expected)
    wm = watermarker(engine)
    try:
        row = detect_file(path, engine=wm, expected=exp)
    except VoiceguardError as e:
        raise DemoInputError(e.reason or "could not read the clip", source=Path(path).name) from None
    r = row.result
    msg = r.verdict if r.detected else "none"  # "0xBEEF" (verified), "unreadable", "unverified"
    matched = r.bits_matched if exp is not None and r.detected else None
    text = (f"**Watermark: {msg}** (presence {r.probability:.3f}, threshold {r.threshold:.3f})"
            + (f"; {matched}/{len(r.bits)} bits match {expected}, p-value {r.p_value:.2g}" if matched is not None else ""))
    return DetectView(r.detected, msg, float(r.probability), matched, text, presence_figure(r))


# --------------------------------------------------------------------------- Attack lab
@dataclass(frozen=True)
class AttackView:
    output: str
    rows: tuple[tuple[str, str, str], ...]  # (measure, before, after)
    summary: str


NEEDS_OTHER_AUDIO = ("chain", "background_noise", "splice")  # need a second recording or a recipe: CLI only


def attack_names() -> list[str]:
    """Attacks the lab offers: those available on this machine that work on one clip."""
    from voiceguard.attacks.files import attack_catalogue

    return [r["name"] for r in attack_catalogue() if r["available"] == "yes" and r["name"] not in NEEDS_OTHER_AUDIO]


def parse_params(text: str | None) -> dict:
    """``key=value, key=value`` (commas or semicolons; ``[lo, hi]`` ranges kept whole) -> parameters."""
    from voiceguard.attacks.files import parse_attack_params

    return parse_attack_params(t for t in re.split(r"[,;](?![^\[]*\])", text or "") if t.strip())


def attack_clip(path: str | os.PathLike | None, attack: str, params: str = "", seed: int = 0,
                out_dir: str | os.PathLike | None = None) -> AttackView:
    """Apply an attack (native rate and channels), then compare the detector verdict and the watermark."""
    from voiceguard.attacks.files import apply_attack_file

    check_upload(path)
    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="voiceguard-demo-"))
    res = apply_attack_file(attack, path, out_dir / f"{Path(path).stem}.{attack}{Path(path).suffix}",
                            parse_params(params), seed=int(seed), overwrite=True)
    before, after = scan_clip(path), scan_clip(res.output)
    rows = (("spoof verdict", before.verdict, after.verdict),
            ("P(spoof)", *("-" if v.p_spoof is None else f"{v.p_spoof:.3f}" for v in (before, after))),
            ("watermark", before.watermark, after.watermark),
            ("watermark presence", f"{before.wm_probability:.3f}", f"{after.wm_probability:.3f}"))
    shown = ", ".join(f"{k}={v}" for k, v in res.parameters.items())
    return AttackView(res.output, rows, f"Applied **{attack}** ({shown or 'no parameters'}; seed {int(seed)}).")


# --------------------------------------------------------------------------- Voiceprint risk
@dataclass(frozen=True)
class VoiceView:
    cosine: float
    same_speaker: bool | None
    summary: str


def compare_voices(a: str | os.PathLike | None, b: str | os.PathLike | None) -> VoiceView:
    """Similarity of two clips and the same-speaker decision at the backend's calibrated threshold."""
    from voiceguard.eval.risk import compare_clips

    check_upload(a, what="first clip")
    check_upload(b, what="second clip")
    r = compare_clips(a, b, embedder())
    if r.same_speaker is None:
        verdict, risk = "no calibrated threshold", "unknown"
    elif r.same_speaker:
        verdict, risk = "same speaker", "high: the second clip links to the first speaker's voiceprint"
    else:
        verdict, risk = "different speakers", "low for this pair: the voices do not link"
    thr = "" if r.threshold is None else f" (threshold {r.threshold:.3f}, EER point on held-out speech)"
    return VoiceView(r.cosine, r.same_speaker, f"**{verdict}**: cosine {r.cosine:.3f}{thr}\n\nRe-identification "
                                                f"risk: {risk}")


# --------------------------------------------------------------------------- Report
REPORT_ENV = "VOICEGUARD_REPORT"


@dataclass(frozen=True)
class ReportView:
    folder: str
    markdown: str  # report.md without its figure links (the figures are shown in a gallery)
    figures: tuple[tuple[str, str], ...]  # (absolute PNG path, caption)


def report_candidates(extra: str | os.PathLike | None = None) -> list[Path]:
    """Folders that may hold a report: ``extra`` (``voiceguard demo --report``), ``$VOICEGUARD_REPORT``, every
    ``reports/*`` under the current folder, and the committed ``docs/report``."""
    out = [Path(p) for p in (extra, os.environ.get(REPORT_ENV)) if p]
    reports = Path("reports")
    if reports.is_dir():
        out += sorted(p for p in reports.iterdir() if p.is_dir())
    out.append(Path("docs") / "report")
    return out


def latest_report(candidates: list[Path]) -> Path | None:
    """The candidate whose ``report.json`` was written last."""
    found = [c for c in candidates if (c / "report.json").is_file() and (c / "report.md").is_file()]
    return max(found, key=lambda c: (c / "report.json").stat().st_mtime) if found else None


def report_view(folder: str | os.PathLike | None = None) -> ReportView:
    """The tables and figures of ``folder``'s report when it holds one, else of the latest report found."""
    from voiceguard.eval.report.results import read_figures

    found = latest_report([Path(folder)]) if folder else None  # the folder asked for (--report) comes first
    found = found or latest_report(report_candidates())
    if found is None:
        raise DemoInputError("no report found yet: run `voiceguard eval report --config configs/mini-la.yaml "
                             "--out reports/mini-la` (or start the demo with --report DIR)")
    try:
        listed = read_figures(found / "report.json")
        md = (found / "report.md").read_text()
    except (OSError, ValueError, KeyError) as e:
        raise DemoInputError(f"unreadable report ({e})", source=found) from None
    figures = tuple((str((found / f.file).resolve()), f.title) for f in listed if (found / f.file).is_file())
    text = "\n".join(line for line in md.splitlines() if not line.startswith("!["))
    return ReportView(str(found), f"_Report folder: `{found}`_\n\n" + text, figures)


__all__ = ["EXAMPLE_CLIPS", "EXAMPLES_DIR", "check_upload", "example_clips", "scan_clip", "embed_clip", "detect_clip", "attack_clip", "attack_names",
           "compare_voices", "parse_params", "DemoInputError", "engines", "ScanView", "EmbedView", "DetectView",
           "AttackView", "VoiceView", "MAX_MB", "MAX_SECONDS", "ReportView", "report_view", "latest_report",
           "report_candidates"]
