"""Speech activity (silero-vad) and the speech-aware down-mix used by every speech consumer.

Two questions are answered here, once, for ``voiceguard scan`` (spoof verdicts) and ``voiceguard risk``
(speaker embeddings):

* **Is there speech?**  ``speech_activity`` runs silero-vad (the ONNX model shipped in the
  ``silero-vad`` wheel, checked against ``SILERO_SHA256`` before it is loaded) and returns the detected
  speech spans.  Audio with less than ``MIN_SPEECH_SECONDS`` of detected speech has *no speech*: a spoof
  detector's verdict on silence, a DC level, a tone or hiss says nothing about a voice, so ``scan`` reports
  such a file as ``no-speech`` instead of scoring it.
* **Which signal carries it?**  ``choose_mix`` / ``speech_mix`` turn ``[C, n]`` audio into one channel by
  the *channel rule* (see ``choose_mix``): the channel mean, unless the channels cancel in the mean
  (e.g. right = -left) or some channel holds (almost) no speech (a dead, near-silent or noise-only
  channel); then the channel with the most speech is used instead.

The VAD is silero-vad's *sequence* ONNX model (``silero_vad_16k_sequence.onnx`` through the package's
``SileroVADSequence``): the same network and weights as the streaming ``silero_vad.onnx`` model, giving
bit-identical per-frame probabilities (``tests/test_vad.py`` checks this against ``OnnxWrapper``), but run
as one ONNX call per ~16 s block instead of one Python call per 32 ms frame (about 8x faster; ONNX
Runtime releases the GIL, so decoding threads run it in parallel).  The frame probabilities become speech
spans with silero-vad's own ``get_speech_timestamps_from_probs`` at its default settings (threshold 0.5,
speech chunks of at least 250 ms, 30 ms padding).  The model works at 16 kHz; other rates are resampled
(soxr) for the VAD only.

Importing ``silero_vad`` calls ``torch.set_num_threads(1)`` as a side effect; ``load_vad`` restores
torch's thread count around that import, so using this module never changes it.
"""
from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import as_channels_first, resample
from .errors import ModelCardError
from .audio import SAMPLE_RATE

#: the VAD's working rate
#: less detected speech than this (seconds) is "no speech".  silero-vad keeps speech chunks of at least
#: 250 ms (+ 30 ms padding each side), so one short word passes; silence, DC, tones and hiss detect 0 s.
MIN_SPEECH_SECONDS = 0.3
#: the model file inside the silero-vad wheel, and its pinned sha256 (silero-vad 6.2.3)
SILERO_MODEL = "silero_vad_16k_sequence.onnx"
SILERO_SHA256 = "9ccdacc4719d8aa7e45a77536bfabec45a03ba1f2fad5e241ab4060b24238a85"
#: channel rule: the mean "cancels" when its RMS is below this fraction of the loudest channel's RMS
#: (two identical channels: 1.0; two unrelated channels of equal level: 0.71; right = -left: 0)
CANCEL_RATIO = 0.5
#: channel rule: a channel with less speech than this fraction of the best channel's is "speechless"
SPEECHLESS_RATIO = 0.1

_lock = threading.Lock()
_vad = None  # (SileroVADSequence, get_speech_timestamps_from_probs) once loaded


@dataclass(frozen=True)
class SpeechActivity:
    """What the VAD found in one mono signal.

    Attributes:
        speech_s: seconds of detected speech (sum of ``spans``).
        duration_s: length of the signal in seconds.
        spans: ``(start_s, end_s)`` speech segments, in seconds, in order.
    """

    speech_s: float
    duration_s: float
    spans: tuple[tuple[float, float], ...] = ()

    @property
    def has_speech(self) -> bool:
        """At least ``MIN_SPEECH_SECONDS`` of speech was detected."""
        return self.speech_s >= MIN_SPEECH_SECONDS

    @property
    def reason(self) -> str:
        """``'no speech detected (0.00 s of 5.00 s)'`` -- the one-line reason of a no-speech verdict."""
        return (f"no speech detected ({self.speech_s:.2f} s of {self.duration_s:.2f} s; "
                f"at least {MIN_SPEECH_SECONDS:g} s needed)" if self.speech_s else
                f"no speech detected (0.00 s of {self.duration_s:.2f} s)")


@dataclass(frozen=True)
class Mix:
    """The result of the channel rule (``choose_mix``).

    Attributes:
        audio: float32 ``[1, n]``, the signal to analyse (same rate as the input).
        channel: index of the channel used, or ``None`` when the channel mean is used (mono input too).
        why: empty when the mean is used, else why one channel was picked (for messages and reports).
        activity: speech activity of ``audio``; ``None`` when ``choose_mix(activity=False)`` did not need
            it (mono input, or the mean of several channels).
        channel_speech: seconds of speech found per input channel (empty for mono input).
    """

    audio: np.ndarray
    channel: int | None
    why: str = ""
    activity: SpeechActivity | None = None
    channel_speech: tuple[float, ...] = ()

    @property
    def note(self) -> str | None:
        """``'channel 2 of 2 used: channel 1 has no speech'`` or ``None`` when the mean was used."""
        if self.channel is None:
            return None
        return f"channel {self.channel + 1} of {len(self.channel_speech)} used: {self.why}"


def _model_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ModelCardError("silero-vad is not installed (pip install 'silero-vad>=6.2' onnxruntime)")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / SILERO_MODEL


def check_model_file(path: str | Path, sha256: str | None = None) -> Path:
    """Verify the VAD model file's sha256 (``sha256``, default ``SILERO_SHA256``) before it is loaded.

    Raises:
        ModelCardError: the file is missing or its sha256 differs from ``sha256`` (the message names the
            file, both hashes and how to fix it).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelCardError("silero-vad model file not found (reinstall silero-vad 6.2.3)", source=path)
    sha256 = sha256 or SILERO_SHA256
    h = hashlib.sha256(path.read_bytes()).hexdigest()
    if h != sha256:
        raise ModelCardError(f"sha256 mismatch for the silero-vad model: expected {sha256}, got {h} "
                             "(reinstall silero-vad 6.2.3, or update SILERO_SHA256 after checking the file)",
                             source=path)
    return path


def load_vad():
    """The silero-vad sequence model (loaded once per process after the sha256 check; thread-safe).

    Call it from the main thread before starting worker threads: the first call imports ``silero_vad``,
    whose import sets torch's thread count (restored here before returning).

    Returns:
        ``(model, get_speech_timestamps_from_probs)``.

    Raises:
        ModelCardError: silero-vad missing, or its model file fails the sha256 check.
    """
    global _vad
    with _lock:
        if _vad is None:
            path = check_model_file(_model_path())
            import torch

            threads = torch.get_num_threads()
            try:  # `import silero_vad` runs torch.set_num_threads(1) (silero_vad/model.py)
                from silero_vad.sequence_vad import SileroVADSequence
                from silero_vad.utils_vad import get_speech_timestamps_from_probs
            finally:
                torch.set_num_threads(threads)
            _vad = (SileroVADSequence(str(path), sampling_rate=SAMPLE_RATE), get_speech_timestamps_from_probs)
        return _vad


def speech_activity(audio: np.ndarray, sample_rate: int) -> SpeechActivity:
    """Run silero-vad over a mono signal.

    Args:
        audio: float ``[n]`` or ``[1, n]`` in [-1, 1] scale (finite; the audio loader guarantees both).
        sample_rate: Hz; resampled to 16 kHz for the VAD when different.

    Returns:
        ``SpeechActivity`` with the speech spans in seconds.

    Raises:
        ValueError: more than one channel (use ``choose_mix``).
        ModelCardError: the VAD model cannot be loaded (see ``load_vad``).
    """
    x = as_channels_first(audio)
    if x.shape[0] != 1:
        raise ValueError(f"speech_activity takes one channel, got {x.shape[0]} (use choose_mix)")
    duration = x.shape[1] / sample_rate
    x = np.ascontiguousarray(resample(x, sample_rate, SAMPLE_RATE)[0], dtype=np.float32)
    model, to_spans = load_vad()
    if x.size == 0:
        return SpeechActivity(0.0, round(duration, 3))
    probs = model.audio_forward(x, sampling_rate=SAMPLE_RATE)
    spans = to_spans(probs.tolist(), sampling_rate=SAMPLE_RATE, audio_length_samples=x.size)
    sec = tuple((round(s["start"] / SAMPLE_RATE, 3), round(s["end"] / SAMPLE_RATE, 3)) for s in spans)
    return SpeechActivity(round(float(sum(b - a for a, b in sec)), 3), round(duration, 3), sec)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def choose_mix(audio: np.ndarray, sample_rate: int, *, activity: bool = True) -> Mix:
    """Down-mix ``[C, n]`` audio for a speech model by the channel rule.

    The rule (mono input is returned as is):

    1. run the VAD on every channel;
    2. a channel is *speechless* when its speech is below ``max(MIN_SPEECH_SECONDS, SPEECHLESS_RATIO x``
       the best channel's speech); the mean *cancels* when its RMS is below ``CANCEL_RATIO`` x the
       loudest channel's RMS (right = -left, or a channel in opposite phase);
    3. when some channel has speech and (a channel is speechless or the mean cancels), the channel with
       the most speech is used (ties: the louder, then the first); otherwise the channel mean, as before
       (normal stereo, multi-microphone recordings, all channels silent).

    Args:
        audio: float ``[n]`` or ``[C, n]`` in [-1, 1] scale.
        sample_rate: Hz.
        activity: also return the VAD result of the chosen signal (a VAD pass over it; without it, mono
            input needs no VAD at all and multi-channel input one pass per channel).

    Returns:
        ``Mix`` with the float32 ``[1, n]`` signal, the channel used (``None`` = mean) and why.

    Raises:
        ModelCardError: the VAD model cannot be loaded (see ``load_vad``).
    """
    x = as_channels_first(audio)
    if x.shape[0] == 1:
        return Mix(x, None, activity=speech_activity(x, sample_rate) if activity else None)
    acts = [speech_activity(ch, sample_rate) for ch in x]
    speech = [a.speech_s for a in acts]
    rms = [_rms(ch) for ch in x]
    mean = x.mean(axis=0, keepdims=True, dtype=np.float32)
    best = max(range(len(acts)), key=lambda c: (speech[c], rms[c], -c))
    floor = max(MIN_SPEECH_SECONDS, SPEECHLESS_RATIO * speech[best])
    speechless = [c for c in range(len(acts)) if speech[c] < floor]
    cancels = max(rms) > 0 and _rms(mean) < CANCEL_RATIO * max(rms)
    if acts[best].has_speech and (speechless or cancels):
        if speechless:
            names = ", ".join(str(c + 1) for c in speechless)
            why = f"channel{'s' if len(speechless) > 1 else ''} {names} {'have' if len(speechless) > 1 else 'has'} no speech"
        else:
            why = "the channels cancel in the mean"
        return Mix(np.ascontiguousarray(x[best:best + 1]), best, why, acts[best], tuple(speech))
    return Mix(mean, None, "", speech_activity(mean, sample_rate) if activity else None, tuple(speech))


def speech_mix(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """``[C, n]`` (or ``[n]``) float audio -> float32 ``[1, n]`` by the channel rule of ``choose_mix``:
    the channel mean, or the channel with the most speech when the channels cancel in the mean or some
    channel is dead, near-silent or noise only."""
    return choose_mix(audio, sample_rate, activity=False).audio


__all__ = ["MIN_SPEECH_SECONDS", "SILERO_SHA256", "SpeechActivity", "Mix", "check_model_file", "load_vad",
           "speech_activity", "choose_mix", "speech_mix"]
