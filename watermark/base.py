"""The watermark engine protocol, its registry, the one getter, and the machinery every engine shares.

``load_watermarker(engine, **options)`` is the one way to get an engine (``WATERMARKERS`` lists the names;
``import voiceguard.watermark`` registers every engine).  What callers use is ``Watermarker``'s public
surface (see its docstring).  An engine subclass implements only the subclass contract, at the model rate
(``voiceguard.audio.SAMPLE_RATE``, mono):

* ``watermark_blocks(x [B, n], bits [raw_bits]) -> w [B, n]``: the watermark signal for audio blocks;
* ``frame_scores(x [n]) -> (presence [F], bit_logits [F, raw_bits])``: per-frame (50 Hz) watermark
  presence probability and bit logits;
* optionally ``load(need=..., **options)``: the engine from ``load_watermarker``'s options.

Everything else lives here once: any sample rate (the watermark is made at 16 kHz and added, resampled,
at the native rate, so the band above 8 kHz is untouched), multichannel input (the same mark on every
channel, computed from the mix), int and float input, long files in fixed blocks cross-faded into each
other (the model sees one block at a time; the array API holds the whole input, ``stream()`` does not, and
it uses the same blocks, so a streamed embed equals a whole-file one),
and detection: 1-second sliding windows, a calibrated threshold, message decoding pooled over the
frames where the mark is present, a binomial p-value against an expected message, and segments.

Input policy (every entry point: ``embed``, ``detect``, ``embed_batch``, ``detect_batch``, ``stream().push``):
arrays are ``[samples]`` or 2-D in the layout named by ``layout`` (``"channels_first"``: ``[channels,
samples]``, the default; ``"channels_last"``: ``[samples, channels]``, as soundfile and gradio give it);
a shape that cannot be audio in that layout (more than ``MAX_CHANNELS`` channels, or more channels than
samples) is refused with ``AudioArrayError`` saying how to pass the other layout; float samples must be
in [-1, 1] scale (``voiceguard.audio.check_sample_range``: ``AudioRangeError`` / ``NonFiniteAudioError``);
``embed`` refuses audio shorter than the engine's ``min_seconds`` (``AudioTooShortError``).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from voiceguard.audio import (MAX_CHANNELS, SAMPLE_RATE, as_channels_first, check_sample_range, require_duration,
                              resample)
from voiceguard.errors import AudioError, VoiceguardError
from voiceguard.metrics.watermark import match_p_value
from voiceguard.registry import Registry

WATERMARKERS: Registry[type["Watermarker"]] = Registry("watermark engine")

FRAME_RATE = 50  # presence frames per second (hop 320 samples at 16 kHz)
HOP = SAMPLE_RATE // FRAME_RATE


register = WATERMARKERS.register  # class decorator: WATERMARKERS[cls.name] = cls

#: array layouts the API accepts for 2-D input
LAYOUTS = ("channels_first", "channels_last")
_LAYOUT_SHAPE = {"channels_first": "[channels, samples]", "channels_last": "[samples, channels]"}
_OTHER = {"channels_first": "channels_last", "channels_last": "channels_first"}


class MessageError(VoiceguardError, ValueError):
    """A watermark message that is not a number, or does not fit in the engine's bits (also a ``ValueError``)."""


class EngineOptionError(VoiceguardError, TypeError):
    """An option the named watermark engine does not take (also a ``TypeError``); the message lists its options."""


class AudioArrayError(AudioError, ValueError):
    """An array that is not audio as given: empty, not 1-D/2-D, not a real number type, a shape that cannot
    be audio in the stated ``layout``, or a bad sample rate (also a ``ValueError``)."""


def check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(map(repr, LAYOUTS))}, got {layout!r}")
    return layout


def _check_rate(sample_rate, source: str) -> int:
    try:
        ok = not isinstance(sample_rate, bool) and float(sample_rate).is_integer() and sample_rate > 0
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise AudioArrayError(f"sample rate must be a positive whole number of Hz, got {sample_rate!r}",
                              source=source)
    return int(sample_rate)


def _real_array(audio, source: str) -> np.ndarray:
    x = np.asarray(audio)
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)) or x.dtype == np.bool_:
        raise AudioArrayError(f"samples must be int or float, got dtype {x.dtype}", source=source)
    return x


def to_channels_first(audio: np.ndarray, layout: str = "channels_first", *,
                      source: str = "audio array") -> np.ndarray:
    """Validate an API input and return it as float32 ``[channels, samples]`` in [-1, 1] scale.

    Args:
        audio: ``[samples]``, or 2-D in ``layout``: ``"channels_first"`` ``[channels, samples]`` or
            ``"channels_last"`` ``[samples, channels]``; int (scaled by its dtype) or float in [-1, 1] scale.
        layout: how to read a 2-D array.
        source: name used in error messages (a file name, or ``"audio array"``).

    Raises:
        AudioArrayError: empty, not 1-D/2-D, not int/float, or more channels than ``MAX_CHANNELS`` or than
            samples in the given layout (the message names the expected layout and the other one).
        AudioRangeError, NonFiniteAudioError: float samples out of range or not finite.
    """
    layout = check_layout(layout)
    x = _real_array(audio, source)
    if x.ndim not in (1, 2):
        raise AudioArrayError(f"shape {x.shape} is not audio: expected [samples] or {_LAYOUT_SHAPE[layout]} "
                              f"(layout={layout!r})", source=source)
    if x.ndim == 2:
        if layout == "channels_last":
            x = x.T
        channels, samples = x.shape
        if channels > MAX_CHANNELS or (channels > samples and samples > 0):
            shown = x.shape if layout == "channels_first" else x.shape[::-1]
            raise AudioArrayError(
                f"shape {shown} read as {channels} channels of {samples} samples: expected {_LAYOUT_SHAPE[layout]} "
                f"(layout={layout!r}, at most {MAX_CHANNELS} channels); pass layout={_OTHER[layout]!r} for "
                f"{_LAYOUT_SHAPE[_OTHER[layout]]} arrays", source=source)
    if x.size == 0:
        raise AudioArrayError("audio is empty (0 samples)", source=source)
    check_sample_range(x, source=source)
    return as_channels_first(x)


# --------------------------------------------------------------------------- messages
def parse_message(message: int | str | None, nbits: int = 16) -> int | None:
    """``"0xBEEF"``, ``"48879"``, ``"0b1011"`` or an int -> int in [0, 2**nbits); None stays None.

    Parse a message once, where it enters (the CLI's ``--message``, ``voiceguard.api``); an int passed on
    is only range-checked again.

    Raises:
        MessageError: not a number, or out of range (a ``VoiceguardError`` and a ``ValueError``).
    """
    if message is None:
        return None
    if isinstance(message, str):
        text = message.strip().lower().replace("_", "")
        try:
            value = int(text, 0)
        except ValueError:
            raise MessageError(f"message {message!r} is not a number (use e.g. 0xBEEF or 48879)") from None
    else:
        value = int(message)
    if not 0 <= value < 2 ** nbits:
        raise MessageError(f"message {message!r} does not fit in {nbits} bits (0 to {2 ** nbits - 1})")
    return value


def message_bits(value: int, nbits: int = 16) -> np.ndarray:
    """Bits of ``value``, most significant first."""
    return np.array([(value >> (nbits - 1 - i)) & 1 for i in range(nbits)], dtype=np.int64)


def bits_value(bits: np.ndarray) -> int:
    return int("".join(str(int(b)) for b in bits), 2)


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class WatermarkSegment:
    start: float
    end: float
    presence: float  # mean presence probability inside

    def to_dict(self) -> dict:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "presence": round(self.presence, 4)}


@dataclass(frozen=True)
class DetectionResult:
    """What a detector says of one piece of audio."""

    engine: str
    model: str
    detected: bool
    probability: float  # highest mean presence over any 1-second window (whole clip if shorter)
    threshold: float
    message: int | None  # the message, only when it passed the integrity check (see ``message_status``)
    bits: tuple[int, ...]
    bit_confidence: tuple[float, ...]  # |2 p(bit=1) - 1| per bit
    p_value: float | None  # chance that a random message matches ``expected`` as well (None: nothing expected)
    expected: int | None
    segments: tuple[WatermarkSegment, ...]
    duration: float
    frame_rate: int = FRAME_RATE
    #: "ok" (message passed the integrity check), "unreadable" (mark present, check failed), "unverified"
    #: (mark present, the engine carries no check value, so no message is reported), "none" (no mark)
    message_status: str = "none"
    bits_corrected: int | None = None  # hard bits that differed from the accepted codeword (coded engines)
    #: playback-speed factor at which the mark was found (1.0 unless an engine's speed search found it at
    #: another one: 1.05 = the audio plays 5 % faster than when it was marked)
    speed: float = 1.0
    presence: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), repr=False, compare=False)

    @property
    def verdict(self) -> str:
        """One word for a table: the message (``"0xBEEF"``) when verified, else ``message_status``."""
        return self.message_hex if self.message is not None else self.message_status

    @property
    def message_hex(self) -> str | None:
        return None if self.message is None else f"0x{self.message:0{len(self.bits) // 4}X}"

    @property
    def bits_matched(self) -> int | None:
        if self.expected is None:
            return None
        return int(sum(int(b) == int(e) for b, e in zip(self.bits, message_bits(self.expected, len(self.bits)))))

    def to_dict(self, *, presence: bool = False) -> dict:
        d: dict[str, Any] = {
            "engine": self.engine, "model": self.model, "detected": self.detected,
            "probability": round(self.probability, 5), "threshold": round(self.threshold, 5),
            "message": self.message_hex, "bits": "".join(map(str, self.bits)),
            "bit_confidence": [round(c, 3) for c in self.bit_confidence],
            "expected": None if self.expected is None else f"0x{self.expected:0{len(self.bits) // 4}X}",
            "bits_matched": self.bits_matched, "p_value": self.p_value,
            "segments": [s.to_dict() for s in self.segments], "duration": round(self.duration, 3),
            "message_status": self.message_status, "bits_corrected": self.bits_corrected,
            "speed": round(self.speed, 5),
        }
        if presence:
            d["frame_rate"] = self.frame_rate
            d["presence"] = [round(float(p), 4) for p in self.presence]
        return d


# --------------------------------------------------------------------------- blocks
def block_starts(n: int, block: int, hop: int) -> list[int]:
    """Starts of the blocks covering ``n`` samples; the last block is the first reaching the end."""
    starts = [0]
    while starts[-1] + block < n:
        starts.append(starts[-1] + hop)
    return starts


def crossfade_weights(length: int, overlap: int, first: bool, last: bool) -> np.ndarray:
    """Raised-cosine ramps over ``overlap`` samples at the inner edges; adjacent blocks' ramps sum to 1
    (smooth, so the cross-fade adds nothing audible, nor anything above the model's band)."""
    w = np.ones(length, dtype=np.float32)
    if overlap > 0:
        ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(overlap) + 0.5) / overlap)).astype(np.float32)
        if not first:
            w[:min(overlap, length)] *= ramp[:min(overlap, length)]
        if not last and length >= overlap:
            w[-overlap:] *= ramp[::-1]
    return w


def smooth_segments(presence: np.ndarray, frame_rate: int, *, threshold: float = 0.5, median: int = 5,
                    min_seconds: float = 0.2) -> tuple[WatermarkSegment, ...]:
    """Runs of frames with presence above ``threshold`` (median-smoothed), at least ``min_seconds`` long."""
    if presence.size == 0:
        return ()
    on = presence > threshold
    if median > 1 and on.size >= median:
        from scipy.ndimage import median_filter

        on = median_filter(on.astype(np.uint8), size=median, mode="nearest").astype(bool)
    segments = []
    edges = np.flatnonzero(np.diff(np.concatenate([[0], on.astype(np.int8), [0]])))
    for a, b in zip(edges[::2], edges[1::2]):
        if (b - a) / frame_rate >= min_seconds:
            segments.append(WatermarkSegment(float(a / frame_rate), float(b / frame_rate), float(presence[a:b].mean())))
    return tuple(segments)


def window_score(presence: np.ndarray, frames: int) -> float:
    """Highest mean presence over ``frames`` consecutive frames (the mean of all when shorter)."""
    if presence.size == 0:
        return 0.0
    if presence.size <= frames:
        return float(presence.mean())
    c = np.concatenate([[0.0], np.cumsum(presence, dtype=np.float64)])
    return float(np.max(c[frames:] - c[:-frames]) / frames)


# --------------------------------------------------------------------------- engine base
class Watermarker:
    """Base class of every watermark engine; get one with ``load_watermarker``.

    What callers use (the public surface, the same for every engine):

    * ``embed(audio, sample_rate, message=None) -> marked`` and ``embed_batch(audios, sample_rate, messages)``;
    * ``detect(audio, sample_rate, expected=None) -> DetectionResult`` and ``detect_batch(...)``;
    * ``stream(sample_rate, message, channels) -> StreamingEmbedder`` (chunks in, marked chunks out);
    * ``random_message(seed)``, and the attributes ``name`` (registry name), ``model`` (the loaded model's
      name, e.g. its cards), ``nbits`` (message bits), ``threshold`` (detection threshold on the 1 s window
      presence), ``strength`` (watermark amplitude factor), ``min_seconds`` (shortest audio ``embed``
      takes), ``calibration`` (the detector card's calibration record, or ``{}``).

    The subclass contract (engine code only; callers never call these): ``watermark_blocks`` and
    ``frame_scores`` at the model rate (see the module docstring), ``name`` and ``min_seconds`` as class
    attributes, and optionally the classmethod ``load``.  Everything else (sample rates, channels, dtypes,
    blocks and cross-fades, windows, thresholds, message decoding) is done here once.
    """

    name: ClassVar[str] = "watermarker"
    nbits: int = 16  # payload (message) bits
    #: the integrity code (``voiceguard.watermark.codes.MessageCode``) or None: an engine whose raw bits are
    #: the payload itself (the 16-bit AudioSeal format) has no check value, so it never reports a message
    #: (``message_status="unverified"``), only its bits and their confidences
    code = None
    block_seconds: float = 1.0
    overlap_seconds: float = 0.1
    window_seconds: float = 1.0
    max_batch: int = 16
    #: Shortest audio, in seconds, this engine marks so that ``detect`` finds it (measured per engine on
    #: speech; ``tests/test_watermark_inputs.py`` sweeps lengths from here up). ``embed`` refuses shorter
    #: audio with ``AudioTooShortError`` instead of returning a copy that would read as not watermarked.
    min_seconds: float = 1.0

    def __init__(self, *, threshold: float = 0.5, strength: float = 1.0, model: str = "",
                 calibration: dict | None = None):
        if strength <= 0:
            raise ValueError(f"strength must be > 0, got {strength}")
        self.threshold = float(threshold)
        self.strength = float(strength)
        self.model = model or self.name
        self.calibration = calibration or {}

    # ---- the subclass contract (engines implement these; callers use the methods below)
    @classmethod
    def load(cls, *, need: str = "both") -> "Watermarker":
        """Subclass contract, called only by ``load_watermarker`` (not a public getter): the engine from its
        options.  An engine declares its options as keyword parameters with their defaults (that list is
        what ``load_watermarker`` accepts and ``engine_options`` reports); ``need`` ("both", "embed" or
        "detect") lets it load only the half it is asked for."""
        raise NotImplementedError

    def watermark_blocks(self, x: np.ndarray, bits: np.ndarray) -> np.ndarray:
        """Subclass contract: float32 ``x [B, n]`` at the model rate (1 s blocks, zero-padded) and ``bits
        [raw_bits]`` (0/1: a coded engine's codeword, else the message, most significant first) -> the
        watermark ``[B, n]`` to add, before ``strength``."""
        raise NotImplementedError

    def frame_scores(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Subclass contract: mono float32 ``x [n]`` at the model rate -> ``presence [F]`` (probability that
        the frame is watermarked) and ``bit_logits [F, raw_bits]``, at ``FRAME_RATE`` frames per second."""
        raise NotImplementedError

    @property
    def raw_bits(self) -> int:
        """Bits the engine carries: the codeword length for a coded engine, else ``nbits``."""
        return self.code.n if self.code is not None else self.nbits

    def encode_bits(self, message: int) -> np.ndarray:
        """The raw bits ``[raw_bits]`` (0/1 int64) that carry ``message``: its codeword, or its bits."""
        return self.code.encode(message) if self.code is not None else message_bits(message, self.nbits)

    # ---- embedding
    def random_message(self, seed: int | None = None) -> int:
        """A uniformly random message in [0, 2**nbits) (``seed`` None: fresh entropy)."""
        return int(np.random.default_rng(seed).integers(0, 2 ** self.nbits))

    def block_sizes(self, sample_rate: int) -> tuple[int, int]:
        block = int(round(self.block_seconds * sample_rate))
        overlap = int(round(self.overlap_seconds * sample_rate))
        return block, overlap

    def block_watermarks(self, blocks: list[np.ndarray], sample_rate: int, bits: np.ndarray) -> list[np.ndarray]:
        """Watermark (native rate, mono) for each mono block, each padded to the full block at the model rate."""
        block, _ = self.block_sizes(sample_rate)
        n16 = int(round(self.block_seconds * SAMPLE_RATE))
        out: list[np.ndarray] = []
        for i in range(0, len(blocks), self.max_batch):
            group = blocks[i:i + self.max_batch]
            x16 = np.zeros((len(group), n16), dtype=np.float32)
            for j, b in enumerate(group):
                padded = np.zeros(block, dtype=np.float32)
                padded[:len(b)] = b
                r = resample(padded, sample_rate, SAMPLE_RATE)
                x16[j, :min(n16, len(r))] = r[:n16]
            w16 = self.watermark_blocks(x16, bits) * self.strength
            for j, b in enumerate(group):
                w = resample(np.ascontiguousarray(w16[j]), SAMPLE_RATE, sample_rate)
                w = np.pad(w, (0, max(0, block - len(w))))[:block]
                out.append(w[:len(b)].astype(np.float32))
        return out

    def embed(self, audio: np.ndarray, sample_rate: int, message: int | str | None = None, *,
              layout: str = "channels_first", source: str | None = None) -> np.ndarray:
        """Watermarked copy of ``audio``, same shape, layout and dtype.

        Args:
            audio: ``[n]``, ``[C, n]`` (``layout="channels_first"``) or ``[n, C]`` (``"channels_last"``);
                int (any width, scaled by its dtype) or float in [-1, 1] scale; at least ``min_seconds``.
            sample_rate: Hz, any rate (the mark is made at 16 kHz and added at the native rate).
            message: an int in [0, 2**nbits), or a string such as ``"0xBEEF"`` (parsed here with
                ``parse_message``: callers that parsed it already pass the int); None embeds a random one
                (read it back with ``detect``).
            layout: how to read a 2-D ``audio``.
            source: name for error messages (default ``"audio array"``).

        Raises:
            AudioArrayError: not audio in ``layout`` (see ``to_channels_first``), empty, bad sample rate.
            AudioRangeError, NonFiniteAudioError: float samples outside [-1, 1] scale (e.g. int16-scale
                floats) or NaN/Inf: refused, never rescaled.
            AudioTooShortError: shorter than ``min_seconds``.
            MessageError: a message that is not a number or does not fit in ``nbits`` (a ``ValueError``).
        """
        src = source or "audio array"
        value = parse_message(message, self.nbits)
        value = self.random_message() if value is None else value
        x = _real_array(audio, src)
        xf = to_channels_first(x, layout, source=src)
        sample_rate = _check_rate(sample_rate, src)
        require_duration(xf.shape[-1], sample_rate, self.min_seconds, source=src,
                         purpose=f"the {self.name} watermark")
        mono = xf.mean(axis=0) if xf.shape[0] > 1 else xf[0]
        block, overlap = self.block_sizes(sample_rate)
        starts = block_starts(len(mono), block, block - overlap)
        w = np.zeros(len(mono), dtype=np.float32)
        blocks = [mono[s:s + block] for s in starts]
        marks = self.block_watermarks(blocks, sample_rate, self.encode_bits(value))
        for k, (s, m) in enumerate(zip(starts, marks)):
            w[s:s + len(m)] += m * crossfade_weights(len(m), overlap, k == 0, k == len(starts) - 1)
        return restore_dtype(xf + w[None, :], x, layout)

    def embed_batch(self, audios: list[np.ndarray], sample_rate: int,
                    messages: list[int | str | None] | None = None, *,
                    layout: str = "channels_first") -> list[np.ndarray]:
        """``embed`` for each clip (errors name the clip: ``"audio array 3"``); same arguments and errors."""
        messages = messages if messages is not None else [None] * len(audios)
        if len(messages) != len(audios):
            raise ValueError(f"{len(audios)} clips but {len(messages)} messages")
        return [self.embed(a, sample_rate, m, layout=layout, source=f"audio array {i}")
                for i, (a, m) in enumerate(zip(audios, messages))]

    def stream(self, sample_rate: int, message: int | str | None = None, channels: int = 1, *,
               layout: str = "channels_first"):
        """A ``StreamingEmbedder``: push chunks (``[k]`` or 2-D in ``layout``), get watermarked chunks
        (latency under one block). ``flush()`` raises ``AudioTooShortError`` when the whole stream was
        shorter than ``min_seconds`` (what was returned is then not reliably marked)."""
        from .stream import StreamingEmbedder

        value = parse_message(message, self.nbits)
        return StreamingEmbedder(self, sample_rate, self.random_message() if value is None else value, channels,
                                 layout=layout)

    # ---- detection
    def detect(self, audio: np.ndarray, sample_rate: int, expected: int | str | None = None, *,
               layout: str = "channels_first", source: str | None = None) -> DetectionResult:
        """Is ``audio`` watermarked, where, and with which message.

        ``audio``, ``sample_rate``, ``layout``, ``source`` and the errors as for ``embed`` (no minimum
        length: a clip shorter than ``min_seconds`` is analysed, but a mark in it may be missed);
        ``expected`` adds ``bits_matched`` and ``p_value``.
        """
        src = source or "audio array"
        xf = to_channels_first(audio, layout, source=src)
        sample_rate = _check_rate(sample_rate, src)
        mono = xf.mean(axis=0) if xf.shape[0] > 1 else xf[0]
        x16 = resample(np.ascontiguousarray(mono), sample_rate, SAMPLE_RATE)
        if len(x16) == 0:  # e.g. 2 samples at 800 MHz: nothing left at 16 kHz to analyse
            require_duration(0, SAMPLE_RATE, 1 / SAMPLE_RATE, source=src, purpose=f"the {self.name} watermark detector")
        return self.detect_model_rate(x16, len(mono) / sample_rate, parse_message(expected, self.nbits))

    def detect_model_rate(self, x16: np.ndarray, duration: float, expected: int | None) -> DetectionResult:
        """``detect`` on mono float32 ``x16 [n]`` at the model rate (``duration``: of the input, seconds).
        An engine may override it to search further (the spread-spectrum speed search)."""
        presence, bit_logits = self.frame_scores(x16)
        return self.result(presence, bit_logits, duration, expected)

    def detect_batch(self, audios: list[np.ndarray], sample_rate: int,
                     expected: int | str | None = None, *, layout: str = "channels_first") -> list[DetectionResult]:
        """``detect`` for each clip (errors name the clip: ``"audio array 3"``)."""
        return [self.detect(a, sample_rate, expected, layout=layout, source=f"audio array {i}")
                for i, a in enumerate(audios)]

    def result(self, presence: np.ndarray, bit_logits: np.ndarray, duration: float,
               expected: int | None) -> DetectionResult:
        """The ``DetectionResult`` from per-frame ``presence [F]`` and raw ``bit_logits [F, raw_bits]``.

        Presence: the highest 1 s window mean against ``threshold``.  Bits: the logits pooled over the frames
        where the mark is present (presence > 0.5, weighted by it).  A coded engine decodes the pooled
        logits (``MessageCode.decode``): the message is reported only when the integrity check passes
        (``message_status`` "ok"), else "unreadable"; an uncoded engine reports "unverified" and no message.
        ``bits`` / ``bit_confidence`` are the payload bits (descrambled systematic bits for a coded engine).
        """
        score = window_score(presence, int(self.window_seconds * FRAME_RATE))
        detected = bool(score >= self.threshold)
        on = presence > 0.5
        weights = presence * on if on.any() else presence
        if weights.sum() <= 0:
            weights = np.ones_like(presence)
        pooled = (bit_logits * weights[:, None]).sum(0) / weights.sum()
        pooled = np.nan_to_num(pooled.astype(np.float64), nan=0.0, posinf=50.0, neginf=-50.0)
        message, status, corrected = None, "none", None
        if self.code is not None:
            decoded = self.code.decode(pooled)
            payload = decoded.payload_llr.astype(np.float64)
            if detected:
                message, corrected = decoded.message, decoded.distance
                status = "ok" if decoded.ok else "unreadable"
        else:
            payload = pooled
            status = "unverified" if detected else "none"
        p1 = 1 / (1 + np.exp(-np.clip(payload, -50, 50)))
        bits = (p1 > 0.5).astype(np.int64)
        p_value = None
        if expected is not None:
            p_value = match_p_value(int((bits == message_bits(expected, self.nbits)).sum()), self.nbits)
        return DetectionResult(
            engine=self.name, model=self.model, detected=detected, probability=score,
            threshold=self.threshold, message=message,
            bits=tuple(int(b) for b in bits), bit_confidence=tuple(float(abs(2 * p - 1)) for p in p1),
            p_value=p_value, expected=expected, segments=smooth_segments(presence, FRAME_RATE),
            duration=duration, presence=presence.astype(np.float32), message_status=status,
            bits_corrected=corrected)


def restore_dtype(y: np.ndarray, like: np.ndarray, layout: str = "channels_first") -> np.ndarray:
    """``[C, n]`` float result back to the input's shape (``[n]``, ``[C, n]``, or ``[n, C]`` for
    ``layout="channels_last"``) and dtype."""
    y = y[0] if like.ndim == 1 else (y.T if layout == "channels_last" else y)
    if np.issubdtype(like.dtype, np.integer):
        info = np.iinfo(like.dtype)
        if info.min < 0:
            scale = float(max(abs(info.min), info.max + 1))
            return np.clip(np.round(y * scale), info.min, info.max).astype(like.dtype)
        half = (info.max + 1) / 2
        return np.clip(np.round(y * half + half), info.min, info.max).astype(like.dtype)
    return y.astype(like.dtype if np.issubdtype(like.dtype, np.floating) else np.float32, copy=False)


#: the engine ``embed``, ``detect`` and ``scan`` use when none is named: the one that wins the README's
#: watermark benchmark (robustness first, then quality, then speed)
DEFAULT_ENGINE = "spread-spectrum"

#: what ``load_watermarker(need=...)`` asks an engine for
NEEDS = ("both", "embed", "detect")


def engine_options(engine: str) -> list[str]:
    """The options ``load_watermarker`` takes for ``engine`` (the keyword parameters of its ``load``).

    Raises:
        UnknownNameError: ``engine`` is not a registered engine (the message lists them).
    """
    params = inspect.signature(WATERMARKERS[engine].load).parameters.values()
    return [p.name for p in params if p.name != "need" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def load_watermarker(engine: str = DEFAULT_ENGINE, *, need: str = "both", **options: Any) -> Watermarker:
    """The one way to get a watermark engine, ready to use.

    Args:
        engine: a registered name (``sorted(WATERMARKERS)``): ``"spread-spectrum"`` (``DEFAULT_ENGINE``: the
            coded DSP watermark, no model) or ``"audioseal"`` (the shipped AudioSeal-format model by default,
            offline; its 16 raw bits carry no check value, so it reports no message, see ``result``).
        need: ``"both"``, or ``"embed"`` / ``"detect"`` to load only what that task needs (audioseal: the
            generator / the detector alone; the other half's option is then ignored).
        **options: engine settings; an option given as None means the engine's default.
            audioseal: ``generator``, ``detector`` (card names or audioseal-format ``.pth`` paths; default the
            shipped cards), ``threshold`` (default: the detector card's calibrated one), ``strength`` and
            ``snr_db`` (default: the generator card's), ``model`` (a display name);
            spread-spectrum: ``key`` (the secret, default 0x5EED), ``snr_db`` (default 28), ``threshold``
            (default: the calibrated one in ``watermark/cards/spread_spectrum.yaml``), ``strength`` (default 1).

    Raises:
        UnknownNameError: unknown ``engine`` (lists the engines); ``EngineOptionError``: an option this engine
        does not take (lists its options); ``ModelCardError``: a card or checkpoint that cannot be loaded;
        ``ValueError``: a bad ``need`` or ``strength <= 0``.
    """
    cls = WATERMARKERS[engine]
    if need not in NEEDS:
        raise ValueError(f"need must be one of {', '.join(map(repr, NEEDS))}, got {need!r}")
    given = {k: v for k, v in options.items() if v is not None}
    known = engine_options(engine)
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise EngineOptionError(f"the {engine} watermark engine takes no option {', '.join(map(repr, unknown))} "
                                f"(its options: {', '.join(known)})")
    return cls.load(need=need, **given)
