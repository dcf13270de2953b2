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
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Union

import numpy as np
import soundfile as sf

from .files import atomic_output
from .errors import (
    AudioDecodeError,
    AudioFileNotFoundError,
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
#: default upper bound on channels (a 5.1 / 7.1 file is fine; 64 channels is not speech)
MAX_CHANNELS = 8
_BLOCK_FRAMES = 1 << 18  # frames per internal read (~1 MB per channel)


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its header (no samples decoded)."""

    source: str
    sample_rate: int
    channels: int
    frames: int  # -1 when the container does not say
    format: str  # container, e.g. "WAV", "FLAC", "mp3", "mov,mp4,m4a,3gp,3g2,mj2"
    subtype: str | None  # sample encoding, e.g. "PCM_16", or the codec name
    backend: str  # "soundfile" or "ffmpeg"

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.frames >= 0 else float("nan")


# --------------------------------------------------------------------------- helpers
def _label(source: AudioSource) -> str:
    return "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)


def _check_path(source: AudioSource) -> None:
    if isinstance(source, (bytes, bytearray)):
        if len(source) == 0:
            raise EmptyAudioError("no data (0 bytes)", source="<bytes>")
        return
    path = Path(source)
    if not path.exists():
        raise AudioFileNotFoundError("no such file", source=path)
    if path.is_dir():
        raise NotAFileError("is a directory, not an audio file", source=path)
    if not path.is_file():
        raise NotAFileError("is not a regular file", source=path)
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


def _soundfile_handle(source: AudioSource) -> Union[str, BinaryIO]:
    return io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray)) else str(source)


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
           "stream=sample_rate,channels,codec_name,duration_ts,time_base,duration:format=format_name,duration",
           "-of", "json", path]
    res = subprocess.run(cmd, capture_output=True, text=True)
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
    dur = st.get("duration") or (meta.get("format") or {}).get("duration")
    frames = int(round(float(dur) * sr)) if dur not in (None, "N/A") else -1
    return AudioInfo(label, sr, ch, frames, (meta.get("format") or {}).get("format_name", "?"),
                     st.get("codec_name"), "ffmpeg")


def _clean_ffmpeg_reason(reason: str, path: str) -> str:
    reason = reason.replace(path + ": ", "").replace(path, "").strip()
    return reason or "ffmpeg could not decode it"


def audio_info(source: AudioSource, *, backend: str = "auto") -> AudioInfo:
    """Read the header of ``source`` (path or bytes) without decoding samples.

    ``backend='ffmpeg'`` skips libsndfile (e.g. to get ffmpeg's gapless MP3 trimming).
    """
    _check_path(source)
    label = _label(source)
    f = _open_soundfile(source) if backend != "ffmpeg" else None
    if f is not None:
        with f:
            return AudioInfo(label, f.samplerate, f.channels, f.frames, f.format, f.subtype, "soundfile")
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
def stream_audio(source: AudioSource, block_seconds: float = 10.0, *, target_sr: int | None = None,
                 mono: bool = False, max_channels: int | None = MAX_CHANNELS,
                 info: AudioInfo | None = None) -> Iterator[np.ndarray]:
    """Yield consecutive ``[C, n]`` float32 blocks of about ``block_seconds`` each.

    Memory is bounded by one block whatever the file's length; resampling is
    streamed (soxr), so the concatenated blocks equal ``load_audio`` output.
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
    raw = _raw_blocks(source, info, frames_per_block, label)
    pending: np.ndarray | None = None
    for block in raw:  # block: [C, n]
        _validate_samples(block, label, total, sr)
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
    if resampler is not None and pending is not None:
        out = resampler.resample_chunk(np.ascontiguousarray(pending.T), last=True)
        if len(out):
            yield np.ascontiguousarray(out.T)


def _raw_blocks(source: AudioSource, info: AudioInfo, frames: int, label: str) -> Iterator[np.ndarray]:
    if info.backend == "soundfile":
        yield from _soundfile_blocks(source, info, frames, label)
    else:
        yield from _ffmpeg_blocks(source, info, frames, label)


def _soundfile_blocks(source: AudioSource, info: AudioInfo, frames: int, label: str) -> Iterator[np.ndarray]:
    try:
        with sf.SoundFile(_soundfile_handle(source)) as f:
            _check_wav_truncation(f.extra_info, label)
            while True:
                block = f.read(frames, dtype="float32", always_2d=True)
                if len(block) == 0:
                    break
                yield np.ascontiguousarray(block.T)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioDecodeError(f"corrupt or truncated audio data ({e})", source=label) from None


_WAV_DATA_SIZE = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.M)


def _check_wav_truncation(header_log: str, label: str) -> None:
    """libsndfile silently reads what is there; its header log tells when a WAV/RIFF is cut short."""
    m = _WAV_DATA_SIZE.search(header_log or "")
    if m:
        declared, present = int(m.group(1)), int(m.group(2))
        if present < declared < 0xFFFFF000:  # 0 / 0xFFFFFFFF mean "length unknown" (streamed WAV)
            raise AudioDecodeError(f"truncated: the header declares {declared} bytes of audio data but the file "
                                   f"holds only {present}", source=label)


def _ffmpeg_blocks(source: AudioSource, info: AudioInfo, frames: int, label: str) -> Iterator[np.ndarray]:
    exe = _tool("ffmpeg")
    ch = info.channels
    with _BytesAsFile(source) as path, tempfile.TemporaryFile() as errlog:
        cmd = [exe, "-v", "error", "-nostdin", "-i", path, "-map", "0:a:0", "-f", "f32le",
               "-acodec", "pcm_f32le", "-ac", str(ch), "-ar", str(info.sample_rate), "-"]
        # stderr goes to a file: a chatty decoder can never block the pipe we read
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errlog)
        try:
            nbytes = frames * ch * 4
            while True:
                buf = proc.stdout.read(nbytes)
                if not buf:
                    break
                usable = len(buf) - len(buf) % (ch * 4)
                yield np.frombuffer(buf[:usable], dtype=np.float32).reshape(-1, ch).T.copy()
            if proc.wait() != 0:
                errlog.seek(0)
                err = errlog.read().decode(errors="replace").strip()
                reason = (err.splitlines() or ["ffmpeg failed"])[-1]
                raise AudioDecodeError(f"corrupt or undecodable audio ({_clean_ffmpeg_reason(reason, path)})",
                                       source=label)
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
    Errors are ``voiceguard.errors.AudioError`` subclasses naming the file.
    """
    info = audio_info(source, backend=backend)
    label = info.source
    blocks = _stream(source, info, _BLOCK_FRAMES / info.sample_rate, None, mono, max_channels)
    if info.backend == "soundfile" and info.frames > 0:
        # header gives the length: fill one preallocated array (peak memory = the audio once)
        audio = np.empty((1 if mono else info.channels, info.frames), dtype=np.float32)
        filled = 0
        for block in blocks:
            audio[:, filled:filled + block.shape[1]] = block
            filled += block.shape[1]
        audio = audio[:, :filled]
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


# --------------------------------------------------------------------------- writing
_PCM_LIMITS = {"PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32", "ULAW", "ALAW"}
#: extension -> (libsndfile container, default subtype); other extensions are encoded by ffmpeg
_SOUNDFILE_WRITERS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS"),
                      ".oga": ("OGG", "VORBIS"), ".aif": ("AIFF", "PCM_16"), ".aiff": ("AIFF", "PCM_16")}


def save_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int, *,
               subtype: str | None = None, like: AudioInfo | None = None,
               overwrite: bool = False, bitrate: str | None = None) -> Path:
    """Write ``audio`` (``[C, n]`` or ``[n]``) atomically: temp file in the same folder, then rename.

    The container follows the extension.  ``subtype`` (e.g. ``PCM_24``) or the
    subtype of ``like`` (the input's ``AudioInfo``) is kept; otherwise 16-bit
    PCM.  Formats libsndfile cannot write (``.m4a``, ``.mp3``, ``.opus``...) are
    encoded with ffmpeg.  An existing file is only replaced with ``overwrite``.
    """
    path = Path(path)
    audio = as_channels_first(audio)
    if not np.isfinite(audio).all():
        raise NonFiniteAudioError("refusing to write NaN or infinite samples", source=path)
    ext = path.suffix.lower()
    if subtype is None and like is not None and like.backend == "soundfile":
        subtype = like.subtype
    with atomic_output(path, overwrite=overwrite) as tmp:
        try:
            if ext in _SOUNDFILE_WRITERS:
                container, default_subtype = _SOUNDFILE_WRITERS[ext]
                subtype = subtype or default_subtype
                data = np.clip(audio, -1.0, 1.0) if subtype in _PCM_LIMITS else audio
                sf.write(tmp, data.T, sample_rate, subtype=subtype, format=container)
            else:
                _ffmpeg_encode(tmp, np.clip(audio, -1.0, 1.0), sample_rate, ext, bitrate)
        except (sf.LibsndfileError, RuntimeError, ValueError) as e:
            raise OutputError(f"could not write audio ({e})", source=path) from None
    return path


def _ffmpeg_encode(out: str, audio: np.ndarray, sr: int, ext: str, bitrate: str | None) -> None:
    exe = _tool("ffmpeg")
    cmd = [exe, "-v", "error", "-nostdin", "-y", "-f", "f32le", "-ar", str(sr), "-ac", str(audio.shape[0]),
           "-i", "-"]
    if bitrate:
        cmd += ["-b:a", bitrate]
    if ext in (".m4a", ".mp4"):
        cmd += ["-f", "mp4"]
    elif ext == ".opus":
        cmd += ["-f", "opus"]
    elif ext == ".mp3":
        cmd += ["-f", "mp3"]
    cmd.append(out)
    res = subprocess.run(cmd, input=np.ascontiguousarray(audio.T).tobytes(), capture_output=True)
    if res.returncode != 0:
        reason = (res.stderr.decode(errors="replace").strip().splitlines() or ["ffmpeg failed"])[-1]
        raise OutputError(f"ffmpeg could not encode {ext} ({reason})", source=out)


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
    """
    found: dict[Path, None] = {}
    problems: list[FileProblem] = []
    for item in inputs:
        text = str(item)
        p = Path(text)
        if p.is_file():
            found[p] = None
        elif p.is_dir():
            pattern = "**/*" if recursive else "*"
            files = [f for f in sorted(p.glob(pattern)) if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS]
            if not files:
                problems.append(FileProblem(text, "folder holds no audio files"))
            for f in files:
                found[f] = None
        elif any(c in text for c in "*?["):
            matches = [Path(m) for m in sorted(glob.glob(text, recursive=True))]
            files = [m for m in matches if m.is_file() and m.suffix.lower() in AUDIO_EXTENSIONS]
            if not files:
                problems.append(FileProblem(text, "pattern matches no audio file"))
            for f in files:
                found[f] = None
        else:
            problems.append(FileProblem(text, "no such file or folder"))
    return list(found), problems
