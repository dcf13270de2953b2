"""Files -> speaker embeddings, once: decode through voiceguard.audio, cache per content hash, skip bad files.

Cache layout: ``$VOICEGUARD_CACHE/embeddings/<backend fingerprint>/<sha256[:2]>/<sha256>.npy`` where the
sha256 is that of the file's bytes (or of the float32 samples for in-memory clips), so a renamed file is
a cache hit and an edited one a miss. Writes are atomic; a corrupt entry is recomputed.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voiceguard.audio import SAMPLE_RATE, FileProblem, load_audio
from voiceguard.cards import cache_dir, sha256_file
from voiceguard.errors import VoiceguardError, per_file
from voiceguard.files import atomic_output
from voiceguard.vad import load_vad, speech_mix

from .embedders import SpeakerEmbedder, array_key, check_speech


@dataclass(frozen=True)
class EmbeddingSet:
    """Embeddings of the files that could be used, in input order, and the files that could not."""

    paths: tuple[str, ...]
    embeddings: np.ndarray = field(repr=False)  # [n, dim], L2-normalised
    problems: tuple[FileProblem, ...] = ()
    cached: int = 0  # how many came from the cache

    def index(self) -> dict[str, int]:
        return {p: i for i, p in enumerate(self.paths)}


class EmbeddingCache:
    """One ``.npy`` per (backend fingerprint, content hash)."""

    def __init__(self, fingerprint: str, root: str | os.PathLike | None = None):
        self.dir = Path(root or cache_dir() / "embeddings") / fingerprint

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        p = self._path(key)
        if not p.is_file():
            return None
        try:
            return np.load(p, allow_pickle=False)
        except (OSError, ValueError):  # truncated or foreign file: recompute it
            return None

    def put(self, key: str, emb: np.ndarray) -> None:
        p = self._path(key)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            with atomic_output(p) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, np.asarray(emb, dtype=np.float32), allow_pickle=False)
        except OSError:  # a read-only cache only costs speed
            pass


def decode_voice(path: str | os.PathLike) -> np.ndarray:
    """A file as 16 kHz float32 ``[n]`` for a speaker embedder: decoded by the audio path and down-mixed by
    the channel rule shared with ``scan`` (``voiceguard.vad.speech_mix``: the channel mean, or the channel
    with the most speech when the channels cancel or one is dead / noise only). Raises the audio path's
    ``VoiceguardError``s."""
    audio, _ = load_audio(path, SAMPLE_RATE)
    return speech_mix(audio, SAMPLE_RATE)[0]


def _decode(path: str) -> np.ndarray:
    wav = decode_voice(path)
    check_speech(wav, path)
    return wav


def embed_files(paths: list[str | os.PathLike], embedder: SpeakerEmbedder, *, cache: bool = True,
                cache_root: str | os.PathLike | None = None, batch: int = 16, workers: int = 2,
                progress=None) -> EmbeddingSet:
    """Embed audio files (any format / rate / channels). Bad files are reported in ``problems``, not raised."""
    store = EmbeddingCache(embedder.fingerprint, cache_root) if cache else None
    paths = [str(p) for p in paths]
    results: dict[str, np.ndarray] = {}
    problems: list[FileProblem] = []
    keys: dict[str, str] = {}
    todo: list[str] = []
    for p in paths:
        try:
            keys[p] = sha256_file(p)
        except OSError as e:
            problems.append(FileProblem(p, f"cannot read ({e.strerror or e})"))
            continue
        hit = store.get(keys[p]) if store else None
        if hit is not None and hit.shape == (hit.size,):
            results[p] = hit
        else:
            todo.append(p)
    cached = len(results)
    if todo:
        load_vad()  # multi-channel files need the VAD; load it here, not first in a worker thread
    if progress and len(paths) > len(todo):
        progress(len(paths) - len(todo))  # cache hits and unreadable files are done already
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for i in range(0, len(todo), batch):
            chunk = todo[i:i + batch]
            wavs, ok = [], []
            for p, got in zip(chunk, pool.map(lambda q: per_file(_decode, q, "decoding"), chunk)):
                if isinstance(got, VoiceguardError):
                    problems.append(FileProblem(p, got.reason))
                else:
                    wavs.append(got)
                    ok.append(p)
            for p, emb in _embed_each(embedder, wavs, ok, problems):
                results[p] = emb
                if store:
                    store.put(keys[p], emb)
            if progress:
                progress(len(chunk))
    kept = [p for p in paths if p in results]
    emb = np.stack([results[p] for p in kept]) if kept else np.zeros((0, embedder.dim or 1), np.float32)
    return EmbeddingSet(tuple(kept), emb, tuple(problems), cached)


def _embed_each(embedder: SpeakerEmbedder, wavs: list[np.ndarray], names: list[str],
                problems: list[FileProblem]) -> list[tuple[str, np.ndarray]]:
    """Embed a batch; when one clip fails (e.g. no speech after VAD), retry one by one to isolate it."""
    if not wavs:
        return []
    try:
        return list(zip(names, embedder.embed_batch(wavs, names)))
    except Exception:  # noqa: BLE001 - one clip failed: embed one by one so only that clip is reported
        out = []
        for w, n in zip(wavs, names):
            got = per_file(lambda _: embedder.embed(w, n), n, "embedding")
            if isinstance(got, VoiceguardError):
                problems.append(FileProblem(n, got.reason))
            else:
                out.append((n, got))
        return out


def embed_arrays(wavs: list[np.ndarray], embedder: SpeakerEmbedder, names: list[str] | None = None, *,
                 cache: bool = True, cache_root: str | os.PathLike | None = None) -> EmbeddingSet:
    """Embed in-memory 16 kHz mono clips (e.g. watermarked audio), cached by a hash of their samples."""
    names = names or [f"clip{i}" for i in range(len(wavs))]
    store = EmbeddingCache(embedder.fingerprint, cache_root) if cache else None
    out: dict[str, np.ndarray] = {}
    problems: list[FileProblem] = []
    keys = {n: array_key(w) for w, n in zip(wavs, names)}
    todo: list[tuple[np.ndarray, str]] = []
    for w, n in zip(wavs, names):
        hit = store.get(keys[n]) if store else None
        if hit is not None:
            out[n] = hit
        else:
            todo.append((w, n))
    cached = len(out)
    good = []
    for w, n in todo:
        try:
            check_speech(w, n)
            good.append((w, n))
        except VoiceguardError as e:
            problems.append(FileProblem(n, e.reason))
    for n, emb in _embed_each(embedder, [w for w, _ in good], [n for _, n in good], problems):
        out[n] = emb
        if store:
            store.put(keys[n], emb)
    kept = [n for n in names if n in out]
    emb = np.stack([out[n] for n in kept]) if kept else np.zeros((0, embedder.dim or 1), np.float32)
    return EmbeddingSet(tuple(kept), emb, tuple(problems), cached)


__all__ = ["EmbeddingSet", "EmbeddingCache", "embed_files", "embed_arrays", "decode_voice"]
