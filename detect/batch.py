"""Scoring many files: decoding in a thread pool (both cores work) while the model scores windows
batched across files.  Every file yields either a ``FileScore`` or the error that made it unusable."""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from voiceguard.audio import AudioInfo, audio_info, load_audio
from voiceguard.errors import VoiceguardError, per_file
from voiceguard.vad import Mix, choose_mix, load_vad

from .scoring import Calibration, FileScore, fit_window, summarize_windows, window_starts
from voiceguard.audio import SAMPLE_RATE



@dataclass(frozen=True)
class Scored:
    """One input: its score, or why it could not be scored."""

    source: str
    duration_s: float | None
    result: FileScore | None  # None: an error, or no speech (``no_speech`` says why)
    error: str | None = None
    info: AudioInfo | None = None  # the file as stored (rate, channels, format)
    no_speech: str | None = None  # "no speech detected (0.00 s of 5.00 s)": not scored, not an error
    speech_s: float | None = None  # seconds of detected speech (when the decoder ran the VAD)
    note: str | None = None  # which channel was used when it was not the channel mean, and why
    extra: Any = None  # what the decode hook returned after the Mix (scan: the file's watermark check)


MIN_SECONDS = 0.25  # shorter audio is reported, not scored: a window of repeats says nothing


def _load(path: str | os.PathLike) -> tuple[np.ndarray, AudioInfo]:
    info = audio_info(path)
    audio, _ = load_audio(path, SAMPLE_RATE, min_seconds=MIN_SECONDS, purpose="spoof detection")
    return audio, info


def decode(path: str | os.PathLike) -> tuple[np.ndarray, AudioInfo]:
    """The file at 16 kHz as float32 ``[1, n]`` (down-mixed by ``voiceguard.vad.choose_mix``'s channel rule:
    the channel mean, or the channel with the most speech when the channels cancel or one is dead), and
    its header. Raises the audio path's ``VoiceguardError``s."""
    audio, info = _load(path)
    return choose_mix(audio, SAMPLE_RATE, activity=False).audio, info


def decode_speech(path: str | os.PathLike) -> tuple[np.ndarray, AudioInfo, Mix]:
    """``decode`` plus the speech activity of the chosen signal (silero-vad), for ``score_files`` to
    report files without speech as ``no-speech`` instead of scoring them."""
    audio, info = _load(path)
    mix = choose_mix(audio, SAMPLE_RATE)
    return mix.audio, info, mix


_decode_default = decode


def _prefetched(sources: Sequence, fn: Callable, workers: int) -> Iterator[tuple[object, object]]:
    """``fn`` over ``sources`` in a bounded thread pool, results in input order."""
    with ThreadPoolExecutor(max(1, workers)) as pool:
        queue: deque[tuple[object, Future]] = deque()
        it = iter(sources)
        for src in it:
            queue.append((src, pool.submit(fn, src)))
            if len(queue) >= 2 * max(1, workers):
                break
        while queue:
            src, fut = queue.popleft()
            nxt = next(it, None)
            if nxt is not None:
                queue.append((nxt, pool.submit(fn, nxt)))
            yield src, fut.result()


def score_files(detector, sources: Sequence[str | os.PathLike], *, calibration: Calibration = Calibration(),
                threshold: float = 0.0, hop: int | None = None, aggregate: str = "mean", workers: int = 2,
                batch_windows: int = 32, decode: Callable = decode) -> Iterable[Scored]:
    """Yield a ``Scored`` per source, in order.  ``detector`` needs ``score_batch`` and ``input_samples``;
    ``decode(path)`` returns 16 kHz mono audio, or ``(audio, AudioInfo)``, or ``(audio, AudioInfo, Mix)``
    (``decode_speech``: a file whose ``Mix.activity`` has too little speech is yielded unscored, with
    ``no_speech`` set), or ``(audio, AudioInfo, Mix, extra)``: ``extra`` (anything the hook computed on the
    decoded file in its worker thread, e.g. a watermark check) is carried to the file's ``Scored.extra``;
    or raises a VoiceguardError.  A file whose scores are not finite (NaN/Inf from the
    model) becomes an error row ("model produced a non-finite score ...")."""
    if decode in (_decode_default, decode_speech):
        load_vad()  # the first load imports silero_vad (torch thread count saved and restored): not in a worker
    win = int(detector.input_samples)
    hop = hop or win // 2
    if not 0 < hop <= win:
        raise ValueError(f"hop must be 1..{win} samples (a longer hop leaves parts of files unscored), got {hop}")
    pending: list[tuple[str, np.ndarray, list[int], AudioInfo | None, Any, Any]] = []
    n_windows = 0

    def flush() -> Iterator[Scored]:
        """Score the pending files' windows, cut ``batch_windows`` at a time (memory stays bounded for
        files of any length), and yield the files in order."""
        nonlocal pending, n_windows
        jobs = [(k, start) for k, p in enumerate(pending) for start in p[2]]
        raw = np.empty(len(jobs))
        for i in range(0, len(jobs), batch_windows):
            chunk = jobs[i:i + batch_windows]
            raw[i:i + len(chunk)] = detector.score_batch(
                np.stack([fit_window(pending[k][1][s:s + win], win) for k, s in chunk]))
        i = 0
        for src, audio, starts, info, mix, extra in pending:
            got = per_file(lambda _: summarize_windows(raw[i:i + len(starts)], starts, audio.size, SAMPLE_RATE, win,
                                                       calibration=calibration, threshold=threshold,
                                                       aggregate=aggregate), src, "scoring")
            i += len(starts)
            speech = mix.activity.speech_s if mix is not None and mix.activity is not None else None
            note = mix.note if mix is not None else None
            if isinstance(got, VoiceguardError):
                yield Scored(src, round(audio.size / SAMPLE_RATE, 3), None, got.reason, info, speech_s=speech,
                             note=note, extra=extra)
            else:
                yield Scored(src, round(audio.size / SAMPLE_RATE, 3), got, None, info, speech_s=speech,
                             note=note, extra=extra)
        pending, n_windows = [], 0

    for src, got in _prefetched(list(sources), lambda p: per_file(decode, p, "decoding"), workers):
        if isinstance(got, VoiceguardError):
            yield from flush()  # keep the output in input order
            yield Scored(str(src), None, None, got.reason)
            continue
        audio, info, mix, extra = (tuple(got) + (None, None))[:4] if isinstance(got, tuple) else (got, None, None, None)
        audio = np.asarray(audio, dtype=np.float32).ravel()
        if mix is not None and mix.activity is not None and not mix.activity.has_speech:
            yield from flush()  # keep the output in input order
            yield Scored(str(src), round(audio.size / SAMPLE_RATE, 3), None, None, info, no_speech=mix.activity.reason,
                         speech_s=mix.activity.speech_s, note=mix.note, extra=extra)
            continue
        starts = window_starts(audio.size, win, hop)
        pending.append((str(src), audio, starts, info, mix, extra))
        n_windows += len(starts)
        if n_windows >= batch_windows:
            yield from flush()
    yield from flush()


@dataclass(frozen=True)
class ScoreJob:
    """``score_files`` as a ``voiceguard.executors.FileJob`` over paths: the same detector, calibration, window
    rule and decode hook in this process or in a Ray actor (which receives it, detector included, once).
    ``decode`` must pickle (a module-level function, or a closure over picklable values)."""

    detector: Any
    calibration: Calibration = Calibration()
    threshold: float = 0.0
    hop: int | None = None
    aggregate: str = "mean"
    workers: int = 2
    decode: Callable = decode

    def open(self):
        return lambda paths: score_files(self.detector, paths, calibration=self.calibration, threshold=self.threshold,
                                         hop=self.hop, aggregate=self.aggregate, workers=self.workers,
                                         decode=self.decode)

    def failed(self, item, reason: str) -> Scored:
        return Scored(str(item), None, None, reason)


def score_many(job: ScoreJob, paths: Sequence, executor=None, progress: bool = False,
               desc: str = "score") -> list[Scored]:
    """``job`` over ``paths`` on ``executor`` (``voiceguard.executors``: None/``"local"``, ``"ray"`` or an
    ``ExecutorSpec``; with Ray each actor decodes with one thread per CPU it reserves): a ``Scored`` per path, in
    input order, whatever order the workers finished in.  ``progress``: a tqdm bar on stderr."""
    from dataclasses import replace

    from tqdm import tqdm

    from voiceguard.executors import as_spec, ordered, run_job

    spec = as_spec(executor)
    if not spec.is_local:
        job = replace(job, workers=max(1, int(spec.cpus_per_worker)))
    return ordered(tqdm(run_job(job, paths, spec), total=len(paths), desc=desc, unit="file", disable=not progress,
                        leave=False), len(paths))


@dataclass(frozen=True)
class ProtocolScores:
    out: str
    n_trials: int
    n_scored: int
    errors: tuple[tuple[str, str], ...]


def score_protocol(loaded, protocol: str | os.PathLike, audio_dir: str | os.PathLike | None,
                   out: str | os.PathLike, *, ext: str = ".flac", columns: int = 4, llr: bool = False,
                   aggregate: str = "mean", workers: int = 2, progress: bool = False,
                   protocol_format: str = "auto", executor=None) -> ProtocolScores:
    """Score every trial of ``protocol`` into an official-format score file (written atomically).

    ``protocol_format``: ``auto`` (sniffed from the content) or a ``voiceguard.protocols.READERS`` name.
    ``executor``: where the files are scored (``score_many``); the score file is in protocol order either way.

    Files that cannot be decoded are left out of the score file and returned in ``errors``.
    """
    from voiceguard.metrics.scores import ScoredTrial, write_cm_scores
    from voiceguard.protocols import read_protocol

    trials = read_protocol(protocol, protocol_format)
    paths = [t.audio_path(audio_dir, ext) for t in trials]
    rows, errors = [], []
    job = ScoreJob(loaded.detector, loaded.calibration, aggregate=aggregate, workers=workers)
    for t, s in zip(trials, score_many(job, paths, executor, progress)):
        if s.result is None:
            errors.append((s.source, s.error or "unreadable"))
            continue
        rows.append(ScoredTrial(t.utt_id, s.result.llr if llr else s.result.score, t.label, t.attack, t.condition))
    write_cm_scores(out, rows, columns)
    return ProtocolScores(str(out), len(trials), len(rows), tuple(errors))
