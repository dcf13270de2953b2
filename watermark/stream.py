"""Streaming embedding for generators that emit audio chunk by chunk (a TTS server).

The stream cuts the audio into exactly the blocks a whole-file ``embed`` uses and cross-fades them the
same way, so the concatenated output equals the whole-file result (to float rounding).  A block is
processed as soon as one sample past it has arrived (then it is known not to be the last), so output
lags input by at most one block (``block_seconds``, 1 s by default) plus the chunk size.
"""
from __future__ import annotations

import numpy as np

from voiceguard.audio import MAX_CHANNELS, as_channels_first, check_sample_range, require_duration

from .base import (_LAYOUT_SHAPE, _OTHER, AudioArrayError, Watermarker, _check_rate, _real_array, check_layout,
                   crossfade_weights, restore_dtype)


class StreamingEmbedder:
    """``push(chunk) -> watermarked samples ready so far``; ``flush() -> the rest``; state across chunks.

    Chunks are ``[k]`` (mono) or 2-D in ``layout`` (``"channels_first"`` ``[channels, k]`` or
    ``"channels_last"`` ``[k, channels]``) with the stream's channel count, int or float in [-1, 1]
    scale; the output has the first chunk's layout and dtype. Errors: ``AudioArrayError`` (wrong shape,
    dtype or channel count; the message names the expected layout), ``AudioRangeError`` /
    ``NonFiniteAudioError`` (float samples out of range), and from ``flush()`` ``AudioTooShortError``
    when the whole stream was shorter than ``engine.min_seconds``.
    """

    def __init__(self, engine: Watermarker, sample_rate: int, message: int, channels: int = 1, *,
                 layout: str = "channels_first"):
        self.layout = check_layout(layout)
        sample_rate = _check_rate(sample_rate, "stream")
        if isinstance(channels, bool) or not isinstance(channels, int) or not 1 <= channels <= MAX_CHANNELS:
            raise AudioArrayError(f"channels must be an integer from 1 to {MAX_CHANNELS}, got {channels!r}",
                                  source="stream")
        self.engine = engine
        self.sample_rate = sample_rate
        self.message = message
        self.channels = channels
        self._total = 0  # samples pushed
        self.block, self.overlap = engine.block_sizes(sample_rate)
        self.hop = self.block - self.overlap
        self._bits = engine.encode_bits(message)
        self._buffer = np.zeros((channels, 0), dtype=np.float32)  # input from the current block start on
        self._carry = np.zeros(0, dtype=np.float32)  # previous block's faded-out tail over the overlap
        self._index = 0  # blocks done
        self._like: np.ndarray | None = None
        self.closed = False

    @property
    def latency_samples(self) -> int:
        """Samples held back at most (one block plus one sample)."""
        return self.block + 1

    def _finish(self, n_out: int, last: bool) -> np.ndarray:
        """Watermark the block at the buffer's start and return its first ``n_out`` final samples."""
        x = self._buffer[:, :self.block]
        mono = x.mean(axis=0) if x.shape[0] > 1 else x[0]
        mark = self.engine.block_watermarks([mono], self.sample_rate, self._bits)[0]
        mark = mark * crossfade_weights(len(mark), self.overlap, self._index == 0, last)
        mark[:len(self._carry)] += self._carry
        out = x[:, :n_out] + mark[None, :n_out]
        self._carry = mark[n_out:].copy()
        self._buffer = self._buffer[:, n_out:]
        self._index += 1
        return out

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Add a chunk (``[k]`` or 2-D in the stream's layout, float or int); returns the samples now final
        (maybe none), in the first chunk's layout and dtype."""
        if self.closed:
            raise RuntimeError("stream already flushed")
        raw = _real_array(chunk, "stream chunk")
        x = raw.T if raw.ndim == 2 and self.layout == "channels_last" else raw
        if x.ndim not in (1, 2) or (x.ndim == 2 and x.shape[0] != self.channels) or \
                (x.ndim == 1 and self.channels != 1):
            raise AudioArrayError(
                f"chunk of shape {raw.shape} does not fit a {self.channels}-channel stream: expected "
                f"{'[samples] or ' if self.channels == 1 else ''}{_LAYOUT_SHAPE[self.layout]} "
                f"(layout={self.layout!r}); pass layout={_OTHER[self.layout]!r} to stream() for "
                f"{_LAYOUT_SHAPE[_OTHER[self.layout]]} chunks", source="stream chunk")
        check_sample_range(x, source="stream chunk")
        c = as_channels_first(x)
        if self._like is None:
            self._like = raw
        self._total += c.shape[1]
        self._buffer = np.concatenate([self._buffer, c], axis=1)
        outs = []
        while self._buffer.shape[1] > self.block:
            outs.append(self._finish(self.hop, last=False))
        return self._out(outs)

    def flush(self) -> np.ndarray:
        """Watermark what is left (the last block) and close the stream."""
        if self.closed:
            raise RuntimeError("stream already flushed")
        self.closed = True
        if self._total:
            require_duration(self._total, self.sample_rate, self.engine.min_seconds, source="stream",
                             purpose=f"the {self.engine.name} watermark")
        outs = [self._finish(self._buffer.shape[1], last=True)] if self._buffer.shape[1] else []
        return self._out(outs)

    def _out(self, outs: list[np.ndarray]) -> np.ndarray:
        y = np.concatenate(outs, axis=1) if outs else np.zeros((self.channels, 0), np.float32)
        like = self._like if self._like is not None else np.zeros((self.channels, 0), np.float32)
        return restore_dtype(y, like, self.layout)
