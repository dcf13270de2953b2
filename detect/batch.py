"""Scoring many files: decoding in a thread pool (both cores work) while the model scores windows
batched across files.  Every file yields either a ``FileScore`` or the error that made it unusable."""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from voiceguard.audio import AudioInfo, audio_info, load_audio
from voiceguard.errors import VoiceguardError, per_file

from .scoring import Calibration, FileScore, fit_window, summarize_windows, window_starts

SR = 16000


@dataclass(frozen=True)
class Scored:
    """One input: its score, or why it could not be scored."""

    source: str
    duration_s: float | None
    result: FileScore | None
    error: str | None = None
    info: AudioInfo | None = None  # the file as stored (rate, channels, format)


MIN_SECONDS = 0.25  # shorter audio is reported, not scored: a window of repeats says nothing


def decode(path: str | os.PathLike) -> tuple[np.ndarray, AudioInfo]:
    """The file at 16 kHz mono, and its header."""
    info = audio_info(path)
    return load_audio(path, SR, mono=True, min_seconds=MIN_SECONDS, purpose="spoof detection")[0], info


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
    ``decode(path)`` returns 16 kHz mono audio, or ``(audio, AudioInfo)``, or raises a VoiceguardError."""
    win = int(detector.input_samples)
    hop = hop or win // 2
    if not 0 < hop <= win:
        raise ValueError(f"hop must be 1..{win} samples (a longer hop leaves parts of files unscored), got {hop}")
    pending: list[tuple[str, np.ndarray, list[int], AudioInfo | None]] = []
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
        for src, audio, starts, info in pending:
            fs = summarize_windows(raw[i:i + len(starts)], starts, audio.size, SR, win, calibration=calibration,
                                   threshold=threshold, aggregate=aggregate)
            i += len(starts)
            yield Scored(src, round(audio.size / SR, 3), fs, None, info)
        pending, n_windows = [], 0

    for src, got in _prefetched(list(sources), lambda p: per_file(decode, p, "decoding"), workers):
        if isinstance(got, VoiceguardError):
            yield from flush()  # keep the output in input order
            yield Scored(str(src), None, None, got.reason)
            continue
        audio, info = got if isinstance(got, tuple) else (got, None)
        audio = np.asarray(audio, dtype=np.float32).ravel()
        starts = window_starts(audio.size, win, hop)
        pending.append((str(src), audio, starts, info))
        n_windows += len(starts)
        if n_windows >= batch_windows:
            yield from flush()
    yield from flush()


@dataclass(frozen=True)
class ProtocolScores:
    out: str
    n_trials: int
    n_scored: int
    errors: tuple[tuple[str, str], ...]


def score_protocol(loaded, protocol: str | os.PathLike, audio_dir: str | os.PathLike | None,
                   out: str | os.PathLike, *, ext: str = ".flac", columns: int = 4, llr: bool = False,
                   aggregate: str = "mean", workers: int = 2, progress: bool = False) -> ProtocolScores:
    """Score every trial of ``protocol`` into an official-format score file (written atomically).

    Files that cannot be decoded are left out of the score file and returned in ``errors``.
    """
    from tqdm import tqdm

    from voiceguard.eval.scores import ScoredTrial, write_cm_scores
    from voiceguard.protocols import read_protocol

    trials = read_protocol(protocol)
    paths = [t.audio_path(audio_dir, ext) for t in trials]
    rows, errors = [], []
    scored = score_files(loaded.detector, paths, calibration=loaded.calibration, aggregate=aggregate,
                         workers=workers)
    for t, s in tqdm(zip(trials, scored), total=len(trials), desc="score", unit="file", disable=not progress):
        if s.result is None:
            errors.append((s.source, s.error or "unreadable"))
            continue
        rows.append(ScoredTrial(t.utt_id, s.result.llr if llr else s.result.score, t.label, t.attack, t.condition))
    write_cm_scores(out, rows, columns)
    return ProtocolScores(str(out), len(trials), len(rows), tuple(errors))
