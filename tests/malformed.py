"""A seeded generator of malformed and odd audio inputs, and a harness that runs the real CLI on them.

Used by ``tests/test_malformed.py`` (a few hundred cases in CI) and ``bench/bench_malformed.py``
(thousands).  Everything is deterministic from a seed:

* ``build_pool(seed, size)`` encodes a pool of valid base files of many kinds (WAV PCM_U8/16/24/32,
  FLOAT, DOUBLE, A-law, mu-law, IMA/MS ADPCM from libsndfile and from ffmpeg, WAVEX, RF64, FLAC, OGG
  Vorbis, Opus, MP3, M4A/AAC, AIFF/AIFC; 8 to 96 kHz; 1 to 10 channels; 0 to ``max_seconds`` s) with
  content variants (speech-like, digital silence, DC, tone, white noise, channels that cancel, a dead
  channel, and for float files huge finite samples, int16-scale samples, NaN/Inf).  ffmpeg is slow, so
  the pool is made once per run; the cases only mutate its bytes.
* ``make_case(seed, index, pool)`` is case ``index``: a base (or none), a mutation (truncation, bit
  flips, inserted / deleted / zeroed bytes, a corrupted header field -- sample rate 0 or huge, channels
  0 or 65535, frame counts and data sizes huge --, an empty file, random bytes or text with an audio
  extension, a wrong extension, two files glued) and possibly an odd file name (non-UTF-8 bytes,
  unicode, spaces, a newline), or a special path (a symlink to /dev/zero, a FIFO, a directory named
  x.wav, a dangling symlink).  ``Case.materialise(folder)`` writes it.
* "speech" content is cut from the repository's ``examples/*.flac`` (real speech, so the scoring path
  is exercised past the speech-activity check); without them a synthetic speech-like signal is used.
* ``run_cli`` runs one ``voiceguard`` command in-process (click's CliRunner, fd 2 captured, a SIGALRM
  watchdog) or as a subprocess with a timeout; ``check_*`` turn its outcome into failures against the
  documented contract (README "CLI conventions", "Scan files", "Watermark ..."): exit code in the
  documented set and consistent with the rows, every stdout line a JSON row with no NaN/Infinity,
  one row per input, every error a one-line reason, no traceback or stray stderr line, inputs
  unchanged (sha256 before/after), no output left by a failed embed and no temporary file left.

Reproduce one case: ``python tests/malformed.py --seed S --pool P --case I --out DIR`` (P = pool size
of the run, printed with every failure).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import re
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

AUDIO_EXTS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".aiff", ".aif", ".aac", ".oga")
RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000)
NO_SPEECH_CONTENT = ("silence", "dc", "tone", "noise")  # what a VAD must call "no speech"
FLOAT_ONLY_CONTENT = ("huge", "int16scale", "nonfinite", "huge64")


# =============================================================================== base pool
@dataclass(frozen=True)
class Base:
    """One valid encoded file of the pool."""

    key: str  # e.g. "wav/PCM_16 16000Hz 1ch 1.500s speech"
    family: str  # wav, wavex, rf64, flac, ogg, opus, mp3, m4a, aiff, wav-ffmpeg-adpcm
    ext: str
    data: bytes
    sample_rate: int
    channels: int
    frames: int  # frames written (the source's length)
    content: str
    subtype: str
    max_seconds: float = 10.0  # of the pool it belongs to (for the reproduction command)

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate

    @property
    def in_range(self) -> bool:
        """Content that a reader must accept (finite, within [-1, 1] scale)."""
        return self.content not in FLOAT_ONLY_CONTENT

    @property
    def lossless(self) -> bool:
        return self.family in ("wav", "wavex", "rf64", "flac", "aiff") and "ADPCM" not in self.subtype \
            and self.subtype not in ("GSM610",)

    @property
    def declares_length(self) -> bool:
        """Containers whose header says how long the audio is (truncation is detectable)."""
        return self.family in ("wav", "wavex", "rf64", "flac", "aiff", "mp3", "m4a", "wav-ffmpeg-adpcm")


# (family, subtype, weight); subtype "ffmpeg:<codec>" means encoded by ffmpeg
FORMATS = [
    ("wav", "PCM_16", 6), ("wav", "PCM_U8", 2), ("wav", "PCM_24", 2), ("wav", "PCM_32", 2), ("wav", "FLOAT", 4),
    ("wav", "DOUBLE", 2), ("wav", "ALAW", 1), ("wav", "ULAW", 1), ("wav", "IMA_ADPCM", 1), ("wav", "MS_ADPCM", 1),
    ("wavex", "PCM_16", 1), ("rf64", "PCM_16", 1), ("rf64", "FLOAT", 1),
    ("flac", "PCM_16", 3), ("flac", "PCM_24", 1), ("flac", "PCM_S8", 1),
    ("ogg", "VORBIS", 2), ("aiff", "PCM_16", 1), ("aiff", "PCM_24", 1), ("aiff", "FLOAT", 1),
    ("wav-ffmpeg-adpcm", "ffmpeg:adpcm_ima_wav", 1), ("wav-ffmpeg-adpcm", "ffmpeg:adpcm_ms", 1),
    ("opus", "ffmpeg:libopus", 2), ("mp3", "ffmpeg:libmp3lame", 3), ("m4a", "ffmpeg:aac", 3),
]
EXT = {"wav": ".wav", "wavex": ".wav", "rf64": ".wav", "flac": ".flac", "ogg": ".ogg", "aiff": ".aiff",
       "wav-ffmpeg-adpcm": ".wav", "opus": ".opus", "mp3": ".mp3", "m4a": ".m4a"}
_SF_FORMAT = {"wav": "WAV", "wavex": "WAVEX", "rf64": "RF64", "flac": "FLAC", "ogg": "OGG", "aiff": "AIFF"}


def _speech_like(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """A voiced, formant-filtered, syllable-modulated signal (float64 [n]), peak 0.5."""
    from scipy.signal import lfilter

    t = np.arange(n) / sr
    f0 = rng.uniform(90, 220) * (1 + 0.06 * np.sin(2 * np.pi * rng.uniform(2, 5) * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    src = sum(np.sin(h * phase) / h for h in range(1, 25))
    r = 0.97
    x = src + 0.05 * rng.standard_normal(n)
    for fc in (rng.uniform(400, 800), rng.uniform(1000, 2200)):
        w = 2 * np.pi * min(fc, 0.45 * sr) / sr
        x = lfilter([1.0], [1.0, -2 * r * np.cos(w), r * r], x)
    env = np.clip(np.sin(2 * np.pi * rng.uniform(2.5, 4.5) * t), 0, None) ** 0.5
    x = x * env
    peak = np.abs(x).max() if n else 0.0
    return 0.5 * x / peak if peak > 0 else x


_SPEECH: list[tuple[np.ndarray, int]] | None = None
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _real_speech(rng: np.random.Generator, n: int, sr: int) -> np.ndarray | None:
    """An excerpt of the repository's example speech (``examples/*.flac``, plus the real LibriSpeech example
    read from ``../shared`` when it is there, as the set-up command does), tiled to ``n`` samples at
    ``sr``; None when the examples are absent (then the synthetic speech-like signal is used)."""
    global _SPEECH
    if _SPEECH is None:
        _SPEECH = []
        shared = EXAMPLES.parents[1] / "shared/data/speech/librispeech/train-clean-100/5339-14133-0000.flac"
        for p in sorted(EXAMPLES.glob("*.flac")) + ([shared] if shared.is_file() else []):
            x, r = sf.read(p, dtype="float64", always_2d=True)
            _SPEECH.append((x.mean(axis=1), r))
    if not _SPEECH:
        return None
    x, r = _SPEECH[int(rng.integers(len(_SPEECH)))]
    if r != sr:
        import soxr

        x = soxr.resample(x, r, sr)
    reps = -(-n // max(1, len(x)))
    x = np.tile(x, max(1, reps))
    start = int(rng.integers(0, max(1, len(x) - n)))
    return 0.9 * x[start:start + n] / max(1e-9, np.abs(x).max())


def _content(kind: str, rng: np.random.Generator, n: int, sr: int, ch: int) -> np.ndarray:
    """float64 [n, ch] for a content variant."""
    if kind == "silence":
        return np.zeros((n, ch))
    if kind == "dc":
        return np.full((n, ch), 0.5)
    if kind == "tone":
        t = np.arange(n) / sr
        return np.repeat((0.5 * np.sin(2 * np.pi * 1000 * t))[:, None], ch, axis=1)
    if kind == "noise":
        return 0.3 * rng.standard_normal((n, ch))
    if kind == "synthetic-speech" or not n:
        x = np.stack([_speech_like(rng, n, sr) for _ in range(ch)], axis=1) if n else np.zeros((0, ch))
    else:
        real = _real_speech(rng, n, sr)
        x = np.stack([_speech_like(rng, n, sr) if real is None else np.roll(real, 37 * c)
                      for c in range(ch)], axis=1)
    if kind == "cancel":  # pairs of channels that cancel in the mono mix
        for c in range(1, ch, 2):
            x[:, c] = -x[:, c - 1]
    elif kind == "dead-channel":
        x[:, -1] = 0.0
    elif kind == "huge":
        x = x * 2e30
    elif kind == "huge64":
        x = x * 2e300
    elif kind == "int16scale":
        x = np.round(x * 32767)
    elif kind == "nonfinite":
        if n:
            idx = rng.integers(0, n, size=max(1, n // 1000))
            x[idx, rng.integers(0, ch)] = rng.choice([np.nan, np.inf, -np.inf], size=idx.size)
    return x


def _ffmpeg_encode(x: np.ndarray, sr: int, codec: str, ext: str) -> bytes:
    ch = x.shape[1]
    fmt = {".opus": "opus", ".mp3": "mp3", ".m4a": "mp4", ".wav": "wav"}[ext]
    extra: list[str] = []
    if codec == "libmp3lame" and ch > 2:
        extra += ["-ac", "2"]
    if codec == "libopus":
        extra += ["-b:a", "48k"]
    if codec == "aac":
        extra += ["-b:a", "96k"]
    with tempfile.TemporaryDirectory(prefix="malformed-enc-") as d:
        out = os.path.join(d, "out" + ext)
        cmd = ["ffmpeg", "-v", "error", "-nostdin", "-y", "-fflags", "+bitexact", "-f", "f64le", "-ar", str(sr),
               "-ac", str(ch), "-i", "-", "-c:a", codec, "-flags:a", "+bitexact", *extra, "-fflags", "+bitexact",
               "-f", fmt, out]
        res = subprocess.run(cmd, input=np.ascontiguousarray(x, dtype="<f8").tobytes(), capture_output=True,
                             timeout=120)
        if res.returncode != 0:
            raise RuntimeError(res.stderr.decode(errors="replace")[-300:])
        return Path(out).read_bytes()


def _encode(family: str, subtype: str, x: np.ndarray, sr: int) -> bytes:
    if subtype.startswith("ffmpeg:"):
        return _ffmpeg_encode(x, sr, subtype[7:], EXT[family])
    if subtype not in ("FLOAT", "DOUBLE"):
        x = np.clip(np.nan_to_num(x), -1.0, 1.0)
    buf = io.BytesIO()
    sf.write(buf, x if subtype == "DOUBLE" else x.astype(np.float32), sr, subtype=subtype,
             format=_SF_FORMAT[family])
    data = bytearray(buf.getvalue())
    peak = data.find(b"PEAK", 0, 512)  # libsndfile stamps float files' PEAK chunk with the time: zero it
    if peak >= 0:
        data[peak + 12:peak + 16] = b"\0\0\0\0"
    if family == "ogg":  # libsndfile picks a random stream serial number: fix it (and each page's CRC)
        for start, end in list(_ogg_pages(bytes(data))):
            struct.pack_into("<I", data, start + 14, 0x5EED)
            _ogg_fix_crc(data, start, end)
    return bytes(data)


def _pick(rng: np.random.Generator, items, weights=None):
    if weights is None:
        return items[int(rng.integers(len(items)))]
    p = np.asarray(weights, dtype=float)
    return items[int(rng.choice(len(items), p=p / p.sum()))]


def make_base(seed: int, j: int, max_seconds: float = 10.0) -> Base:
    """Base ``j`` of the pool for ``seed``: a random valid encoding (deterministic)."""
    rng = np.random.default_rng([seed, 1, j])
    family, subtype, _ = _pick(rng, FORMATS, [w for *_, w in FORMATS])
    families = list(dict.fromkeys(f for f, *_ in FORMATS))
    if j < len(families):  # the first bases cover every family once, in a seeded order
        family = families[int(np.random.default_rng([seed, 0]).permutation(len(families))[j])]
        options = [f for f in FORMATS if f[0] == family]
        family, subtype, _ = _pick(rng, options, [w for *_, w in options])
    sr = int(_pick(rng, RATES, [2, 1, 6, 2, 2, 1, 3, 3, 1, 1]))
    ch = int(_pick(rng, list(range(1, 11)), [10, 6, 1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5]))
    if family == "flac" or family == "opus" or family == "m4a" or subtype == "VORBIS":
        ch = min(ch, 8)
    if family in ("wav-ffmpeg-adpcm",):
        ch = min(ch, 2)
    if family == "opus" and ch > 2:
        ch = 2  # ffmpeg's libopus needs a channel layout beyond stereo; keep it simple
    if family == "m4a" and ch in (7,):
        ch = 6
    if subtype == "ffmpeg:adpcm_ms" or subtype == "MS_ADPCM":
        ch = min(ch, 2)
    if subtype == "IMA_ADPCM":
        ch = min(ch, 2)
    length = _pick(rng, ["zero", "tiny", "short", "normal", "long"], [1, 1, 2, 12, 2])
    seconds = {"zero": 0.0, "tiny": rng.uniform(0, 0.01), "short": rng.uniform(0.05, 0.3),
               "normal": rng.uniform(min(0.5, max_seconds), min(3.0, max_seconds)),
               "long": rng.uniform(min(3.0, max_seconds), max_seconds)}[length]
    seconds = min(seconds, max_seconds)
    n = int(round(seconds * sr))
    contents = ["speech", "speech", "speech", "speech", "synthetic-speech", "silence", "dc", "tone", "noise"]
    if ch >= 2:
        contents += ["cancel", "dead-channel"]
    if subtype in ("FLOAT", "DOUBLE"):
        contents += ["huge", "int16scale", "nonfinite"] * 2 + (["huge64"] * 2 if subtype == "DOUBLE" else [])
    content = _pick(rng, contents)
    x = _content(content, rng, n, sr, ch)
    try:
        data = _encode(family, subtype, x, sr)
    except Exception:  # noqa: BLE001 - a combination the encoder refuses: fall back to a plain WAV
        family, subtype = "wav", "PCM_16"
        data = _encode(family, subtype, x, sr)
    key = f"{family}/{subtype.replace('ffmpeg:', '')} {sr}Hz {ch}ch {seconds:.3f}s {content}"
    return Base(key, family, EXT[family], data, sr, ch, n, content, subtype, max_seconds)


def build_pool(seed: int, size: int, max_seconds: float = 10.0) -> list[Base]:
    """``size`` bases for ``seed``; every family appears once before any repeats (when size allows)."""
    return [make_base(seed, j, max_seconds) for j in range(size)]


# =============================================================================== header surgery
def _riff_chunks(data: bytes, endian: str = "<"):
    """(id, offset, size) of each chunk after the 12-byte RIFF/RF64 (``<``) or FORM/AIFF (``>``) header."""
    pos = 12
    while pos + 8 <= len(data):
        cid = data[pos:pos + 4]
        size = struct.unpack_from(endian + "I", data, pos + 4)[0]
        yield cid, pos, size
        if size == 0xFFFFFFFF:
            break
        pos += 8 + size + (size & 1)


def _find_chunk(data: bytes, cid: bytes):
    for c, pos, size in _riff_chunks(data):
        if c == cid:
            return pos, size
    return None


def _aiff_chunks(data: bytes):
    return _riff_chunks(data, ">")


def _ext80(value: float) -> bytes:
    """IEEE 754 80-bit extended (AIFF sample rate)."""
    if value == 0:
        return b"\0" * 10
    m, e = math.frexp(value)
    e += 16382
    mant = int(m * (1 << 64))
    return struct.pack(">HQ", e & 0x7FFF, mant & 0xFFFFFFFFFFFFFFFF)


_CRC_TABLE = []
for _i in range(256):
    _r = _i << 24
    for _ in range(8):
        _r = ((_r << 1) ^ 0x04C11DB7) if _r & 0x80000000 else (_r << 1)
    _CRC_TABLE.append(_r & 0xFFFFFFFF)


def _ogg_crc(page: bytes) -> int:
    crc = 0
    for b in page:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[((crc >> 24) & 0xFF) ^ b]
    return crc


def _ogg_pages(data: bytes):
    pos = 0
    while True:
        pos = data.find(b"OggS", pos)
        if pos < 0 or pos + 27 > len(data):
            return
        nseg = data[pos + 26]
        lace = data[pos + 27:pos + 27 + nseg]
        end = pos + 27 + nseg + sum(lace)
        yield pos, end
        pos = max(end, pos + 1)


def _ogg_fix_crc(buf: bytearray, start: int, end: int) -> None:
    buf[start + 22:start + 26] = b"\0\0\0\0"
    struct.pack_into("<I", buf, start + 22, _ogg_crc(bytes(buf[start:end])))


def header_mutations(base: Base) -> list[str]:
    """Names of the header-field corruptions that apply to this base's container."""
    if base.family in ("wav", "wavex", "rf64", "wav-ffmpeg-adpcm"):
        names = ["sample_rate=0", "sample_rate=huge", "channels=0", "channels=65535", "block_align=0",
                 "bits=0", "bits=huge", "format_tag=random", "data_size=huge", "data_size=0",
                 "data_size=file+1", "riff_size=0", "riff_size=huge", "byte_rate=0"]
        if base.family == "rf64":
            names += ["ds64_data_size=huge", "ds64_sample_count=huge"]
        return names
    if base.family == "aiff":
        return ["sample_rate=0", "sample_rate=huge", "channels=0", "channels=65535", "frames=huge", "bits=0",
                "ssnd_size=huge"]
    if base.family == "flac":
        return ["total_samples=huge", "total_samples=0", "sample_rate=0", "channels=8", "block_size=0",
                "bits=4", "metadata_length=huge"]
    if base.family == "mp3":
        return ["id3_size=huge", "xing_frames=huge", "xing_frames=0", "frame_sync=bad_rate"]
    if base.family == "m4a":
        return ["mdhd_timescale=0", "mdhd_duration=huge", "mvhd_duration=huge", "mp4a_channels=0",
                "mp4a_channels=65535", "mp4a_rate=0", "stsz_count=huge", "atom_size=huge"]
    if base.family in ("ogg", "opus"):
        return ["id_channels=0", "id_channels=255", "id_rate=0", "id_rate=huge", "last_granule=huge",
                "granule=negative"]
    return []


def corrupt_header(base: Base, name: str, rng: np.random.Generator) -> bytes | None:
    """``base.data`` with one header field set as ``name`` says; None when the field is not there."""
    buf = bytearray(base.data)
    field_, _, value = name.partition("=")
    huge32 = 0xFFFFFFF0
    if base.family in ("wav", "wavex", "rf64", "wav-ffmpeg-adpcm"):
        fmt = _find_chunk(base.data, b"fmt ")
        data = _find_chunk(base.data, b"data")
        if fmt is None:
            return None
        o = fmt[0] + 8
        if field_ == "sample_rate":
            struct.pack_into("<I", buf, o + 4, 0 if value == "0" else int(rng.choice([huge32, 0x7FFFFFFF, 10**9])))
        elif field_ == "channels":
            struct.pack_into("<H", buf, o + 2, int(value))
        elif field_ == "block_align":
            struct.pack_into("<H", buf, o + 12, 0)
        elif field_ == "bits":
            struct.pack_into("<H", buf, o + 14, 0 if value == "0" else 0xFFFF)
        elif field_ == "format_tag":
            struct.pack_into("<H", buf, o, int(rng.integers(0, 0x10000)))
        elif field_ == "byte_rate":
            struct.pack_into("<I", buf, o + 8, 0)
        elif field_ == "data_size":
            if data is None:
                return None
            v = {"huge": huge32, "0": 0, "file+1": len(buf) - data[0] - 8 + 1}[value]
            struct.pack_into("<I", buf, data[0] + 4, v)
        elif field_ == "riff_size":
            struct.pack_into("<I", buf, 4, 0 if value == "0" else huge32)
        elif field_ in ("ds64_data_size", "ds64_sample_count"):
            ds = _find_chunk(base.data, b"ds64")
            if ds is None:
                return None
            struct.pack_into("<Q", buf, ds[0] + 8 + (8 if field_ == "ds64_data_size" else 16), 1 << 60)
        else:
            return None
        return bytes(buf)
    if base.family == "aiff":
        comm = ssnd = None
        for cid, pos, size in _aiff_chunks(base.data):
            if cid == b"COMM":
                comm = pos
            elif cid == b"SSND":
                ssnd = pos
        if comm is None:
            return None
        o = comm + 8
        if field_ == "channels":
            struct.pack_into(">H", buf, o, int(value))
        elif field_ == "frames":
            struct.pack_into(">I", buf, o + 2, huge32)
        elif field_ == "bits":
            struct.pack_into(">H", buf, o + 6, 0)
        elif field_ == "sample_rate":
            buf[o + 8:o + 18] = _ext80(0.0 if value == "0" else 1e15)
        elif field_ == "ssnd_size" and ssnd is not None:
            struct.pack_into(">I", buf, ssnd + 4, huge32)
        else:
            return None
        return bytes(buf)
    if base.family == "flac":
        if base.data[:4] != b"fLaC" or len(buf) < 42:
            return None
        if field_ == "metadata_length":
            buf[5:8] = b"\xff\xff\xf0"
            return bytes(buf)
        bits = int.from_bytes(buf[8:26], "big")  # first 144 bits of STREAMINFO

        def put(offset: int, width: int, v: int) -> None:
            nonlocal bits
            shift = 144 - offset - width
            mask = ((1 << width) - 1) << shift
            bits = (bits & ~mask) | ((v << shift) & mask)

        if field_ == "total_samples":
            put(108, 36, (1 << 36) - 1 if value == "huge" else 0)
        elif field_ == "sample_rate":
            put(80, 20, 0)
        elif field_ == "channels":
            put(100, 3, 7)
        elif field_ == "block_size":
            put(0, 16, 0)
            put(16, 16, 0)
        elif field_ == "bits":
            put(103, 5, 3)
        buf[8:26] = bits.to_bytes(18, "big")
        return bytes(buf)
    if base.family == "mp3":
        if field_ == "id3_size":
            if base.data[:3] != b"ID3":
                return None
            buf[6:10] = b"\x7f\x7f\x7f\x7f"
            return bytes(buf)
        if field_ == "xing_frames":
            pos = max(base.data.find(b"Xing"), base.data.find(b"Info"))
            if pos < 0:
                return None
            struct.pack_into(">I", buf, pos + 8, huge32 if value == "huge" else 0)
            return bytes(buf)
        if field_ == "frame_sync":
            start = 10 + int.from_bytes(bytes(b & 0x7F for b in base.data[6:10]), "big") \
                if base.data[:3] == b"ID3" else 0
            i = start
            while i + 4 < len(buf) and not (buf[i] == 0xFF and buf[i + 1] & 0xE0 == 0xE0):
                i += 1
            if i + 4 >= len(buf):
                return None
            buf[i + 2] |= 0xFC  # bitrate index 15 and sample-rate index 3: both invalid
            return bytes(buf)
        return None
    if base.family == "m4a":
        def atom(name: bytes) -> int | None:
            p = base.data.find(name)
            return p if p >= 4 else None

        if field_ in ("mdhd_timescale", "mdhd_duration", "mvhd_duration"):
            p = atom(b"mdhd" if field_.startswith("mdhd") else b"mvhd")
            if p is None:
                return None
            version = buf[p + 4]
            if version != 0:
                return None
            o = p + 4 + 4 + 8  # version/flags, creation, modification
            if field_ == "mdhd_timescale":
                struct.pack_into(">I", buf, o, 0)
            else:
                struct.pack_into(">I", buf, o + 4, huge32)
            return bytes(buf)
        if field_ in ("mp4a_channels", "mp4a_rate"):
            p = atom(b"mp4a")
            if p is None:
                return None
            o = p + 4 + 6 + 2 + 8
            if field_ == "mp4a_channels":
                struct.pack_into(">H", buf, o, int(value))
            else:
                struct.pack_into(">I", buf, o + 8, 0)
            return bytes(buf)
        if field_ == "stsz_count":
            p = atom(b"stsz")
            if p is None:
                return None
            struct.pack_into(">I", buf, p + 4 + 4 + 4, huge32)
            return bytes(buf)
        if field_ == "atom_size":
            p = atom(b"moov")
            if p is None:
                return None
            struct.pack_into(">I", buf, p - 4, huge32)
            return bytes(buf)
        return None
    if base.family in ("ogg", "opus"):
        pages = list(_ogg_pages(base.data))
        if not pages:
            return None
        if field_ in ("id_channels", "id_rate"):
            start, end = pages[0]
            head = buf.find(b"\x01vorbis", start, end)
            if head >= 0:
                o_ch, o_rate = head + 7 + 4, head + 7 + 5
            else:
                head = buf.find(b"OpusHead", start, end)
                if head < 0:
                    return None
                o_ch, o_rate = head + 9, head + 12
            if field_ == "id_channels":
                buf[o_ch] = int(value)
            else:
                struct.pack_into("<I", buf, o_rate, 0 if value == "0" else huge32)
            _ogg_fix_crc(buf, start, end)
            return bytes(buf)
        if field_ == "last_granule" or field_ == "granule":
            start, end = pages[-1] if field_ == "last_granule" else pages[int(rng.integers(len(pages)))]
            struct.pack_into("<q", buf, start + 6, (1 << 62) if value == "huge" else -12345)
            _ogg_fix_crc(buf, start, end)
            return bytes(buf)
    return None


# =============================================================================== cases
@dataclass(frozen=True)
class Case:
    """One generated input: ``kind`` ``file`` (bytes ``data`` under ``name``) or a special path."""

    seed: int
    pool: int
    index: int
    kind: str  # file | symlink-dev-zero | fifo | directory | dangling-symlink
    name: bytes  # the file name (bytes: may be non-UTF-8); always starts with "c{index:05d}"
    data: bytes
    description: str
    base: Base | None = None
    mutation: str = "none"  # valid | truncate | header:<field> | ... (the failure checks use it)
    max_seconds: float = 10.0

    @property
    def case_id(self) -> str:
        return f"{self.seed}:{self.index}"

    @property
    def ext(self) -> str:
        return os.path.splitext(os.fsdecode(self.name))[1].lower()

    @property
    def regular(self) -> bool:
        return self.kind == "file"

    @property
    def reproduce(self) -> str:
        if self.pool == 0:  # a header_cases() case
            return f"python tests/malformed.py --seed {self.seed} --headers --case {self.index} --out DIR"
        return (f"python tests/malformed.py --seed {self.seed} --pool {self.pool} --max-seconds {self.max_seconds:g} "
                f"--case {self.index} --out DIR")

    def materialise(self, folder: str | os.PathLike) -> str:
        """Create the case in ``folder``; return its path (str, surrogate-escaped when not UTF-8)."""
        path = os.path.join(os.fsencode(folder), self.name)
        if self.kind == "file":
            with open(path, "wb") as f:
                f.write(self.data)
        elif self.kind == "symlink-dev-zero":
            os.symlink(b"/dev/zero", path)
        elif self.kind == "dangling-symlink":
            os.symlink(os.path.join(os.fsencode(folder), b"does-not-exist.wav"), path)
        elif self.kind == "fifo":
            os.mkfifo(path)
        elif self.kind == "directory":
            os.mkdir(path)
            with open(os.path.join(path, b"readme.txt"), "wb") as f:
                f.write(b"a folder named like an audio file\n")
        return os.fsdecode(path)


MUTATIONS = [  # (name, weight)
    ("valid", 22), ("truncate", 12), ("truncate-header", 3), ("bitflip", 8), ("bitflip-header", 6),
    ("insert", 4), ("delete", 4), ("zero-range", 3), ("header", 16), ("empty", 2), ("random-bytes", 3),
    ("text", 1), ("wrong-ext", 4), ("glued", 2), ("special", 3),
]


def _name(index: int, rng: np.random.Generator, ext: str, odd: str | None) -> bytes:
    stem = f"c{index:05d}".encode()
    if odd == "non-utf8":
        stem += b"-\xff\xfe\xe9t\xe9"
    elif odd == "unicode":
        stem += "-\u00e9t\u00e9 \u58f0\u97f3-\U0001F3A4".encode()
    elif odd == "spaces":
        stem += b" with  spaces & 'quotes'"
    elif odd == "newline":
        stem += b"-line1\nline2"
    elif odd == "dash":
        stem += b"--format"
    return stem + ext.encode()


def make_case(seed: int, index: int, pool: list[Base]) -> Case:
    """Case ``index`` of the run ``seed`` over ``pool`` (deterministic)."""
    rng = np.random.default_rng([seed, 2, index])
    max_s = pool[0].max_seconds
    mutation = _pick(rng, [m for m, _ in MUTATIONS], [w for _, w in MUTATIONS])
    base = pool[int(rng.integers(len(pool)))]
    odd = None
    if rng.random() < 0.08:
        odd = _pick(rng, ["non-utf8", "unicode", "spaces", "newline", "dash"], [4, 2, 2, 1, 1])
    data, ext = base.data, base.ext
    desc = f"{base.key}"
    n = len(data)
    if mutation == "valid":
        desc += " unmodified"
    elif mutation == "truncate":
        cut = int(rng.integers(0, max(1, n)))
        data = data[:cut]
        desc += f" truncated to {cut} of {n} bytes"
    elif mutation == "truncate-header":
        cut = int(rng.integers(0, min(n, 128) + 1))
        data = data[:cut]
        desc += f" truncated to {cut} of {n} bytes (inside the header)"
    elif mutation in ("bitflip", "bitflip-header"):
        buf = bytearray(data)
        if buf:
            span = min(len(buf), 256) if mutation == "bitflip-header" else len(buf)
            k = int(rng.integers(1, 17))
            pos = rng.integers(0, span, size=k)
            for p in pos:
                buf[p] ^= 1 << int(rng.integers(8))
            desc += f" {k} bit(s) flipped at bytes {sorted(int(p) for p in pos)[:8]}"
        data = bytes(buf)
    elif mutation == "insert":
        p = int(rng.integers(0, n + 1))
        k = int(rng.integers(1, 4097))
        data = data[:p] + rng.bytes(k) + data[p:]
        desc += f" {k} random bytes inserted at {p}"
    elif mutation == "delete":
        p = int(rng.integers(0, max(1, n)))
        k = int(rng.integers(1, 4097))
        data = data[:p] + data[p + k:]
        desc += f" bytes {p}..{p + k} deleted"
    elif mutation == "zero-range":
        p = int(rng.integers(0, max(1, n)))
        k = int(rng.integers(1, 65537))
        data = data[:p] + bytes(min(k, n - p)) + data[p + k:]
        desc += f" bytes {p}..{p + k} zeroed"
    elif mutation == "header":
        names = header_mutations(base)
        got = None
        if names:
            hname = _pick(rng, names)
            got = corrupt_header(base, hname, rng)
        if got is None:  # field absent (e.g. a zero-length file): fall back to a header bit flip
            buf = bytearray(data)
            for p in rng.integers(0, max(1, min(len(buf), 64)), size=4 if buf else 0):
                buf[p] ^= 0xFF
            data = bytes(buf)
            desc += " header bytes inverted"
            mutation = "bitflip-header"
        else:
            data = got
            desc += f" header {hname}"
            mutation = f"header:{hname}"
    elif mutation == "empty":
        data, desc = b"", "zero-length file"
        ext = _pick(rng, list(AUDIO_EXTS))
        base = None
    elif mutation == "random-bytes":
        k = int(rng.integers(1, 200_000))
        prefix = _pick(rng, [b"", b"RIFF", b"fLaC", b"OggS", b"ID3\x03\x00", b"FORM", b"\x00\x00\x00\x20ftypM4A "])
        data = prefix + rng.bytes(k)
        ext = _pick(rng, list(AUDIO_EXTS))
        desc = f"{k} random bytes after {prefix!r}"
        base = None
    elif mutation == "text":
        data = _pick(rng, [b"hello world\n", "\u00e9t\u00e9\n".encode() * 1000, b"<html></html>\n",
                           b"RIFF\x00\x00\x00\x00WAVE"])
        ext = _pick(rng, list(AUDIO_EXTS))
        desc = f"text file ({len(data)} bytes)"
        base = None
    elif mutation == "wrong-ext":
        ext = _pick(rng, [e for e in AUDIO_EXTS if e != base.ext] + [".txt", ".bin", ""])
        desc += f" named {ext or 'without extension'}"
    elif mutation == "glued":
        other = pool[int(rng.integers(len(pool)))]
        data = data + other.data
        desc += f" followed by {other.key}"
    elif mutation == "special":
        kind = _pick(rng, ["symlink-dev-zero", "fifo", "directory", "dangling-symlink"])
        return Case(seed, len(pool), index, kind, _name(index, rng, ".wav", None), b"", kind + " named .wav", None,
                    "special", max_s)
    if odd:
        desc += f" (file name: {odd})"
    return Case(seed, len(pool), index, "file", _name(index, rng, ext, odd), data, desc, base, mutation, max_s)


def generate(seed: int, n: int, pool: list[Base]) -> list[Case]:
    """Cases ``0 .. n-1`` of the run ``seed`` over ``pool``."""
    return [make_case(seed, i, pool) for i in range(n)]


def reference_bases(seed: int, seconds: float = 1.0, sample_rate: int = 16000, channels: int = 1) -> list[Base]:
    """One plain base per family (its first subtype in ``FORMATS``): speech, in range, mono 16 kHz."""
    out = []
    for family in dict.fromkeys(f for f, *_ in FORMATS):
        subtype = next(st for f, st, _ in FORMATS if f == family)
        rng = np.random.default_rng([seed, 4, len(out)])
        n = int(round(seconds * sample_rate))
        x = _content("speech", rng, n, sample_rate, channels)
        key = f"{family}/{subtype.replace('ffmpeg:', '')} {sample_rate}Hz {channels}ch {seconds:.3f}s speech"
        out.append(Base(key, family, EXT[family], _encode(family, subtype, x, sample_rate), sample_rate,
                        channels, n, "speech", subtype))
    return out


def header_cases(seed: int, bases: list[Base], first_index: int = 90000) -> list[Case]:
    """Every header-field corruption of every base (``reference_bases``: each kind in every run),
    numbered from ``first_index``.  Reproduce with ``--headers``."""
    out = []
    for b in bases:
        for name in header_mutations(b):
            i = first_index + len(out)
            data = corrupt_header(b, name, np.random.default_rng([seed, 3, i]))
            if data is not None:
                out.append(Case(seed, 0, i, "file", f"c{i:05d}{b.ext}".encode(), data,
                                f"{b.key} header {name}", b, f"header:{name}", b.max_seconds))
    return out


# =============================================================================== running the CLI
@dataclass
class Run:
    """One CLI invocation."""

    args: list[str]
    exit_code: int | None  # None: hung (killed after the timeout)
    stdout: str
    stderr: str
    seconds: float
    exception: str | None = None  # an exception that escaped click (in-process), formatted
    utf8: bool = True  # stdout and stderr were valid UTF-8 (subprocess runs)
    stalled: bool = False  # killed after ``stall`` seconds without output: the rows so far are kept


class _Hang(BaseException):
    pass


def _alarm(signum, frame):
    raise _Hang()


def voiceguard_exe() -> list[str]:
    exe = Path(sys.executable).with_name("voiceguard")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "voiceguard.cli"]


def run_cli(args: list[str], *, subprocess_mode: bool = False, timeout: float = 600.0,
            stall: float | None = None, startup: float = 180.0) -> Run:
    """Run ``voiceguard ARGS`` in-process (CliRunner; fd 2 captured too, so decoder messages count) or as
    a subprocess (its own session, killed after ``timeout``, or -- with ``stall`` -- after ``stall``
    seconds without a new output line once the first arrived (``startup`` before it): a streamed batch
    then keeps the rows it printed and says which inputs got none)."""
    t0 = time.perf_counter()
    if subprocess_mode:
        import selectors

        proc = subprocess.Popen(voiceguard_exe() + [os.fsencode(a) for a in args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True)
        out, err = bytearray(), bytearray()
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ, out)
        sel.register(proc.stderr, selectors.EVENT_READ, err)
        last_row, open_streams, killed, stalled = None, 2, False, False
        while open_streams:
            now = time.perf_counter()
            limit = t0 + timeout
            if stall is not None:
                limit = min(limit, (last_row + stall) if last_row is not None else t0 + startup)
            if now >= limit:
                os.killpg(proc.pid, signal.SIGKILL)
                killed, stalled = True, stall is not None and now < t0 + timeout
                break
            for key, _ in sel.select(timeout=min(5.0, limit - now)):
                chunk = os.read(key.fileobj.fileno(), 1 << 16)
                if not chunk:
                    sel.unregister(key.fileobj)
                    open_streams -= 1
                    continue
                key.data.extend(chunk)
                if key.data is out and b"\n" in chunk:
                    last_row = time.perf_counter()
        sel.close()
        code: int | None = None if killed else proc.wait()
        if killed:
            proc.wait()
        return Run(args, code, out.decode("utf-8", errors="replace"), err.decode("utf-8", errors="replace"),
                   time.perf_counter() - t0, utf8=_utf8(bytes(out)) and _utf8(bytes(err)), stalled=stalled)
    from click.testing import CliRunner

    from voiceguard.cli import cli

    runner = CliRunner()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as fd_err:
        os.dup2(fd_err.fileno(), 2)
        old = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(max(1, int(timeout)))
        hung = False
        try:
            res = runner.invoke(cli, args, catch_exceptions=True)
        except _Hang:
            hung, res = True, None
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
            os.dup2(saved, 2)
            os.close(saved)
        fd_err.seek(0)
        raw_err = fd_err.read().decode("utf-8", errors="replace")
    if hung:
        return Run(args, None, "", raw_err, time.perf_counter() - t0)
    exc = None
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        import traceback

        exc = "".join(traceback.format_exception(*res.exc_info))
    return Run(args, res.exit_code, res.stdout, res.stderr + raw_err, time.perf_counter() - t0, exc)


def _utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


# =============================================================================== checks
@dataclass
class Failure:
    kind: str  # e.g. "traceback", "nan-output", "exit-code", "unexpected-failure", ...
    command: str  # scan | wm-detect | wm-embed
    case: str | None  # case id, or None when about the whole invocation
    description: str
    detail: str
    reproduce: str = ""

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Report:
    """Everything a set of invocations produced: outcome counts and failures."""

    cases: int = 0
    invocations: int = 0
    seconds: float = 0.0
    outcomes: Counter = field(default_factory=Counter)  # "scan ok/bonafide", "scan error", "scan exit 2"...
    failures: list[Failure] = field(default_factory=list)

    def fail(self, kind, command, case, detail):
        c = case if isinstance(case, Case) else None
        self.failures.append(Failure(kind, command, c.case_id if c else case, c.description if c else "",
                                     str(detail)[:2000], c.reproduce if c else ""))

    def by_kind(self) -> Counter:
        return Counter(f.kind for f in self.failures)


def _strict_json(line: str):
    def bad(const):
        raise ValueError(f"non-finite number {const} in JSON")

    return json.loads(line, parse_constant=bad)


def _index_of(path: str) -> int | None:
    m = re.match(r"c(\d{5,})", os.path.basename(path.rstrip("/")))
    return int(m.group(1)) if m else None


_TEMP_LEAK = re.compile(r"/tmp/voiceguard-|\.part\b|tmp[a-z0-9_]{6,}")
STDERR_OK = re.compile(r"^voiceguard: (?!internal error)")
PROGRESS = re.compile(r"^[\w -]+: \d+/\d+ files\b")  # periodic progress lines (issue #16, section 7)


def check_common(run: Run, command: str, rep: Report, cases: list[Case]) -> list[dict]:
    """Checks every invocation shares; returns the parsed stdout rows."""
    rep.invocations += 1
    rep.seconds += run.seconds
    scope = ",".join(c.case_id for c in cases[:6]) + (f" (+{len(cases) - 6})" if len(cases) > 6 else "")
    ended = run.exit_code if run.exit_code is not None else "stalled" if run.stalled else "hang"
    rep.outcomes[f"{command} exit {ended}"] += 1
    if run.exit_code is None and not run.stalled:
        for c in cases:
            rep.fail("hang", command, c, f"no result within the timeout ({run.seconds:.0f} s) in {scope}")
        return []
    if run.exception:
        rep.fail("traceback", command, scope, run.exception[-1500:])
    if not run.utf8:
        rep.fail("invalid-utf8-output", command, scope, "stdout or stderr is not valid UTF-8")
    for stream_name, text in (("stdout", run.stdout), ("stderr", run.stderr)):
        if "Traceback (most recent call last)" in text:
            rep.fail("traceback", command, scope, f"{stream_name}: {text[text.find('Traceback'):][:1500]}")
    warned: Counter = Counter()
    for line in run.stderr.splitlines():
        if not line.strip():
            continue
        if line.startswith("voiceguard: warning:"):  # decoder messages: one line per file, naming it
            m = re.search(r"c(\d{5})", line)
            if m is None:
                rep.fail("warning-without-file", command, scope, line[:300])
            else:
                warned[int(m.group(1))] += 1
                if warned[int(m.group(1))] == 2:
                    rep.fail("repeated-warning", command, scope, line[:300])
        if line.startswith("voiceguard: internal error"):
            rep.fail("internal-error", command, scope, line)
        elif not STDERR_OK.match(line) and not PROGRESS.match(line):
            rep.fail("stray-stderr", command, scope, line[:300])
    rows = []
    for line in run.stdout.splitlines():
        if not line.strip():
            continue
        try:
            row = _strict_json(line)
        except ValueError as e:
            kind = "nan-output" if "non-finite" in str(e) else "unparseable-row"
            rep.fail(kind, command, scope, f"{e}: {line[:300]}")
            continue
        if not isinstance(row, dict) or "status" not in row:
            rep.fail("unparseable-row", command, scope, line[:300])
            continue
        rows.append(row)
    return rows


def _finite(v, lo=-math.inf, hi=math.inf) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and lo <= v <= hi


def _check_error_row(row: dict, command: str, rep: Report, case: Case | None) -> None:
    reason = row.get("error")
    if not isinstance(reason, str) or not reason.strip():
        rep.fail("error-without-reason", command, case, json.dumps(row)[:300])
        return
    if "\n" in reason or "Traceback" in reason:
        rep.fail("multi-line-error", command, case, reason[:300])
    if "unexpected failure" in reason:
        rep.fail("unexpected-failure", command, case, reason[:300])
    if _TEMP_LEAK.search(reason):
        rep.fail("temp-name-in-message", command, case, reason[:300])


def _rows_by_case(rows: list[dict], key: str, cases: list[Case], command: str, rep: Report,
                  expected: list[Case]) -> dict[int, dict]:
    by_index: dict[int, list[dict]] = {}
    for r in rows:
        i = _index_of(str(r.get(key) or ""))
        by_index.setdefault(i, []).append(r)
    known = {c.index: c for c in cases}
    out = {}
    for c in expected:
        got = by_index.get(c.index, [])
        if len(got) != 1:
            rep.fail("missing-row" if not got else "duplicate-row", command, c, f"{len(got)} rows for this input")
        if got:
            out[c.index] = got[0]
    for i, rs in by_index.items():
        if i is None or i not in known:
            rep.fail("unexpected-row", command, None, json.dumps(rs[0])[:300])
    return out


def _is_no_speech_content(c: Case) -> bool:
    return c.base is not None and c.mutation == "valid" and c.base.content in NO_SPEECH_CONTENT


def _should_decode(c: Case) -> bool:
    """An unmodified, in-range, long-enough base with a supported channel count: must not be an error."""
    b = c.base
    return (c.mutation in ("valid", "wrong-ext") and b is not None and b.in_range and b.channels <= 8
            and b.seconds >= 0.3 and (c.mutation == "valid" or c.ext in AUDIO_EXTS))


def _row_is_ok(row: dict, command: str, rep: Report, c: Case) -> bool:
    """Check an error row (or a row with an unknown status) against the contract; True for an ok row."""
    st = row.get("status")
    if st == "error":
        _check_error_row(row, command, rep, c)
        if c.kind in ("fifo", "symlink-dev-zero") and "no such file" in (row.get("error") or ""):
            rep.fail("special-file-misreported", command, c, row.get("error"))
        if _should_decode(c) and "too short" not in row.get("error", ""):
            rep.fail("valid-input-rejected", command, c, row.get("error"))
        return False
    if st != "ok":
        rep.fail("bad-status", command, c, json.dumps(row)[:300])
        return False
    return True


def _rows_of_run(run: Run, command: str, cases: list[Case], expected: list[Case], rep: Report):
    """The rows a run printed and the row of each expected case; ``(None, None)`` when it printed none to
    judge (the process did not end and did not stall). A stalled run is judged on the rows before it."""
    rows = check_common(run, command, rep, cases)
    if run.exit_code is None and not run.stalled:
        return None, None
    if run.stalled:  # the caller names the input that stalled; check the rows printed before it
        got = {_index_of(str(r.get("path") or "")) for r in rows}
        expected = [c for c in expected if c.index in got]
    return rows, _rows_by_case(rows, "path", cases, command, rep, expected)


def check_scan(run: Run, cases: list[Case], expected: list[Case], rep: Report) -> None:
    """``scan --format jsonl`` over ``cases``; ``expected``: the inputs that must each get one row."""
    rows, by_case = _rows_of_run(run, "scan", cases, expected, rep)
    if rows is None:
        return
    any_err = any(r.get("status") == "error" for r in rows)
    any_spoof = any(r.get("verdict") in ("spoof", "partial-spoof") for r in rows)
    any_nospeech = any(r.get("verdict") == "no-speech" for r in rows)
    code = run.exit_code
    if run.stalled:
        pass
    elif code not in (0, 1, 2, 4):
        rep.fail("exit-code", "scan", ",".join(c.case_id for c in cases[:3]), f"exit {code}")
    elif rows:  # documented priority: 2 any error, 1 any spoof / partial spoof, 4 any no-speech, else 0
        want = 2 if any_err else 1 if any_spoof else 4 if any_nospeech else 0
        if code != want:
            rep.fail("exit-code", "scan", ",".join(c.case_id for c in cases[:3]),
                     f"exit {code}, expected {want} (errors {any_err}, spoof {any_spoof}, no-speech {any_nospeech})")
    by_idx = {c.index: c for c in cases}
    for i, row in by_case.items():
        c = by_idx[i]
        st = row.get("status")
        rep.outcomes[f"scan {st}" + (f"/{row.get('verdict')}" if st == "ok" else "")] += 1
        if not _row_is_ok(row, "scan", rep, c):
            continue
        if c.kind != "file":
            rep.fail("special-file-accepted", "scan", c, json.dumps(row)[:300])
        verdict = row.get("verdict")
        if verdict not in ("bonafide", "spoof", "partial-spoof", "no-speech"):
            rep.fail("bad-verdict", "scan", c, json.dumps(row)[:300])
        if verdict == "no-speech":  # documented: no p_spoof / llr, the reason in `note`
            if row.get("p_spoof") is not None or row.get("llr") is not None or not row.get("note"):
                rep.fail("bad-no-speech-row", "scan", c, json.dumps(row)[:300])
        elif not _finite(row.get("p_spoof"), 0, 1) or not _finite(row.get("llr")):
            rep.fail("nan-output", "scan", c, json.dumps(row)[:300])
        if row.get("speech_s") is not None and not _finite(row.get("speech_s"), 0):
            rep.fail("nan-output", "scan", c, f"speech_s={row.get('speech_s')!r}")
        for k in ("duration_s",):
            if not _finite(row.get(k), 0):
                rep.fail("nan-output", "scan", c, f"{k}={row.get(k)!r}")
        if row.get("wm_probability") is not None and not _finite(row.get("wm_probability"), 0, 1):
            rep.fail("nan-output", "scan", c, f"wm_probability={row.get('wm_probability')!r}")
        sr = row.get("sample_rate")
        if isinstance(sr, int) and not 1000 <= sr <= 1_000_000:  # a 1 Hz header makes 1 s of data 4 hours
            rep.fail("implausible-rate-accepted", "scan", c, f"sample_rate {sr}, duration_s {row.get('duration_s')}")
        if str(row.get("watermark") or "").startswith("error"):
            rep.fail("watermark-column-error", "scan", c, row.get("watermark"))
        if c.base is not None and not c.base.in_range and c.mutation == "valid":
            rep.fail("out-of-range-accepted", "scan", c, json.dumps(row)[:300])
        if c.base is not None and c.base.channels > 8 and c.mutation == "valid":
            rep.fail("too-many-channels-accepted", "scan", c, json.dumps(row)[:300])
        if _is_no_speech_content(c) and verdict in ("bonafide", "spoof", "partial-spoof"):
            rep.fail("no-speech-scored", "scan", c, f"{verdict} p_spoof={row.get('p_spoof')} llr={row.get('llr')}")
        _check_duration(row.get("duration_s"), c, "scan", rep)


def _check_duration(dur, c: Case, command: str, rep: Report) -> None:
    if c.base is None or not _finite(dur):
        return
    expect = c.base.seconds
    tol = 0.011 if c.base.lossless else 0.03
    if "IMA" in c.base.subtype.upper() or c.base.family == "wav-ffmpeg-adpcm":
        # IMA ADPCM writers (libsndfile's and ffmpeg's) and ffmpeg's MS ADPCM store the block-padded length
        # in the fact chunk: the file itself declares up to two blocks more than the source had (only
        # libsndfile's MS ADPCM and GSM 6.10 keep the source's length; see voiceguard/audio.py)
        tol = max(tol, 2 * 2041 / c.base.sample_rate)
    if c.mutation in ("valid", "wrong-ext") and abs(dur - expect) > tol:
        rep.fail("wrong-duration", command, c, f"duration {dur} s, source {expect:.4f} s")
    elif c.mutation == "truncate" and c.base.declares_length and dur < expect - 0.05:
        rep.fail("truncation-undetected", command, c, f"ok with duration {dur} s of {expect:.3f} s")


def check_wm_detect(run: Run, cases: list[Case], expected: list[Case], rep: Report) -> None:
    rows, by_case = _rows_of_run(run, "wm-detect", cases, expected, rep)
    if rows is None:
        return
    any_err = any(r.get("status") == "error" for r in rows)
    any_found = any(r.get("detected") is True for r in rows)
    want = 2 if any_err else 1 if any_found else 0
    if run.stalled:
        pass
    elif rows and run.exit_code != want:
        rep.fail("exit-code", "wm-detect", ",".join(c.case_id for c in cases[:3]),
                 f"exit {run.exit_code}, expected {want}")
    elif run.exit_code not in (0, 1, 2):
        rep.fail("exit-code", "wm-detect", ",".join(c.case_id for c in cases[:3]), f"exit {run.exit_code}")
    by_idx = {c.index: c for c in cases}
    for i, row in by_case.items():
        c = by_idx[i]
        st = row.get("status")
        rep.outcomes[f"wm-detect {st}"] += 1
        if not _row_is_ok(row, "wm-detect", rep, c):
            continue
        if not isinstance(row.get("detected"), bool) or not _finite(row.get("probability"), 0, 1) \
                or not _finite(row.get("duration_s"), 0) or not _finite(row.get("threshold"), 0, 1):
            rep.fail("nan-output", "wm-detect", c, json.dumps(row)[:300])
        if any(not _finite(v) for v in row.get("bit_confidence") or []):
            rep.fail("nan-output", "wm-detect", c, f"bit_confidence {row.get('bit_confidence')}")
        if c.base is not None and not c.base.in_range and c.mutation == "valid":
            rep.fail("out-of-range-accepted", "wm-detect", c, json.dumps(row)[:300])
        _check_duration(row.get("duration_s"), c, "wm-detect", rep)


_SF_NAMES = set(sf.available_formats())


def _probe(path: str) -> tuple[int, int, int, str] | None:
    """(rate, channels, frames, container) of an output file, independently of voiceguard's reader."""
    try:
        with sf.SoundFile(path) as f:
            return f.samplerate, f.channels, f.frames, f.format
    except Exception:  # noqa: BLE001
        pass
    res = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
                          "stream=sample_rate,channels,duration:format=format_name", "-of", "json", path],
                         capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        return None
    meta = json.loads(res.stdout or "{}")
    st = (meta.get("streams") or [{}])[0]
    try:
        sr = int(st.get("sample_rate") or 0)
        return sr, int(st.get("channels") or 0), int(round(float(st.get("duration")) * sr)), \
            meta.get("format", {}).get("format_name", "?")
    except (TypeError, ValueError):
        return None


def check_wm_embed(run: Run, cases: list[Case], expected: list[Case], in_dir: str, out_dir: str,
                   rep: Report) -> None:
    """Folder -> folder ``watermark embed``: rows, exit code, outputs only for ok rows, no temp files,
    outputs keep rate / channels / container / length."""
    rows = check_common(run, "wm-embed", rep, cases)
    if run.exit_code is None:
        return
    by_case = _rows_by_case(rows, "source", cases, "wm-embed", rep, expected)
    any_err = any(r.get("status") == "error" for r in rows)
    if rows and run.exit_code != (2 if any_err else 0):
        rep.fail("exit-code", "wm-embed", ",".join(c.case_id for c in cases[:3]),
                 f"exit {run.exit_code}, errors {any_err}")
    by_idx = {c.index: c for c in cases}
    ok_outputs = set()
    for i, row in by_case.items():
        c = by_idx[i]
        st = row.get("status")
        rep.outcomes[f"wm-embed {st}"] += 1
        out = row.get("output")
        if st == "error":
            _check_error_row(row, "wm-embed", rep, c)
            if out and os.path.lexists(out):
                rep.fail("output-left-on-error", "wm-embed", c, out)
            if _should_decode(c) and c.mutation == "valid" and "too short" not in row.get("error", ""):
                rep.fail("valid-input-rejected", "wm-embed", c, row.get("error"))
            continue
        if st != "ok" or not out:
            rep.fail("bad-status", "wm-embed", c, json.dumps(row)[:300])
            continue
        ok_outputs.add(os.path.realpath(out))
        if c.base is not None and not c.base.in_range and c.mutation == "valid":
            rep.fail("out-of-range-accepted", "wm-embed", c, json.dumps(row)[:300])
        got = _probe(out)
        if got is None:
            rep.fail("embed-output-unreadable", "wm-embed", c, out)
            continue
        src = _probe(os.path.join(in_dir, os.fsdecode(c.name)))
        if src is None:
            continue
        sr, ch, frames, fmt = got
        same_reader = (fmt in _SF_NAMES) == (src[3] in _SF_NAMES)  # both read by libsndfile, or both by ffprobe
        if not same_reader:
            continue
        opus_rate = sr == 48000 and str(out).lower().endswith((".opus", ".webm"))  # Opus always decodes at 48 kHz
        if (sr, ch) != src[:2] and not opus_rate or (c.mutation == "valid" and fmt != src[3]):
            rep.fail("embed-format-changed", "wm-embed", c, f"in {src}, out {got}")
        elif c.mutation == "valid" and c.base is not None:
            tol = 0 if c.base.lossless else int(0.03 * sr)
            if abs(frames - src[2]) > tol:
                rep.fail("embed-length-changed", "wm-embed", c, f"in {src[2]} frames, out {frames} frames")
    for root, dirs, files in os.walk(out_dir):
        for f in files:
            p = os.path.realpath(os.path.join(root, f))
            if p not in ok_outputs:
                rep.fail("stray-output-file", "wm-embed", None, os.path.join(root, f))


def snapshot(folder: str) -> dict[str, str]:
    """sha256 (or the file type) of everything under ``folder``, by relative path (bytes-safe)."""
    out = {}
    base = os.fsencode(folder)
    for root, dirs, files in os.walk(base):
        for name in dirs + files:
            p = os.path.join(root, name)
            rel = os.fsdecode(os.path.relpath(p, base))
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                out[rel] = h.hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = "link:" + os.fsdecode(os.readlink(p))
            else:
                out[rel] = f"mode:{stat.S_IFMT(st.st_mode):o}"
    return out


def check_unchanged(before: dict, after: dict, command: str, cases: list[Case], rep: Report) -> None:
    by_idx = {c.index: c for c in cases}
    for rel, h in before.items():
        if after.get(rel) != h:
            rep.fail("modified-input", command, by_idx.get(_index_of(rel)) or rel,
                     f"{rel}: {'removed' if rel not in after else 'changed'}")
    for rel in after.keys() - before.keys():
        rep.fail("stray-file-in-input", command, by_idx.get(_index_of(rel)) or rel, rel)


# =============================================================================== drivers
def lay_out(cases: list[Case], root: str) -> tuple[str, str, list[Case], list[Case], list[Case]]:
    """Write ``cases`` under ``root``: regular files with an audio extension go to ``batch/`` (a folder
    scan picks each up), other regular files to ``loose/`` (passed by name), special paths to
    ``special/``.  Returns (batch dir, loose dir, batch cases, loose cases, special cases)."""
    dirs = {k: os.path.join(root, k) for k in ("batch", "loose", "special")}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
    batch, loose, special = [], [], []
    for c in cases:
        if not c.regular:
            c.materialise(dirs["special"])
            special.append(c)
        elif c.ext in AUDIO_EXTS:
            c.materialise(dirs["batch"])
            batch.append(c)
        else:
            c.materialise(dirs["loose"])
            loose.append(c)
    return dirs["batch"], dirs["loose"], batch, loose, special


def _paths(folder: str, cases: list[Case]) -> list[str]:
    return [os.fsdecode(os.path.join(os.fsencode(folder), c.name)) for c in cases]


def run_scan(cases: list[Case], root: str, rep: Report, *, subprocess_mode: bool = False,
             timeout: float = 1800, extra: tuple[str, ...] = (), stall: float | None = None
             ) -> tuple[set[int], bool]:
    """One ``scan`` over a folder of the cases plus the loose files by name (specials need subprocess).
    With ``stall`` (subprocess only) a batch that prints nothing for that long is killed; returns the
    indexes of the cases that got a row and whether it stalled."""
    batch_dir, loose_dir, batch, loose, special = lay_out(cases, root)
    args = ["scan", "--format", "jsonl", "--no-progress", *extra]
    inputs = ([batch_dir] if batch else []) + _paths(loose_dir, loose) + _paths(os.path.join(root, "special"),
                                                                                 special)
    before = snapshot(root)
    run = run_cli(args + inputs, subprocess_mode=subprocess_mode or bool(special), timeout=timeout, stall=stall)
    check_scan(run, cases, batch + loose + special, rep)
    check_unchanged(before, snapshot(root), "scan", cases, rep)
    return _got(run)


def _got(run: Run) -> tuple[set[int], bool]:
    """(indexes of the cases with a row, whether the run stalled)."""
    return {i for i in (_index_of(str(r.get("path") or "")) for r in _rows(run.stdout)) if i is not None}, \
        run.stalled


def _rows(stdout: str) -> list[dict]:
    rows = []
    for line in stdout.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def run_wm_detect(cases: list[Case], root: str, rep: Report, *, subprocess_mode: bool = False,
                  timeout: float = 1800, stall: float | None = None) -> tuple[set[int], bool]:
    batch_dir, loose_dir, batch, loose, special = lay_out(cases, root)
    inputs = ([batch_dir] if batch else []) + _paths(loose_dir, loose) + _paths(os.path.join(root, "special"),
                                                                                 special)
    before = snapshot(root)
    # detection reads files in the main thread: the in-process SIGALRM watchdog can interrupt a blocked
    # read of a FIFO, so special paths do not need a subprocess here (unlike scan's decoding threads)
    run = run_cli(["watermark", "detect", "--format", "jsonl"] + inputs, subprocess_mode=subprocess_mode,
                  timeout=timeout, stall=stall)
    check_wm_detect(run, cases, batch + loose + special, rep)
    check_unchanged(before, snapshot(root), "wm-detect", cases, rep)
    return _got(run)


def run_wm_embed(cases: list[Case], root: str, rep: Report, *, subprocess_mode: bool = False,
                 timeout: float = 1800) -> None:
    """Folder -> folder embed over the cases with audio extensions."""
    cases = [c for c in cases if c.regular and c.ext in AUDIO_EXTS]
    in_dir, out_dir = os.path.join(root, "in"), os.path.join(root, "out")
    os.makedirs(in_dir, exist_ok=True)
    for c in cases:
        c.materialise(in_dir)
    before = snapshot(in_dir)
    run = run_cli(["watermark", "embed", in_dir, out_dir, "--format", "jsonl"],
                  subprocess_mode=subprocess_mode, timeout=timeout)
    check_wm_embed(run, cases, cases, in_dir, out_dir, rep)
    check_unchanged(before, snapshot(in_dir), "wm-embed", cases, rep)


def run_embed_special(case: Case, root: str, rep: Report, timeout: float = 120) -> None:
    """``watermark embed SPECIAL OUT.wav`` (a FIFO, a symlink to /dev/zero...) in a subprocess."""
    os.makedirs(root, exist_ok=True)
    src = case.materialise(root)
    out = os.path.join(root, "out.wav")
    run = run_cli(["watermark", "embed", src, out, "--format", "jsonl"], subprocess_mode=True, timeout=timeout)
    rows = check_common(run, "wm-embed", rep, [case])
    if run.exit_code is None:
        return
    if run.exit_code != 2:
        rep.fail("exit-code", "wm-embed", case, f"exit {run.exit_code} for a {case.kind}")
    for r in rows:
        _check_error_row(r, "wm-embed", rep, case)
    if os.path.lexists(out):
        rep.fail("output-left-on-error", "wm-embed", case, out)


def summary(rep: Report) -> dict:
    kinds = rep.by_kind()
    return {
        "cases": rep.cases,
        "invocations": rep.invocations,
        "cli_seconds": round(rep.seconds, 1),
        "outcomes": dict(sorted(rep.outcomes.items())),
        "tracebacks": kinds.get("traceback", 0),
        "nan_outputs": kinds.get("nan-output", 0),
        "hangs": kinds.get("hang", 0),
        "modified_inputs": kinds.get("modified-input", 0),
        "failures_by_kind": dict(sorted(kinds.items())),
        "failures": [f.to_dict() for f in rep.failures],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="write one generated case (or a whole run) to a folder")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--pool", type=int, default=0, help="pool size of the run (printed with each failure)")
    ap.add_argument("--headers", action="store_true", help="the systematic header cases (header_cases)")
    ap.add_argument("--max-seconds", type=float, default=None,
                    help="longest base of the run [default: 3 for the CI test's pool sizes <= 24, else 10]")
    ap.add_argument("--case", type=int, action="append", help="case index (repeatable) [default: all --n]")
    ap.add_argument("--n", type=int, default=0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    if a.headers:
        chosen = header_cases(a.seed, reference_bases(a.seed))
        chosen = [c for c in chosen if not a.case or c.index in a.case]
    else:
        if not a.pool:
            ap.error("--pool is required (or --headers)")
        max_s = a.max_seconds if a.max_seconds is not None else (3.0 if a.pool <= 24 else 10.0)
        pool = build_pool(a.seed, a.pool, max_s)
        chosen = [make_case(a.seed, i, pool) for i in (a.case or range(a.n))]
    for c in chosen:
        print(f"{c.case_id}\t{c.materialise(a.out)!r}\t{c.description}")


if __name__ == "__main__":
    main()
