"""Property-based tests (Hypothesis) for the audio loader: random WAV/FLAC files, headers, sizes, rates,
channel counts, sample formats, truncation points, byte prefixes and overwritten header bytes.

Every outcome is either the audio that was written (shape, rate, length) or a ``VoiceguardError`` with a
one-line message naming the file -- never another exception, never NaN/Inf, never a modified input.
"""
from __future__ import annotations

import hashlib
import shutil
import struct
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
from hypothesis import HealthCheck, given, settings, strategies as st

from voiceguard import audio as A
from voiceguard import errors as E

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
WAV_SUBTYPES = ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"]
FLAC_SUBTYPES = ["PCM_S8", "PCM_16", "PCM_24"]
TOL = {"PCM_U8": 1 / 64, "PCM_S8": 1 / 64, "PCM_16": 1e-4, "PCM_24": 1e-6, "PCM_32": 1e-6, "FLOAT": 0.0,
       "DOUBLE": 1e-7}


@st.composite
def audio_files(draw):
    container = draw(st.sampled_from(["WAV", "FLAC"]))
    subtype = draw(st.sampled_from(WAV_SUBTYPES if container == "WAV" else FLAC_SUBTYPES))
    sr = draw(st.sampled_from([8000, 11025, 16000, 22050, 32000, 44100, 48000, 96000]))
    channels = draw(st.integers(1, 8))
    n = draw(st.integers(1, 3000))
    seed = draw(st.integers(0, 2**16))
    x = np.random.default_rng(seed).uniform(-0.9, 0.9, (channels, n)).astype(np.float32)
    return container, subtype, sr, x


def _write(path: Path, container: str, subtype: str, sr: int, x: np.ndarray) -> bytes:
    sf.write(path, x.T, sr, subtype=subtype, format=container)
    return path.read_bytes()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _outcome(path: Path, **kw):
    """load_audio's result, or the VoiceguardError; anything else fails the test."""
    before = _digest(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", E.AudioDecodeWarning)
        try:
            y, sr = A.load_audio(path, **kw)
        except E.VoiceguardError as e:
            msg = str(e)
            assert "\n" not in msg and msg.startswith(f"{path}: ") and len(msg) < 400, msg
            result = e
        else:
            assert y.dtype == np.float32 and y.ndim == 2 and y.shape[1] > 0 and sr > 0
            assert np.isfinite(y).all() and np.abs(y).max() <= A.MAX_FLOAT_PEAK
            result = (y, sr)
    assert _digest(path) == before  # the input is never modified
    return result


@SETTINGS
@given(audio_files())
def test_written_audio_comes_back(tmp_path, spec):
    container, subtype, sr, x = spec
    p = tmp_path / ("a.wav" if container == "WAV" else "a.flac")
    _write(p, container, subtype, sr, x)
    got = _outcome(p)
    assert not isinstance(got, E.VoiceguardError), got
    y, got_sr = got
    info = A.audio_info(p)
    assert got_sr == sr and y.shape == x.shape and info.frames == x.shape[1] and info.channels == x.shape[0]
    assert np.max(np.abs(y - x)) <= TOL[subtype] + 1e-7


@SETTINGS
@given(audio_files(), st.data())
def test_truncated_files_are_errors(tmp_path, spec, data):
    container, subtype, sr, x = spec
    p = tmp_path / ("t.wav" if container == "WAV" else "t.flac")
    raw = _write(p, container, subtype, sr, x)
    if container == "WAV":  # the data chunk is last; an odd-sized one is followed by a pad byte
        header = raw.index(b"data") + 8
        end = header + int.from_bytes(raw[header - 4:header], "little")
    else:
        header, end = 42, len(raw)  # fLaC + STREAMINFO, then the frames up to the end
    cut = data.draw(st.integers(header, end - 1), label="cut")
    p.write_bytes(raw[:cut])
    got = _outcome(p)
    # nothing silently shorter: a cut in the audio data is an error, never a shorter "ok"
    assert isinstance(got, E.AudioError), f"cut at {cut}/{len(raw)} decoded as {got[0].shape}"


@SETTINGS
@given(audio_files(), st.sampled_from(["prefix", "overwrite", "append", "cut-header"]), st.binary(min_size=1,
       max_size=64), st.data())
def test_mangled_files_decode_or_fail_cleanly(tmp_path, spec, how, junk, data):
    container, subtype, sr, x = spec
    p = tmp_path / ("m.wav" if container == "WAV" else "m.flac")
    raw = _write(p, container, subtype, sr, x)
    if how == "prefix":
        raw = junk + raw
    elif how == "overwrite":
        at = data.draw(st.integers(0, min(len(raw) - 1, 120)), label="at")
        raw = raw[:at] + junk + raw[at + len(junk):]
    elif how == "append":
        raw = raw + junk
    else:
        raw = raw[:data.draw(st.integers(1, 44), label="cut")]
    p.write_bytes(raw)
    got = _outcome(p)
    if how == "append" and not isinstance(got, E.VoiceguardError):
        # trailing junk never adds samples to a file whose header gives the length
        assert got[0].shape == x.shape


def _wav_header(fmt_tag: int, channels: int, sr: int, bits: int, data_size: int, riff_size: int) -> bytes:
    block_align = channels * ((bits + 7) // 8)
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, sr, (sr * block_align) & 0xFFFFFFFF, block_align & 0xFFFF,
                      bits)
    return b"RIFF" + struct.pack("<I", riff_size) + b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + \
        struct.pack("<I", data_size)


@SETTINGS
@given(fmt_tag=st.sampled_from([1, 3, 6, 7, 0xFFFE, 0, 2, 0x55]), channels=st.integers(0, 70),
       sr=st.one_of(st.sampled_from([8000, 16000, 44100, 48000]), st.integers(0, 2**32 - 1)),
       bits=st.sampled_from([0, 1, 8, 12, 16, 24, 32, 64, 7]), n_bytes=st.integers(0, 4096),
       declared=st.one_of(st.none(), st.integers(0, 2**32 - 1)), riff=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
       seed=st.integers(0, 2**16))
def test_random_wav_headers(tmp_path, fmt_tag, channels, sr, bits, n_bytes, declared, riff, seed):
    payload = np.random.default_rng(seed).integers(0, 256, n_bytes, dtype=np.uint8).tobytes()
    if fmt_tag == 3 and bits in (32, 64):  # float data: keep it finite and in range most of the time
        dtype = np.float32 if bits == 32 else np.float64
        k = n_bytes // np.dtype(dtype).itemsize
        payload = np.random.default_rng(seed).uniform(-1, 1, k).astype(dtype).tobytes()
    data_size = len(payload) if declared is None else declared
    riff_size = 36 + len(payload) if riff is None else riff
    p = tmp_path / "h.wav"
    p.write_bytes(_wav_header(fmt_tag, channels, sr, bits, data_size, riff_size) + payload)
    tracemalloc.start()
    try:
        got = _outcome(p, max_channels=None)
        assert tracemalloc.get_traced_memory()[1] < 64 << 20  # never allocates from the header's claim
    finally:
        tracemalloc.stop()
    valid = (fmt_tag == 1 and bits in (8, 16, 24, 32) or fmt_tag == 3 and bits in (32, 64)) and \
        1 <= channels and 1000 <= sr <= 768000 and declared is None and riff is None
    frame = channels * bits // 8 if channels else 0
    if valid and len(payload) >= frame and len(payload) % frame == 0:
        assert not isinstance(got, E.VoiceguardError), got
        y, got_sr = got
        assert got_sr == sr and y.shape == (channels, len(payload) // frame)


@SETTINGS
@given(total=st.one_of(st.integers(0, 2**36 - 1), st.sampled_from([2**36 - 1, 64 * 2**30, 1, 15999, 16001])),
       n=st.integers(100, 20000))
def test_flac_length_claims(tmp_path, total, n):
    p = tmp_path / "c.flac"
    x = (0.3 * np.sin(np.arange(n) / 7)).astype(np.float32)
    sf.write(p, x, 16000, subtype="PCM_16", format="FLAC")
    b = bytearray(p.read_bytes())
    v = int.from_bytes(b[18:26], "big")
    b[18:26] = ((v & ~((1 << 36) - 1)) | total).to_bytes(8, "big")  # STREAMINFO total samples
    p.write_bytes(bytes(b))
    tracemalloc.start()
    try:
        got = _outcome(p)
        assert tracemalloc.get_traced_memory()[1] < 64 << 20
    finally:
        tracemalloc.stop()
    if total == n:
        assert got[0].shape == (1, n)
    elif total > n:  # the header claims more than the file holds: truncated, never a shorter "ok"
        assert isinstance(got, E.AudioDecodeError), got


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(peak=st.one_of(st.floats(0.01, 16.0), st.floats(16.0001, 3e38), st.floats(3e38, 1e308)),
       subtype=st.sampled_from(["FLOAT", "DOUBLE"]), where=st.floats(0, 1), channels=st.integers(1, 3),
       backend=st.sampled_from(["auto", "ffmpeg"] if shutil.which("ffmpeg") else ["auto"]))
def test_float_peaks(tmp_path, peak, subtype, where, channels, backend):
    if subtype == "FLOAT" and peak > 3.4e38:
        subtype = "DOUBLE"
    x = np.zeros((channels, 4000))
    x[channels - 1, min(3999, int(where * 4000))] = -peak if where > 0.5 else peak
    p = tmp_path / "f.wav"
    sf.write(p, x.T, 16000, subtype=subtype)
    got = _outcome(p, backend=backend, mono=True)
    stored = float(np.float32(peak)) if subtype == "FLOAT" else peak
    if stored > A.MAX_FLOAT_PEAK:
        assert isinstance(got, E.AudioRangeError), got
        assert "float samples out of range" in str(got)
    else:
        assert not isinstance(got, E.VoiceguardError), got
        assert got[0].shape == (1, 4000)
