"""The one audio I/O path of voiceguard.

Arrays are always ``float32`` shaped ``[channels, samples]``.  WAV, FLAC and OGG
(and MP3 where libsndfile supports it) are read with soundfile; every other
container or codec (M4A/AAC, Opus, AMR, ...) goes through ``ffmpeg``.

Channel policy (documented per consumer): spoof detectors and speaker
embedders call ``load_audio(..., mono=True)`` (channels averaged); the
watermark engines keep every channel.
"""
from __future__ import annotations

import glob
import io
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Iterator, Union

import numpy as np
import soundfile as sf

from .files import atomic_output
from .errors import (
    AudioDecodeError,
    AudioDecodeWarning,
    AudioFileNotFoundError,
    AudioRangeError,
    AudioTooShortError,
    EmptyAudioError,
    MissingToolError,
    NonFiniteAudioError,
    NotAFileError,
    OutputError,
    UnsupportedChannelsError,
)

AudioSource = Union[str, os.PathLike, bytes, bytearray]

#: extensions picked up when a folder or glob is expanded
AUDIO_EXTENSIONS = frozenset(
    ".wav .flac .ogg .oga .opus .mp3 .m4a .aac .mp4 .wma .aif .aiff .amr .au .caf .webm .mka .3gp".split()
)
#: Float input policy: full scale is [-1, 1]; float samples may overshoot it (a float WAV mixed hot,
#: a resampler's ringing), but a peak above this many times full scale (+24 dBFS) is not audio in
#: [-1, 1] scale: int16-scale floats (peaks in the thousands) or garbage (1e30). Such input is refused
#: with AudioRangeError naming the peak, never rescaled silently (a guessed gain would change every
#: level-dependent result, and a mark embedded at the wrong scale is undetectable).
MAX_FLOAT_PEAK = 16.0
#: Sample rates a header may declare: outside this range it is corrupt, not audio (a rate field zeroed to
#: 1 Hz turns a 1 s file into 4 hours of samples at 16 kHz; telephony starts at 8 kHz, studio tops at 768 kHz)
#: the one model sample rate (Hz): every detector, watermark engine, speaker embedder and VAD works at it
SAMPLE_RATE = 16000
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 1_000_000
#: default upper bound on channels (a 5.1 / 7.1 file is fine; 64 channels is not speech)
MAX_CHANNELS = 8
_BLOCK_FRAMES = 1 << 18  # frames per internal read (~1 MB per channel)


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its header (no samples decoded).

    ``frames`` is the length the container declares, in frames at ``sample_rate`` (-1 when it does
    not say).  ``length_from`` says how far that figure can be trusted, which decides how a shorter
    decode is judged (see ``TRUNCATION_TOLERANCE_S``):

    - ``"header"``: an exact count (WAV/FLAC/AIFF header, an MP4 edit list, an MP3 Xing/Info frame
      count minus the LAME encoder delay and padding, an Ogg end granule);
    - ``"id3-tlen"``: an MP3 without a frame count whose ID3 ``TLEN`` tag gives the length (ms; taggers
      sometimes keep a stale value);
    - ``"estimate"``: guessed from the bitrate and the file size (MP3 without Xing header);
    - ``"unknown"``: the container does not say (``frames`` is -1).
    """

    source: str
    sample_rate: int
    channels: int
    frames: int  # -1 when the container does not say
    format: str  # container, e.g. "WAV", "FLAC", "mp3", "mov,mp4,m4a,3gp,3g2,mj2"
    subtype: str | None  # sample encoding, e.g. "PCM_16", or the codec name
    backend: str  # "soundfile" or "ffmpeg"
    length_from: str = "header"  # "header", "id3-tlen", "estimate" or "unknown" (see above)

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.frames >= 0 else float("nan")


# --------------------------------------------------------------------------- helpers
def _label(source: AudioSource) -> str:
    return "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)


_FILE_KINDS = ((stat.S_ISFIFO, "a FIFO / named pipe"), (stat.S_ISSOCK, "a socket"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _not_regular_reason(path: Path) -> str | None:
    """Why ``path`` cannot be read as a file, judged from ``stat`` alone (never opened: a FIFO would block).

    Returns None for a regular file (or a symbolic link to one), else the reason: ``"no such file"``,
    ``"broken symbolic link"``, ``"is a directory, not an audio file"`` or ``"not a regular file (a
    FIFO / named pipe)"`` (also socket, character or block device, e.g. a link to ``/dev/zero``).
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "broken symbolic link (its target does not exist)" if os.path.islink(path) else "no such file"
    except OSError as e:  # permission denied on a parent, a loop of links, a name too long...
        return f"cannot be read ({e.strerror or e})"
    if stat.S_ISREG(st.st_mode):
        return None
    if stat.S_ISDIR(st.st_mode):
        return "is a directory, not an audio file"
    kind = next((name for test, name in _FILE_KINDS if test(st.st_mode)), "a special file")
    return f"not a regular file ({kind})"


def _check_path(source: AudioSource) -> None:
    if isinstance(source, (bytes, bytearray)):
        if len(source) == 0:
            raise EmptyAudioError("no data (0 bytes)", source="<bytes>")
        return
    path = Path(source)
    reason = _not_regular_reason(path)
    if reason == "no such file":
        raise AudioFileNotFoundError(reason, source=path)
    if reason is not None:
        raise NotAFileError(reason, source=path)
    if path.stat().st_size == 0:
        raise EmptyAudioError("file is empty (0 bytes)", source=path)


def _tool(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        raise MissingToolError(
            f"'{name}' is needed to decode this format but is not installed "
            "(Debian/Ubuntu: apt-get install ffmpeg; macOS: brew install ffmpeg)"
        )
    return exe


def _soundfile_handle(source: AudioSource) -> Union[bytes, BinaryIO]:
    # a path goes as bytes (os.fsencode): file names that are not valid UTF-8 keep their exact bytes
    return io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray)) else os.fsencode(source)


def _source_size(source: AudioSource) -> int:
    return len(source) if isinstance(source, (bytes, bytearray)) else os.stat(source).st_size


def _head(source: AudioSource, n: int = 4) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source[:n])
    with open(source, "rb") as f:
        return f.read(n)


def _looks_like_mpeg_audio(source: AudioSource) -> bool:
    """An ID3 tag or an MPEG audio frame sync at the start (MP3, MP2, ADTS AAC).

    Such files are decoded by ffmpeg, whose messages are captured (libsndfile's libmpg123 writes its
    ``Note: Trying to resync...`` / ID3 warnings straight to the process's stderr) and which honours
    the LAME gapless delay and padding.
    """
    start = _head(source, 4096)
    head = start[:4]
    if head in (b"RIFF", b"RF64"):
        # a WAVE whose fmt chunk says MPEG (0x0050) or MP3 (0x0055): libsndfile would scan it with
        # libmpg123 already when opening, and libmpg123 writes its notes straight to stderr
        at = start.find(b"fmt ", 12)
        return at >= 0 and start[at + 8:at + 10] in (b"\x50\x00", b"\x55\x00")
    if head[:4] in (b"FORM", b"fLaC", b"OggS"):  # the content wins over a wrong extension
        return False
    if not isinstance(source, (bytes, bytearray)) and Path(source).suffix.lower() in (".mp3", ".mp2", ".aac"):
        return True
    return head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)


def _open_soundfile(source: AudioSource) -> sf.SoundFile | None:
    """Open with libsndfile, or return None when it does not know the format."""
    try:
        f = sf.SoundFile(_soundfile_handle(source))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return None
    return f


class _BytesAsFile:
    """Spill bytes to a temporary file for ffmpeg (containers like MP4 need seeking)."""

    def __init__(self, source: AudioSource):
        self.source = source
        self.tmp: str | None = None

    def __enter__(self) -> str:
        if isinstance(self.source, (bytes, bytearray)):
            fd, self.tmp = tempfile.mkstemp(prefix="voiceguard-", suffix=".bin")
            with os.fdopen(fd, "wb") as f:
                f.write(self.source)
            return self.tmp
        return str(self.source)

    def __exit__(self, *exc) -> None:
        if self.tmp:
            os.unlink(self.tmp)


def _ffprobe(path: str, label: str) -> AudioInfo:
    exe = _tool("ffprobe")
    cmd = [exe, "-v", "error", "-select_streams", "a:0", "-show_entries",
           "stream=sample_rate,channels,codec_name,duration_ts,time_base,duration"
           ":format=format_name,duration:format_tags=TLEN",
           "-of", "json", path]
    # surrogateescape: a file name that is not UTF-8 comes back byte-exact in ffprobe's messages
    res = subprocess.run(cmd, capture_output=True, encoding="utf-8", errors="surrogateescape")
    if res.returncode != 0:
        reason = (res.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise AudioDecodeError(f"not a readable audio file ({_clean_ffmpeg_reason(reason, path)})", source=label)
    meta = json.loads(res.stdout or "{}")
    streams = meta.get("streams") or []
    if not streams:
        raise AudioDecodeError("not audio: the file has no audio stream", source=label)
    st = streams[0]
    sr = int(st.get("sample_rate") or 0)
    ch = int(st.get("channels") or 0)
    if sr <= 0 or ch <= 0:
        raise AudioDecodeError("not audio: no sample rate / channel count in the stream", source=label)
    fmt = (meta.get("format") or {}).get("format_name", "?")
    frames, length_from = _ffprobe_length(st, meta.get("format") or {}, sr)
    if fmt == "mp3":
        frames, length_from = _mp3_declared_length(path, sr, (meta.get("format") or {}).get("tags") or {},
                                                    estimate=frames)
    return AudioInfo(label, sr, ch, frames, fmt, st.get("codec_name"), "ffmpeg", length_from)


def _ffprobe_length(stream: dict, fmt: dict, sr: int) -> tuple[int, str]:
    """The declared length in frames: the stream's ``duration_ts`` (MP4: after the edit list) when given."""
    ts, tb = stream.get("duration_ts"), stream.get("time_base")
    if ts not in (None, "N/A") and tb not in (None, "N/A"):
        return int(round(Fraction(int(ts)) * Fraction(tb) * sr)), "header"
    dur = stream.get("duration") or fmt.get("duration")
    if dur not in (None, "N/A"):
        return int(round(float(dur) * sr)), "header"
    return -1, "unknown"


_MPEG_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mp3_declared_length(path: str, sr: int, tags: dict, estimate: int = -1) -> tuple[int, str]:
    """Exact MP3 length from the Xing/Info frame count minus the LAME delay and padding.

    The same figure ffmpeg's gapless decoding produces (``frames * samples_per_frame - delay -
    padding``).  Without a Xing/Info (or VBRI) frame count the length is either the ID3 ``TLEN``
    tag (``"id3-tlen"``) or ffprobe's bitrate estimate (``"estimate"``).
    """
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 16)
            if data[:3] == b"ID3" and len(data) >= 10:  # skip the ID3v2 tag (syncsafe size)
                size = (data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9]
                f.seek(10 + size + (10 if data[5] & 0x10 else 0))
                data = f.read(1 << 16)
    except OSError:
        data = b""
    for i in range(max(0, len(data) - 4)):
        b1, b2, b3 = data[i + 1], data[i + 2], data[i + 3]
        if data[i] != 0xFF or b1 & 0xE0 != 0xE0:
            continue
        version, layer = (b1 >> 3) & 3, (b1 >> 1) & 3
        if version == 1 or layer != 1 or (b2 >> 4) in (0, 15) or (b2 >> 2) & 3 == 3:
            continue  # not a valid MPEG layer III header
        if _MPEG_RATES[version][(b2 >> 2) & 3] != sr:
            continue
        mono = (b3 >> 6) == 3
        side = (17 if mono else 32) if version == 3 else (9 if mono else 17)
        spf = 1152 if version == 3 else 576
        x = i + 4 + side
        if data[x:x + 4] in (b"Xing", b"Info"):
            flags = int.from_bytes(data[x + 4:x + 8], "big")
            if not flags & 1:
                break
            n_frames = int.from_bytes(data[x + 8:x + 12], "big")
            off = x + 8 + 4 * bool(flags & 1) + 4 * bool(flags & 2) + 100 * bool(flags & 4) + 4 * bool(flags & 8)
            delay = padding = 0
            if len(data) >= off + 24 and data[off:off + 4] in (b"LAME", b"Lavc", b"Lavf"):
                d = data[off + 21:off + 24]
                delay, padding = (d[0] << 4) | (d[1] >> 4), ((d[1] & 0x0F) << 8) | d[2]
            return max(0, n_frames * spf - delay - padding), "header"
        if data[i + 36:i + 40] == b"VBRI":
            return int.from_bytes(data[i + 50:i + 54], "big") * spf, "header"
        break  # the first frame carries no frame count
    tlen = str(tags.get("TLEN", "")).strip()
    if tlen.isdigit() and int(tlen) > 0:
        return int(round(int(tlen) / 1000 * sr)), "id3-tlen"
    return (estimate, "estimate") if estimate > 0 else (-1, "unknown")


def _clean_ffmpeg_reason(reason: str, path: str) -> str:
    reason = reason.replace(path + ": ", "").replace(path, "").strip()
    return reason or "ffmpeg could not decode it"


def audio_info(source: AudioSource, *, backend: str = "auto") -> AudioInfo:
    """Read the header of ``source`` (path or bytes) without decoding samples.

    ``backend='auto'`` uses libsndfile for WAV/FLAC/OGG/AIFF... and ffmpeg for everything else,
    MP3 included (captured decoder messages, LAME gapless trimming); ``backend='ffmpeg'`` skips
    libsndfile.  A path is checked with ``stat`` before it is opened: a directory, FIFO, socket or
    device raises ``NotAFileError`` (``"not a regular file (...)"``), a missing path
    ``AudioFileNotFoundError``; a header rate outside ``MIN_SAMPLE_RATE..MAX_SAMPLE_RATE`` raises
    ``AudioDecodeError`` (a corrupt header, never hours of resampled noise).
    """
    _check_path(source)
    label = _label(source)
    info = _audio_info(source, label, backend)
    if not MIN_SAMPLE_RATE <= info.sample_rate <= MAX_SAMPLE_RATE:
        raise AudioDecodeError(f"implausible sample rate {info.sample_rate} Hz in the header (expected "
                               f"{MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz): corrupt header", source=label)
    return info


def _audio_info(source: AudioSource, label: str, backend: str) -> AudioInfo:
    use_soundfile = backend != "ffmpeg" and not (_looks_like_mpeg_audio(source) and shutil.which("ffmpeg"))
    f = _open_soundfile(source) if use_soundfile else None
    if f is not None and str(f.subtype).startswith("MPEG_LAYER") and shutil.which("ffmpeg"):
        # MPEG audio in another container (MP3 inside a RIFF WAVE): libsndfile would decode it with
        # libmpg123, whose messages go straight to stderr; ffmpeg's are captured
        f.close()
        f = None
    if f is not None:
        with f:
            # libsndfile's MP3 length is an estimate without a Xing header (fallback when ffmpeg is absent)
            frames = _declared_wav_frames(f.extra_info, f.frames, f.subtype)
            return AudioInfo(label, f.samplerate, f.channels, frames, f.format, f.subtype, "soundfile",
                             "estimate" if f.format == "MP3" else "header")
    with _BytesAsFile(source) as path:
        return _ffprobe(path, label)


# --------------------------------------------------------------------------- transforms
def to_mono(audio: np.ndarray) -> np.ndarray:
    """Average channels: ``[C, n] -> [1, n]``."""
    audio = as_channels_first(audio)
    return audio if audio.shape[0] == 1 else audio.mean(axis=0, keepdims=True, dtype=np.float32)


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """High-quality (soxr VHQ) resampling of ``[C, n]`` or ``[n]`` float audio."""
    if orig_sr == target_sr:
        return audio
    import soxr

    if audio.ndim == 1:
        return soxr.resample(audio, orig_sr, target_sr, quality="VHQ").astype(np.float32, copy=False)
    out = soxr.resample(np.ascontiguousarray(audio.T), orig_sr, target_sr, quality="VHQ")
    return np.ascontiguousarray(out.T, dtype=np.float32)


def as_channels_first(audio: np.ndarray) -> np.ndarray:
    """Accept ``[n]`` or ``[C, n]`` float/int arrays; return float32 ``[C, n]`` in [-1, 1] scale."""
    audio = np.asarray(audio)
    if audio.ndim == 1:
        audio = audio[None, :]
    if audio.ndim != 2:
        raise ValueError(f"audio must be [samples] or [channels, samples], got shape {audio.shape}")
    if np.issubdtype(audio.dtype, np.integer):
        info = np.iinfo(audio.dtype)
        scale = float(max(abs(info.min), info.max + 1))
        offset = 0.0 if info.min < 0 else scale / 2  # unsigned PCM is centred on the midpoint
        return ((audio.astype(np.float32) - offset) / (scale if info.min < 0 else scale / 2)).astype(np.float32)
    return audio.astype(np.float32, copy=False)


def check_sample_range(audio: np.ndarray, *, source: str | os.PathLike | None = None,
                       max_peak: float = MAX_FLOAT_PEAK) -> None:
    """Refuse float samples that are not finite or not in [-1, 1] scale (see ``MAX_FLOAT_PEAK``).

    Args:
        audio: float array of any shape (integer arrays always pass: they are scaled by their dtype).
        source: file name (or a description such as ``"audio array"``) used in the message.
        max_peak: largest accepted ``|sample|``, in full-scale units (16.0 = +24 dBFS).

    Raises:
        NonFiniteAudioError: a NaN or infinite sample.
        AudioRangeError: the peak exceeds ``max_peak``; the message gives the peak and the hint that
            integer-scale floats must be divided by their full scale (e.g. 32768 for int16).
    """
    audio = np.asarray(audio)
    if audio.size == 0 or not np.issubdtype(audio.dtype, np.floating):
        return
    with np.errstate(over="ignore", invalid="ignore"):
        peak = float(np.max(np.abs(audio)))
    if not np.isfinite(peak):
        raise NonFiniteAudioError("contains NaN or infinite samples", source=source)
    if peak > max_peak:
        hint = " (integer-scale floats? divide by 32768 for int16)" if 100 < peak <= 2.2e9 else ""
        raise AudioRangeError(f"float samples out of range: peak {peak:.4g}, expected within [-1, 1] "
                              f"(at most {max_peak:g}){hint}", source=source)


def _validate_samples(block: np.ndarray, label: str, offset: int, sr: int) -> None:
    if not np.isfinite(block).all():
        bad = int(np.argmax(~np.isfinite(block).all(axis=0)))
        raise NonFiniteAudioError(
            f"contains NaN or infinite samples (first at {(offset + bad) / sr:.3f} s)", source=label)


def _check_channels(channels: int, max_channels: int | None, label: str) -> None:
    if max_channels is not None and channels > max_channels:
        raise UnsupportedChannelsError(
            f"{channels} channels are not supported (at most {max_channels})", source=label)


def require_duration(n_samples: int, sample_rate: int, min_seconds: float, *,
                     source: str | None = None, purpose: str = "this model") -> None:
    """Raise ``AudioTooShortError`` naming the minimum when the audio is too short."""
    seconds = n_samples / sample_rate
    if seconds < min_seconds:
        raise AudioTooShortError(
            f"audio is {seconds:.3f} s long, too short for {purpose} (minimum {min_seconds:g} s)",
            source=source)


# --------------------------------------------------------------------------- reading
#: How much shorter than the container's declared length a decode may come out before it is called
#: ``truncated`` (seconds, fraction of the declared length), by ``AudioInfo.length_from``:
#: - "header" and a lossless format (WAV, FLAC, AIFF...): 0 -- the count is exact;
#: - "header" and a lossy codec (MP4 edit list, MP3 LAME tag, Ogg granule): 0.05 s -- about two codec
#:   frames, the most decoders disagree by at the very end;
#: - "id3-tlen": 1 s and 10 % -- the tag has millisecond precision and is sometimes stale;
#: - "estimate" / "unknown": never -- a bitrate estimate is computed from the (possibly cut) file size,
#:   and a VBR file without Xing header can be off by a factor of two, so no shortfall is meaningful.
TRUNCATION_TOLERANCE_S = {"header-lossless": (0.0, 0.0), "header": (0.05, 0.0), "id3-tlen": (1.0, 0.10)}
_LOSSLESS_SUBTYPES = ("PCM_", "FLOAT", "DOUBLE", "ULAW", "ALAW", "DPCM_", "ALAC_")
#: an ffmpeg demuxer whose declared length (edit list) is exact while its decoder emits the
#: encoder's end padding: the decoded stream is cut to the declared length
_TRIM_TO_DECLARED = ("mov,mp4,m4a",)


def stream_audio(source: AudioSource, block_seconds: float = 10.0, *, target_sr: int | None = None,
                 mono: bool = False, max_channels: int | None = MAX_CHANNELS,
                 info: AudioInfo | None = None) -> Iterator[np.ndarray]:
    """Yield consecutive ``[C, n]`` float32 blocks of about ``block_seconds`` each.

    Memory is bounded by one block whatever the file's length; resampling is
    streamed (soxr), so the concatenated blocks equal ``load_audio`` output.
    Every block is checked as it is decoded: NaN/Inf raise ``NonFiniteAudioError``, float samples
    beyond ``MAX_FLOAT_PEAK`` raise ``AudioRangeError``; a decode shorter than the declared length
    (beyond ``TRUNCATION_TOLERANCE_S``) raises ``AudioDecodeError`` ``"truncated: 2.4 of 6.0 s
    decoded"`` after the last block.  Decoder messages are captured and given as at most one
    ``voiceguard.errors.AudioDecodeWarning`` per file, naming it.
    """
    info = info or audio_info(source)  # pass the header you already read to avoid reading it twice
    return _stream(source, info, block_seconds, target_sr, mono, max_channels)


def _stream(source: AudioSource, info: AudioInfo, block_seconds: float, target_sr: int | None,
            mono: bool, max_channels: int | None) -> Iterator[np.ndarray]:
    label = info.source
    _check_channels(info.channels, max_channels, label)
    sr = info.sample_rate
    frames_per_block = max(1, int(round(block_seconds * sr)))
    out_channels = 1 if mono else info.channels
    resampler = None
    if target_sr is not None and target_sr != sr:
        import soxr

        resampler = soxr.ResampleStream(sr, target_sr, out_channels, dtype="float32", quality="VHQ")

    total = 0
    notes: list[str] = []  # decoder messages, reported once the decode is judged
    raw = _raw_blocks(source, info, frames_per_block, label, notes)
    pending: np.ndarray | None = None
    for block in raw:  # block: [C, n], float32 (float64 for double-precision sources)
        _validate_samples(block, label, total, sr)
        check_sample_range(block, source=label)  # before any cast or mix-down: 1e300 must not become inf
        block = block.astype(np.float32, copy=False)
        total += block.shape[1]
        if mono:
            block = to_mono(block)
        if resampler is None:
            yield block
            continue
        if pending is not None:
            out = resampler.resample_chunk(np.ascontiguousarray(pending.T), last=False)
            if len(out):
                yield np.ascontiguousarray(out.T)
        pending = block
    if total == 0:
        raise EmptyAudioError("decodes to zero samples", source=label)
    short = _check_complete(total, info, label, notes)
    if notes:
        more = f" (+{len(notes) - 1} more)" if len(notes) > 1 else ""
        warnings.warn(f"{label}: decoder reported damaged data, decoded anyway{short}: {notes[0]}{more}",
                      AudioDecodeWarning, stacklevel=2)
    if resampler is not None and pending is not None:
        out = resampler.resample_chunk(np.ascontiguousarray(pending.T), last=True)
        if len(out):
            yield np.ascontiguousarray(out.T)


def _check_complete(decoded: int, info: AudioInfo, label: str, notes: list[str] = ()) -> str:
    """Judge a decode shorter than the declared length (see ``TRUNCATION_TOLERANCE_S``).

    A shortfall beyond the tolerance is an error whatever its cause: ``AudioDecodeError('truncated:
    2.4 of 6.0 s decoded')``, or ``'truncated or damaged: 5.8 of 6.0 s decoded (first decoder
    message)'`` when the decoder also reported bad data (a cut file and frames skipped in the middle
    look alike to the decoder, and both mean the audio is not the source's).  A shortfall within the
    tolerance returns ``", 5.98 of 6.00 s decoded"`` for the warning, else ``""``.
    """
    key = info.length_from
    if key == "header" and info.backend == "soundfile" and str(info.subtype).startswith(_LOSSLESS_SUBTYPES):
        key = "header-lossless"
    if info.frames <= 0 or key not in TRUNCATION_TOLERANCE_S:
        return ""
    seconds, fraction = TRUNCATION_TOLERANCE_S[key]
    allowed = max(seconds * info.sample_rate, fraction * info.frames)
    if info.frames - decoded > allowed:
        have, want = decoded / info.sample_rate, info.frames / info.sample_rate
        digits = 1 if want - have >= 0.1 else 3
        figures = f"{have:.{digits}f} of {want:.{digits}f} s decoded"
        raise AudioDecodeError(f"truncated or damaged: {figures} ({notes[0]})" if notes else
                               f"truncated: {figures}", source=label)
    if decoded < info.frames:
        return f", {decoded / info.sample_rate:.2f} of {info.frames / info.sample_rate:.2f} s decoded"
    return ""


def _raw_blocks(source: AudioSource, info: AudioInfo, frames: int, label: str,
                notes: list[str]) -> Iterator[np.ndarray]:
    if info.backend == "soundfile":
        yield from _soundfile_blocks(source, info, frames, label)
    else:
        yield from _ffmpeg_blocks(source, info, frames, label, notes)


def _soundfile_blocks(source: AudioSource, info: AudioInfo, frames: int, label: str) -> Iterator[np.ndarray]:
    # double-precision files are read as float64 so that the range check sees 1e300, not inf
    dtype = "float64" if info.subtype == "DOUBLE" else "float32"
    done = 0
    try:
        with sf.SoundFile(_soundfile_handle(source)) as f:
            _check_wav_truncation(f.extra_info, label, f.samplerate)
            while True:
                # a block-coded WAV stops at its fact chunk's length (the rest is padding); elsewhere
                # info.frames >= what is there, so this never cuts real audio
                want = frames if info.frames < 0 else min(frames, max(info.frames - done, 0))
                if want <= 0:
                    break
                block = f.read(want, dtype=dtype, always_2d=True)
                if len(block) == 0:
                    break
                done += len(block)
                yield np.ascontiguousarray(block.T)
    except (sf.LibsndfileError, RuntimeError) as e:
        where = ""
        if 0 < done < info.frames:
            where = f" after {done / info.sample_rate:.1f} of {info.frames / info.sample_rate:.1f} s"
        raise AudioDecodeError(f"corrupt or truncated audio data{where} ({e})", source=label) from None


_WAV_DATA_SIZE = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.M)
_WAV_FACT_FRAMES = re.compile(r"^fact\s*:.*\n\s*frames\s*:\s*(\d+)", re.M)
_WAV_SAMPLES_PER_BLOCK = re.compile(r"^\s*Samples/Block\s*:\s*(\d+)", re.M)
_RF64_DS64_FRAMES = re.compile(r"^ds64\s*:(?:.*\n\s+.*?)*?\n\s*Frames\s*:\s*(\d+)", re.M)
#: WAV sample encodings coded in blocks: the last block is padded, and only the ``fact`` chunk says
#: how many samples the source had (libsndfile decodes the padding too)
_BLOCK_CODED = ("IMA_ADPCM", "MS_ADPCM", "GSM610", "G721_32", "G723_24", "G723_40", "NMS_ADPCM_16",
                "NMS_ADPCM_24", "NMS_ADPCM_32", "VOX_ADPCM")


def _declared_wav_frames(header_log: str, frames: int, subtype: str | None) -> int:
    """The length a WAV / RF64 header declares, from libsndfile's header log.

    - Block-coded WAV (ADPCM, GSM 6.10...): the ``fact`` chunk's sample count when it is shorter than
      what libsndfile decodes (the rest is the last block's padding), so that decoded length equals the
      source's (e.g. 97,968 samples, not 98,649).
    - RF64: the ``ds64`` chunk's frame count when it is larger than what the file holds, so that a cut
      RF64 is reported ``truncated`` like a cut WAV (libsndfile silently reads what is there).
    Otherwise ``frames`` (libsndfile's count) unchanged.
    """
    log = header_log or ""
    if subtype in _BLOCK_CODED:
        m = _WAV_FACT_FRAMES.search(log)
        per_block = _WAV_SAMPLES_PER_BLOCK.search(log)
        # only padding can be cut: less than two blocks (libsndfile's stereo IMA writer stores half the
        # length in fact, which must not halve the audio)
        if m and per_block and 0 < frames - int(m.group(1)) < 2 * int(per_block.group(1)):
            return int(m.group(1))
    m = _RF64_DS64_FRAMES.search(log)
    if m and frames < int(m.group(1)) < 1 << 48:
        return int(m.group(1))
    return frames


_AIFF_FRAMES_SHORT = re.compile(r"Frame count read from 'COMM' chunk \((\d+)\) not equal to frame count\s*"
                                r"\n?\*{0,3}\s*calculated from length of 'SSND' chunk \((\d+)\)", re.M)


def _check_wav_truncation(header_log: str, label: str, sample_rate: int = 0) -> None:
    """libsndfile silently reads what is there; its header log tells when a WAV/RIFF or AIFF/AIFC is
    cut short (WAV: ``data : N (should be M)``; AIFF: the COMM chunk's frame count is larger than what
    the SSND chunk holds)."""
    m = _AIFF_FRAMES_SHORT.search(header_log or "")
    if m and int(m.group(2)) < int(m.group(1)):
        declared, present = int(m.group(1)), int(m.group(2))
        figures = (f"{present / sample_rate:.1f} of {declared / sample_rate:.1f} s decoded" if sample_rate > 0
                   else f"{present} of {declared} frames present")
        raise AudioDecodeError(f"truncated: {figures}", source=label)
    m = _WAV_DATA_SIZE.search(header_log or "")
    if m:
        declared, present = int(m.group(1)), int(m.group(2))
        if present < declared < 0xFFFFF000:  # 0 / 0xFFFFFFFF mean "length unknown" (streamed WAV)
            raise AudioDecodeError(f"truncated: the header declares {declared} bytes of audio data but the file "
                                   f"holds only {present}", source=label)


_FFMPEG_LOG_PREFIX = re.compile(r"^\[[^\]]+ @ 0x[0-9a-f]+\]\s*")


def _decoder_messages(log: str, path: str) -> list[str]:
    """ffmpeg's captured stderr as clean lines (no ``[mp3float @ 0x...]`` prefix, no temporary path)."""
    return [_clean_ffmpeg_reason(_FFMPEG_LOG_PREFIX.sub("", ln).strip(), path)
            for ln in log.splitlines() if ln.strip()]


def _ffmpeg_blocks(source: AudioSource, info: AudioInfo, frames: int, label: str,
                   notes: list[str]) -> Iterator[np.ndarray]:
    exe = _tool("ffmpeg")
    ch = info.channels
    wide = str(info.subtype).startswith("pcm_f64")  # keep 1e300 as 1e300 for the range check
    fmt, width, dtype = ("f64le", 8, np.float64) if wide else ("f32le", 4, np.float32)
    limit = info.frames if info.format.startswith(_TRIM_TO_DECLARED) and info.frames > 0 else None
    with _BytesAsFile(source) as path, tempfile.TemporaryFile() as errlog:
        cmd = [exe, "-v", "error", "-nostdin", "-i", path, "-map", "0:a:0", "-f", fmt,
               "-acodec", f"pcm_{fmt}", "-ac", str(ch), "-ar", str(info.sample_rate), "-"]
        # stderr goes to a file: a chatty decoder can never block the pipe we read, nor reach our stderr
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errlog)
        try:
            nbytes = frames * ch * width
            done = 0
            while True:
                buf = proc.stdout.read(nbytes)
                if not buf:
                    break
                usable = len(buf) - len(buf) % (ch * width)
                block = np.frombuffer(buf[:usable], dtype=dtype).reshape(-1, ch).T
                if limit is not None:  # the edit list ends here: what follows is the encoder's padding
                    block = block[:, :max(0, limit - done)]
                done += block.shape[1]
                if block.shape[1]:
                    yield block.copy()
            returncode = proc.wait()
            errlog.seek(0)
            err = errlog.read().decode("utf-8", errors="surrogateescape").strip()
            if returncode != 0:
                reason = (err.splitlines() or ["ffmpeg failed"])[-1]
                raise AudioDecodeError(f"corrupt or undecodable audio ({_clean_ffmpeg_reason(reason, path)})",
                                       source=label)
            notes.extend(_decoder_messages(err, path))
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
            proc.wait()


def load_audio(source: AudioSource, target_sr: int | None = None, *, mono: bool = False,
               max_channels: int | None = MAX_CHANNELS, min_seconds: float | None = None,
               purpose: str = "this model", backend: str = "auto") -> tuple[np.ndarray, int]:
    """Decode a file (or bytes) to ``(float32 [channels, samples], sample_rate)``.

    ``target_sr`` resamples (soxr VHQ); ``mono`` averages channels;
    ``min_seconds`` raises ``AudioTooShortError`` for shorter audio; ``backend``
    is ``auto`` (soundfile, else ffmpeg) or ``ffmpeg``.
    Errors are ``voiceguard.errors.AudioError`` subclasses naming the file (see ``stream_audio``
    for the per-block checks and the truncation rule).  The header's length is never trusted for
    allocation: at most what the file's size can hold is preallocated, anything beyond is collected
    block by block.
    """
    info = audio_info(source, backend=backend)
    label = info.source
    block_frames = max(4096, _BLOCK_FRAMES * 2 // max(1, info.channels))  # ~2 MB per block whatever the channels
    blocks = _stream(source, info, block_frames / info.sample_rate, None, mono, max_channels)
    if info.frames > 0:
        # fill one preallocated array (peak memory = the audio once), sized by the header but never
        # beyond what the file can hold: a header claiming 64 G frames must not allocate 240 GiB
        audio = np.empty((1 if mono else info.channels, _preallocation(source, info)), dtype=np.float32)
        filled, extra = 0, []
        for block in blocks:
            n = min(block.shape[1], audio.shape[1] - filled)
            audio[:, filled:filled + n] = block[:, :n]
            filled += n
            if n < block.shape[1]:
                extra.append(block[:, n:])
        audio = audio[:, :filled]
        if extra:
            audio = np.concatenate([audio] + extra, axis=1)
        del extra
    else:
        parts = list(blocks)
        audio = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        del parts
    if min_seconds is not None:
        require_duration(audio.shape[1], info.sample_rate, min_seconds, source=label, purpose=purpose)
    if target_sr is not None and target_sr != info.sample_rate:
        audio = resample(audio, info.sample_rate, target_sr)
        return audio, target_sr
    return audio, info.sample_rate


_BITS = {"PCM_S8": 8, "PCM_U8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32, "FLOAT": 32, "DOUBLE": 64,
         "ULAW": 8, "ALAW": 8}
#: compressed formats: frames per byte of file per channel assumed for the preallocation (a larger
#: ratio -- digital silence in FLAC -- is handled by collecting the rest block by block)
_COMPRESSED_FRAMES_PER_BYTE = 8


def _preallocation(source: AudioSource, info: AudioInfo) -> int:
    """Frames to preallocate: the declared length, capped by what the file's byte size can hold."""
    size = _source_size(source)
    bits = _BITS.get(str(info.subtype)) if info.backend == "soundfile" else None
    if bits:
        cap = size * 8 // (bits * info.channels) + 1
    else:
        cap = size * _COMPRESSED_FRAMES_PER_BYTE // info.channels + 1
    return max(0, min(info.frames, cap))


# --------------------------------------------------------------------------- writing
#: extension -> libsndfile container written for it; every other extension is encoded by ffmpeg
_SOUNDFILE_WRITERS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".oga": "OGG", ".aif": "AIFF",
                      ".aiff": "AIFF", ".aifc": "AIFF", ".au": "AU", ".caf": "CAF"}
#: containers sharing an extension's default: an input in one of them keeps it (RF64 stays RF64)
_SAME_EXTENSION = {"WAV": ("WAV", "WAVEX", "RF64")}
#: sample encodings finer than 16 bits: converted to PCM_24 where the output container has no such encoding
_HIGH_RES = {"PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ALAC_20", "ALAC_24", "ALAC_32", "DWVW_24"}
#: block-coded encodings: a partial last block is padded, and readers decode the padding as samples; kept
#: only within the input's own container (WAV stays IMA ADPCM WAV, IMA ADPCM -> AIFF becomes PCM)
_BLOCK_CODED = {"IMA_ADPCM", "MS_ADPCM", "GSM610", "VOX_ADPCM", "G721_32", "G723_24", "G723_40",
                "NMS_ADPCM_16", "NMS_ADPCM_24", "NMS_ADPCM_32"}
_FFMPEG_BLOCK_CODECS = {"IMA_ADPCM": "adpcm_ima_wav", "MS_ADPCM": "adpcm_ms"}
#: extensions encoded by ffmpeg -> its muxer (codec: ffmpeg's default for the muxer)
_ENCODERS = {".mp3": "mp3", ".m4a": "mp4", ".mp4": "mp4", ".aac": "adts", ".opus": "opus", ".webm": "webm",
             ".mka": "matroska", ".wma": "asf", ".amr": "amr", ".3gp": "3gp"}


def output_format(path: str | os.PathLike, *, subtype: str | None = None,
                  like: AudioInfo | None = None) -> tuple[str, str | None]:
    """``(container, subtype)`` that ``save_audio`` writes to ``path``; subtype None: ffmpeg's codec.

    The container follows the extension (``.wav`` WAV, ``.flac`` FLAC, ``.ogg``/``.oga`` Ogg Vorbis,
    ``.aif``/``.aiff``/``.aifc`` AIFF, ``.au``, ``.caf``; any other extension is ffmpeg's format for it,
    e.g. ``.mp3``, ``.m4a``, ``.opus``). A ``like`` input that was RF64 or WAVEX keeps that variant of WAV.
    The subtype is ``subtype`` if given (``OutputError`` when the container cannot hold it); else the
    input's when the container supports it (``soundfile.check_format``); else PCM_24 for a finer-than-16-bit
    input where the container has it; else the container's default (PCM_16, Vorbis for Ogg).
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in _SOUNDFILE_WRITERS:
        if ext not in _ENCODERS:
            known = " ".join(sorted(set(_SOUNDFILE_WRITERS) | set(_ENCODERS)))
            raise OutputError(f"{'no file extension' if not ext else f'unknown audio extension {ext}'}: the "
                              f"output format follows the extension, one of {known}", source=path)
        if subtype is not None:
            raise OutputError(f"cannot choose the sample format {subtype} for {ext} (encoded by ffmpeg); "
                              f"use .wav, .flac or .aiff for {subtype}", source=path)
        return ext.lstrip(".").upper(), None
    container = _SOUNDFILE_WRITERS[ext]
    src = like.subtype if like is not None and like.backend == "soundfile" else None
    if src is not None and like.format in _SAME_EXTENSION.get(container, ()):
        container = like.format
    if subtype is not None:
        if not sf.check_format(container, subtype):
            raise OutputError(f"a {container} file cannot hold {subtype} samples ({ext} supports "
                              f"{', '.join(sf.available_subtypes(container))})", source=path)
        return container, subtype
    if src is not None and sf.check_format(container, src) and (src not in _BLOCK_CODED or container == like.format):
        return container, src
    if src in _HIGH_RES and sf.check_format(container, "PCM_24"):
        return container, "PCM_24"
    return container, sf.default_subtype(container)


def save_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int, *,
               subtype: str | None = None, like: AudioInfo | None = None,
               overwrite: bool = False, bitrate: str | None = None) -> Path:
    """Write ``audio`` (float ``[C, n]`` or ``[n]``, [-1, 1] scale) atomically: a temp file in the same
    folder, then a rename; an existing file is only replaced with ``overwrite``.

    The format follows the extension of ``path`` (see ``output_format``): the subtype of ``like`` (the
    input's ``AudioInfo``) is kept where the output container supports it, e.g. 24-bit FLAC stays 24-bit,
    A-law WAV -> FLAC is 16-bit, Ogg -> WAV is 16-bit. Formats libsndfile cannot write (``.m4a``,
    ``.mp3``, ``.opus``...) are encoded with ffmpeg (``bitrate``, e.g. ``"64k"``). With ``like``, the
    written length is checked: block-coded ADPCM is re-encoded with the input's block size so that it
    decodes to exactly ``n`` samples, or refused.

    Raises:
        NonFiniteAudioError: NaN or Inf samples.
        OutputError: the output exists (without ``overwrite``), the extension names no format, the
            format cannot hold the requested samples, or the encoder failed; the message names ``path``
            (never the temporary file) and the format.
    """
    path = Path(path)
    audio = as_channels_first(audio)
    if not np.isfinite(audio).all():
        raise NonFiniteAudioError("refusing to write NaN or infinite samples", source=path)
    container, subtype = output_format(path, subtype=subtype, like=like)
    ext = path.suffix.lower()
    if container == "WAV" and audio.size * 8 > 0xFFFFFFFF - 1024:  # too big for a RIFF size field
        container = "RF64"
    with atomic_output(path, overwrite=overwrite) as tmp:
        try:
            if subtype is not None:
                data = audio if subtype in ("FLOAT", "DOUBLE") else np.clip(audio, -1.0, 1.0)
                # bytes: a file name that is not UTF-8 keeps its exact bytes
                sf.write(os.fsencode(tmp), data.T, sample_rate, subtype=subtype, format=container)
                if like is not None and subtype in _BLOCK_CODED:
                    _keep_block_length(tmp, np.clip(audio, -1.0, 1.0), sample_rate, subtype, like, path)
            else:
                _ffmpeg_encode(tmp, np.clip(audio, -1.0, 1.0), sample_rate, ext, bitrate)
        except (sf.LibsndfileError, RuntimeError, ValueError, OutputError) as e:
            reason = getattr(e, "reason", None) or str(e)
            reason = reason.replace(repr(os.fsencode(tmp)), repr(path.name)).replace(tmp, path.name)
            what = f"{container} {subtype}" if subtype else ext
            raise OutputError(f"cannot write {what} audio at {sample_rate} Hz, {audio.shape[0]} channel(s) "
                              f"({reason})", source=path) from None
    return path


_BLOCK_ALIGN = re.compile(r"Block Align\s*:\s*(\d+)")


def _keep_block_length(tmp: str, audio: np.ndarray, sr: int, subtype: str, like: AudioInfo, path: Path) -> None:
    """libsndfile writes ADPCM in its own block size and pads the last block, so the file decodes longer
    than ``audio`` (97,968 -> 98,649 samples for ffmpeg's IMA blocks of 2041). The input decoded to whole
    blocks of its own size: re-encode with that block size (ffmpeg) so the length is kept, or refuse."""
    n = audio.shape[1]
    if _written_frames(tmp) == n:  # MS ADPCM / GSM: libsndfile's fact chunk keeps the length
        return
    try:
        header = sf.info(os.fsencode(like.source)).extra_info
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError):
        header = ""
    m = _BLOCK_ALIGN.search(header)
    if m and audio.shape[0] <= 2 and subtype in _FFMPEG_BLOCK_CODECS and sf.info(os.fsencode(tmp)).format == "WAV":
        _ffmpeg_encode(tmp, audio, sr, ".wav", None,
                       codec=["-c:a", _FFMPEG_BLOCK_CODECS[subtype], "-block_size", m.group(1)])
        got = _written_frames(tmp)
        if got == n:
            return
    else:
        got = _written_frames(tmp)
    raise OutputError(f"{subtype} stores whole blocks, so these {n} samples would read back as {got}; "
                      f"write .flac or PCM .wav to keep the length", source=path)


def _written_frames(tmp: str) -> int:
    """Frames a just-written WAV decodes to through this module (the fact chunk honoured)."""
    f = sf.SoundFile(os.fsencode(tmp))
    with f:
        return _declared_wav_frames(f.extra_info, f.frames, f.subtype)


def _ffmpeg_encode(out: str, audio: np.ndarray, sr: int, ext: str, bitrate: str | None,
                   codec: list[str] | None = None) -> None:
    exe = _tool("ffmpeg")
    cmd = [exe, "-v", "error", "-nostdin", "-y", "-f", "f32le", "-ar", str(sr), "-ac", str(audio.shape[0]),
           "-i", "-"] + (codec or [])
    if bitrate:
        cmd += ["-b:a", bitrate]
    cmd += ["-f", _ENCODERS.get(ext, "wav")]
    cmd.append(out)
    res = subprocess.run(cmd, input=np.ascontiguousarray(audio.T).tobytes(), capture_output=True)
    if res.returncode != 0:
        reason = (res.stderr.decode(errors="replace").strip().splitlines() or ["ffmpeg failed"])[-1]
        raise OutputError(f"ffmpeg could not encode {ext}: {reason}")


# --------------------------------------------------------------------------- batches
@dataclass(frozen=True)
class FileProblem:
    """A path the batch could not use, with the reason (reported, never fatal)."""

    path: str
    reason: str


def find_audio_files(inputs: list[str | os.PathLike], *, recursive: bool = True
                     ) -> tuple[list[Path], list[FileProblem]]:
    """Expand files, folders (recursively) and globs into a sorted, de-duplicated file list.

    Files named explicitly are kept whatever their extension (the decoder
    decides); folders and globs contribute files with audio extensions.
    Paths are judged with ``stat`` only (nothing is opened, so a FIFO cannot block): a FIFO, socket,
    device or a link to one (``/dev/zero``) named explicitly, or carrying an audio extension inside
    a folder or glob, is a problem ``"not a regular file (...)"``; a missing path is ``"no such file
    or folder"``, a dangling link ``"broken symbolic link (...)"``.
    """
    found: dict[Path, None] = {}
    problems: list[FileProblem] = []

    def problem(path: str, reason: str) -> None:
        if all(p.path != path for p in problems):  # a path named and also found in a folder: once
            problems.append(FileProblem(path, reason))

    def collect(candidates: list[Path]) -> list[Path]:
        files = []
        for f in candidates:
            if f.suffix.lower() not in AUDIO_EXTENSIONS:
                continue
            reason = _not_regular_reason(f)
            if reason is None:
                files.append(f)
            elif not reason.startswith("is a directory"):
                problem(str(f), reason)
        return files

    for item in inputs:
        text = str(item)
        p = Path(text)
        reason = _not_regular_reason(p)
        if reason is None:
            found[p] = None
        elif reason.startswith("is a directory"):
            pattern = "**/*" if recursive else "*"
            files = collect(sorted(p.glob(pattern)))
            if not files:
                problem(text, "folder holds no audio files")
            for f in files:
                found[f] = None
        elif reason == "no such file" and any(c in text for c in "*?["):
            files = collect([Path(m) for m in sorted(glob.glob(text, recursive=True))])
            if not files:
                problem(text, "pattern matches no audio file")
            for f in files:
                found[f] = None
        elif reason == "no such file":
            problem(text, "no such file or folder")
        else:
            problem(text, reason)
    return list(found), problems
