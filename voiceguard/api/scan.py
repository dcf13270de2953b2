"""``voiceguard.scan``: spoof verdict + watermark check for files, folders and globs.

The one implementation of a scan: the ``voiceguard scan`` command and the demo's Scan tab are adapters over
it.  Importing this module is light (no torch): the detectors load when ``scan`` is called.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Collection, Iterable, Iterator, NamedTuple

from voiceguard import writers
from voiceguard.audio import SAMPLE_RATE, find_audio_files
from voiceguard.errors import ModelCardError, VoiceguardError

if TYPE_CHECKING:
    from voiceguard.detect.scoring import FileScore
    from voiceguard.watermark import DetectionResult

EXIT_SPOOF, EXIT_ERRORS, EXIT_NO_SPEECH = 1, 2, 4


class ScanOptionError(VoiceguardError, ValueError):
    """A scan option out of range: threshold, hop or aggregate.  ``option`` names the command-line option
    the CLI blames (``"--hop"``), or is None when the message already names it."""

    def __init__(self, message: str, *, option: str | None = None):
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class ScanRow:
    """One scanned file (``voiceguard scan`` writes these fields, in this order, as its columns).

    Attributes:
        path: the file as found (a folder's files under it; an input problem: the input as given).
        status: ``"ok"`` or ``"error"`` (the file could not be scanned: ``error`` says why).
        verdict: ``"bonafide"``, ``"spoof"``, ``"partial-spoof"`` (bona fide overall, some windows below the
            threshold) or ``"no-speech"`` (less than ``voiceguard.vad.MIN_SPEECH_SECONDS`` of speech: not
            scored, reason in ``note``); None for errors.
        p_spoof: calibrated spoof probability in [0, 1] at equal priors, 4 decimals; None when not scored.
            Never NaN (a non-finite model score makes the file an error row).
        llr: bona fide vs spoof log-likelihood ratio (natural log, > 0 = bona fide), 3 decimals; None when
            not scored.  For an uncalibrated model (architecture + checkpoint) it is the raw score.
        duration_s: seconds of audio analysed.
        sample_rate, channels: of the file as stored (it is analysed at 16 kHz, one channel).
        flagged: merged flagged spans ``"start-end;..."`` in seconds (2 decimals), None when none.
        model: name of the detector's model card (or architecture).
        watermark: the message (``"0xBEEF"``) when a watermark was found and its message passed the integrity
            check, ``"unreadable"`` when a mark is present but its message failed the check, ``"unverified"``
            when the engine carries no check value (audioseal), ``"none"`` when no mark was found,
            ``"error: <ExceptionType>"`` when the check failed, None when not checked.
        wm_probability: watermark presence, the highest mean over a 1 s window, 4 decimals (None: not checked).
        error: why the file could not be scanned (``status == "error"``).
        speech_s: seconds of speech silero-vad found in the analysed signal.
        note: the no-speech reason, and/or which channel was analysed instead of the channel mean.
        segments: per-window ``voiceguard.detect.scoring.Segment``\\ s (start_s, end_s, score, llr, p_spoof,
            flagged); written only with ``--segments``.
        score: the unrounded ``FileScore`` behind ``p_spoof``/``llr``/``verdict`` (None when not scored);
            never written.
        mark: the watermark detector's full ``DetectionResult`` (presence curve, threshold, bits; None when not
            checked or the check failed); never written.
    """

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
    watermark: str | None = None  # "0xBEEF" (verified), "unreadable", "unverified", "none", or None (not checked)
    wm_probability: float | None = None  # highest 1 s window watermark presence
    error: str | None = None
    speech_s: float | None = None  # seconds of speech the VAD found in the analysed signal
    note: str | None = None  # no-speech reason, or which channel was analysed instead of the mean
    segments: tuple = ()
    score: FileScore | None = field(default=None, repr=False, compare=False)
    mark: DetectionResult | None = field(default=None, repr=False, compare=False)

    def to_dict(self, segments: bool = False) -> dict:
        """The written fields (``segments`` as a list of dicts when asked; ``score`` and ``mark`` never)."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in _NOT_WRITTEN}
        if segments:
            d["segments"] = [s.to_dict() for s in self.segments]
        return d


_NOT_WRITTEN = ("segments", "score", "mark")


class _WatermarkCheck(NamedTuple):
    """A file's watermark check, returned by the decode step with its audio (so it travels with its file)."""

    message: str | None  # "0xBEEF" | "none" | "error: Type" | None (not checked)
    probability: float | None
    result: Any = None  # DetectionResult


_NOT_CHECKED = _WatermarkCheck(None, None)


def _check_watermark(watermarker, audio) -> _WatermarkCheck:
    try:
        r = watermarker.detect(audio, SAMPLE_RATE)
    except Exception as e:  # noqa: BLE001 - the spoof verdict still stands; say why the mark is unknown
        return _WatermarkCheck(f"error: {type(e).__name__}", None)
    return _WatermarkCheck(r.verdict if r.detected else "none", round(r.probability, 4), r)


def resolve_threshold(threshold: str | float, loaded) -> float:
    """The decision threshold on the LLR axis (a file below it is spoof).

    ``threshold``: ``"default"`` (the card's shipped operating point, ``Calibration.operating_point``: at most
    ``operating_target`` (1 %) of the dev bona fide files of every channel condition called spoof; LLR 0 for a
    card without one), an LLR (a number, or a string such as ``"-1.5"``), ``"eer"`` (the model card's dev EER
    point) or ``"fa:RATE"`` (the card's point for a target spoof false-alarm rate, e.g. ``"fa:0.01"``);
    ``loaded``: the ``LoadedModel`` whose calibration maps the card's raw-score points to LLRs.

    Raises:
        ModelCardError: ``eer`` / ``fa:RATE`` that the model's card does not calibrate.
        ScanOptionError: not a number, ``eer`` or ``fa:RATE``; or not finite.
    """
    cal = loaded.calibration
    if threshold == "default":
        return cal.default_threshold()
    if threshold == "eer":
        if cal.eer_threshold is None:
            raise ModelCardError(f"model {loaded.name!r} has no calibration; give --threshold as an LLR value")
        return float(cal.llr(cal.eer_threshold))
    if isinstance(threshold, str) and threshold.startswith("fa:"):
        rate = threshold[3:]
        if rate not in cal.fa_thresholds:
            raise ModelCardError(f"model {loaded.name!r} has no threshold for a false-alarm rate of {rate}; "
                                 f"known: {', '.join(cal.fa_thresholds) or 'none'}")
        return float(cal.llr(cal.fa_thresholds[rate]))
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise ScanOptionError(f"{threshold!r}: expected 'default', an LLR number, 'eer' or 'fa:RATE'") from None
    if not math.isfinite(value):
        raise ScanOptionError(f"{threshold!r}: the LLR threshold must be a finite number")
    return value


def _hop_samples(hop_seconds: float | None, loaded) -> int | None:
    """The window hop in samples (None: half a window); raises ``ScanOptionError`` for a hop that is not a
    positive number or longer than one window (it would leave parts of files unscored)."""
    if not hop_seconds:
        return None
    if not (isinstance(hop_seconds, (int, float)) and math.isfinite(hop_seconds) and hop_seconds > 0):
        raise ScanOptionError(f"{hop_seconds!r}: the hop must be a positive number of seconds", option="--hop")
    win = loaded.detector.input_samples
    if hop_seconds * SAMPLE_RATE > win:
        raise ScanOptionError(f"{hop_seconds:g} s leaves gaps: {loaded.name} scores windows of "
                              f"{win / SAMPLE_RATE:g} s", option="--hop")
    return int(hop_seconds * SAMPLE_RATE)


def _loaded_model(model, checkpoint):
    if model is None or isinstance(model, (str, os.PathLike)):
        from voiceguard.detect.models import load_model

        return load_model(None if model is None else os.fspath(model), checkpoint)
    if checkpoint is not None:
        raise ScanOptionError("checkpoint= goes with a model name, not with an already loaded model")
    return model


def _watermarker(watermark):
    if watermark is True:
        from voiceguard.watermark import DEFAULT_ENGINE, load_watermarker

        return load_watermarker(DEFAULT_ENGINE, need="detect")  # the detector alone: scan never embeds
    return watermark or None


def scan(paths: str | os.PathLike | Iterable[str | os.PathLike], *, model=None,
         checkpoint: str | os.PathLike | None = None, threshold: str | float = "default", aggregate: str = "mean",
         hop_seconds: float | None = None, workers: int = 2, watermark=True, progress=False,
         skip: Collection[str] = (), executor=None) -> Iterator[ScanRow]:
    """Scan audio files, folders (recursive) and globs for spoofed speech and watermarks.

    Yields one ``ScanRow`` per file as it finishes: input problems first (a missing path, a folder without
    audio), then the files in sorted order.  A file that cannot be used (undecodable, too short, a
    non-finite model score) is an error row; it never stops the scan.  ``list(scan(...))`` collects them;
    ``exit_code(rows)`` gives the command's exit code.

    Each file is decoded at 16 kHz and down-mixed by the channel rule (``voiceguard.vad.choose_mix``: the
    channel mean, or the channel with the most speech when the channels cancel or one is dead); silero-vad
    then checks for speech: less than ``voiceguard.vad.MIN_SPEECH_SECONDS`` (0.3 s) gives verdict
    ``no-speech``, not scored.  The detector scores sliding windows over the whole file; the file's LLR is
    the calibrated aggregate of the window scores.  With a watermark check, the same 16 kHz signal is also
    checked for a watermark (no-speech files too: a mark in silence is still a mark).

    Args:
        paths: a file, folder or glob, or an iterable of them.  Files named explicitly are read whatever
            their extension; folders and globs contribute files with audio extensions.
        model: a model card name (``"vg-specnet"``, the default when None), a card file (``.yaml``), an
            architecture name (with ``checkpoint``), or an already loaded ``LoadedModel``
            (``voiceguard.load_model()``; any object with ``detector``, ``calibration`` and ``name``).
        checkpoint: weights for ``model`` given by name: replaces the card's file, or with an architecture.
        threshold: the decision threshold: ``"default"`` (the card's operating point, LLR 0 without one), an
            LLR (float, or a string such as ``"-1.5"``; below it = spoof),
            ``"eer"`` (the card's dev EER point) or ``"fa:RATE"`` (e.g. ``"fa:0.01"``, a target spoof
            false-alarm rate); see ``resolve_threshold``.
        aggregate: file score from the window scores: ``"mean"``, or ``"min"`` (the most spoof-like window).
        hop_seconds: window hop in seconds, at most one window (None: half a window).
        workers: decoding threads (decoding runs ahead of the model, output order unchanged).
        watermark: True: check with the default engine (``voiceguard.watermark.DEFAULT_ENGINE``, the coded
            spread-spectrum watermark); False/None: no check (the ``watermark`` column is None); or a
            ``Watermarker`` (``voiceguard.load_watermarker(...)``) to check another engine's mark.
        progress: False, True (a progress bar / line on stderr), or a ``voiceguard.progress.Progress``.
        skip: paths to leave out, as written in outputs (after ``voiceguard.writers.printable``): used to
            resume an interrupted scan.
        executor: where the files are scored: None / ``"local"`` (this process; rows in sorted order),
            ``"ray"`` (a private Ray instance on this machine) or a ``voiceguard.executors.ExecutorSpec``
            (e.g. ``ExecutorSpec("ray", address="auto", workers=8)``: an existing cluster).  With Ray each
            worker receives the loaded model once and decodes with one thread per CPU it reserves
            (``workers`` is then ignored); rows come in the order files finish, each file exactly once,
            with the same values as the local executor.

    The model, threshold, hop and watermark detector are resolved when ``scan`` is called (so its errors
    come at once); the files are read as the rows are consumed.

    Raises:
        ModelCardError: the model cannot be loaded (unknown name, bad card, checksum mismatch), or
            ``"eer"``/``"fa:RATE"`` that its card does not calibrate.
        ExecutorError: (when the rows are first read) Ray is not installed or the cluster cannot be used.
        ScanOptionError: (a ``VoiceguardError`` and ``ValueError``) a threshold that is not a finite LLR,
            ``"eer"`` or ``"fa:RATE"``; a hop that is not positive or longer than the model's window; an
            unknown ``aggregate``; ``checkpoint`` with an already loaded model.

    Example (``incoming/`` a folder of clips)::

        import voiceguard
        rows = list(voiceguard.scan(["incoming/"], watermark=False))
        for row in rows:
            print(row.path, row.verdict, row.p_spoof, row.llr, row.flagged)
        code = voiceguard.exit_code(rows)  # as `voiceguard scan`: 2 error, 1 spoof, 4 no speech, 0 bona fide
    """
    loaded = _loaded_model(model, checkpoint)
    hop = _hop_samples(hop_seconds, loaded)
    thr = resolve_threshold(threshold, loaded)
    from voiceguard.detect.scoring import AGGREGATES

    if aggregate not in AGGREGATES:
        raise ScanOptionError(f"{aggregate!r}: aggregate must be one of {', '.join(AGGREGATES)}")
    watermarker = _watermarker(watermark)
    inputs = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    from voiceguard.executors import as_spec

    return _scan_rows(inputs, loaded, thr, aggregate, hop, workers, watermarker, progress, frozenset(skip),
                      as_spec(executor))


def _scan_rows(inputs: list, loaded, threshold: float, aggregate: str, hop: int | None, workers: int,
               watermarker, progress, skip: Collection[str], executor) -> Iterator[ScanRow]:
    from voiceguard.executors import run_job
    from voiceguard.progress import Progress

    files, problems = find_audio_files(inputs)
    if skip:
        files = [f for f in files if writers.printable(str(f)) not in skip]
        problems = [p for p in problems if writers.printable(p.path) not in skip]
    if not isinstance(progress, Progress):
        progress = Progress("scan", enabled=bool(progress))
    progress.set_total(len(files) + len(problems))
    if not executor.is_local:  # one decoding thread per CPU an actor reserves
        workers = max(1, int(executor.cpus_per_worker))
    job = ScanJob(loaded, threshold, aggregate, hop, workers, watermarker)
    scored = run_job(job, files, executor)  # Ray workers start here: their errors come before any row
    for p in problems:
        yield ScanRow(p.path, "error", error=p.reason)
        progress.advance()
    for _, row in scored:
        progress.advance()  # counted before the yield: the consumer writes the row at once
        yield row


@dataclass(frozen=True)
class ScanJob:
    """The per-file work of a scan (a ``voiceguard.executors.FileJob``): the loaded detector, the resolved
    threshold / aggregate / hop and the watermark detector; it runs in this process or in a Ray actor, which
    receives it (models included) once."""

    loaded: Any
    threshold: float
    aggregate: str
    hop: int | None
    workers: int  # decoding threads
    watermarker: Any = None

    def open(self):
        return lambda files: _scan_files(files, self.loaded, self.threshold, self.aggregate, self.hop, self.workers,
                                         self.watermarker)

    def failed(self, item, reason: str) -> ScanRow:
        return ScanRow(str(item), "error", model=self.loaded.name, error=reason)


def _scan_files(files: list, loaded, threshold: float, aggregate: str, hop: int | None, workers: int,
                watermarker) -> Iterator[ScanRow]:
    """A ``ScanRow`` per file of ``files`` (paths of regular files), in order."""
    from voiceguard.detect.batch import decode_speech, score_files
    from voiceguard.detect.scoring import merge_flagged

    def decode_and_check(path):  # the watermark check is returned with the audio: it travels with its file
        audio, info, mix = decode_speech(path)
        return audio, info, mix, None if watermarker is None else _check_watermark(watermarker, audio)

    scored = score_files(loaded.detector, files, calibration=loaded.calibration, threshold=threshold, hop=hop,
                         aggregate=aggregate, workers=workers, decode=decode_and_check)
    for s in scored:
        mark = s.extra or _NOT_CHECKED
        stored = dict(sample_rate=s.info.sample_rate if s.info else None,
                      channels=s.info.channels if s.info else None)
        if s.no_speech is not None:
            yield ScanRow(s.source, "ok", "no-speech", None, None, s.duration_s, **stored, model=loaded.name,
                          watermark=mark.message, wm_probability=mark.probability, speech_s=s.speech_s,
                          note="; ".join(filter(None, (s.no_speech, s.note))), mark=mark.result)
            continue
        if s.result is None:
            yield ScanRow(s.source, "error", model=loaded.name, error=s.error)
            continue
        r = s.result
        spans = ";".join(f"{a:.2f}-{b:.2f}" for a, b in merge_flagged(r.segments))
        yield ScanRow(s.source, "ok", r.verdict, round(r.p_spoof, 4), round(r.llr, 3), s.duration_s, **stored,
                      flagged=spans or None, model=loaded.name, watermark=mark.message,
                      wm_probability=mark.probability, speech_s=s.speech_s, note=s.note, segments=r.segments,
                      score=r, mark=mark.result)


def exit_code(rows: Iterable[ScanRow]) -> int:
    """The scan's exit code, by priority: 2 when any file could not be scanned, else 1 when any spoof (or
    partial spoof) was found, else 4 when some file had no speech (no verdict possible), else 0 (every
    scanned file bona fide; also for no rows)."""
    rows = list(rows)
    if any(r.status == "error" for r in rows):
        return EXIT_ERRORS
    if any(r.verdict in ("spoof", "partial-spoof") for r in rows):
        return EXIT_SPOOF
    return EXIT_NO_SPEECH if any(r.verdict == "no-speech" for r in rows) else 0


def summary_line(rows: list[ScanRow], model: str, calibrated: bool = True) -> str:
    """The one-line scan summary (the CLI prints it on stderr); no-speech files are counted apart from bona
    fide / spoof.  ``model``: the model's name; ``calibrated``: False adds that LLR = raw score."""
    count = {v: sum(r.status == "ok" and r.verdict == v for r in rows)
             for v in ("bonafide", "spoof", "partial-spoof", "no-speech")}
    n_err = sum(r.status == "error" for r in rows)
    cal = "" if calibrated else " (uncalibrated model: LLR = raw score)"
    return (f"voiceguard: scanned {len(rows)} file(s) with {model}{cal}: {count['bonafide']} bona fide, "
            f"{count['spoof']} spoof, {count['partial-spoof']} partial spoof, {count['no-speech']} no speech, "
            f"{n_err} error(s)")


__all__ = ["ScanRow", "ScanOptionError", "scan", "exit_code", "summary_line", "resolve_threshold", "EXIT_SPOOF",
           "EXIT_ERRORS", "EXIT_NO_SPEECH"]
