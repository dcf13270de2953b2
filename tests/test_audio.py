"""The one audio I/O path: formats, rates, channels, streaming, atomic saves and every error case."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voiceguard import audio as A
from voiceguard import errors as E

from helpers import tone, write_wav

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


@pytest.mark.parametrize("ext,subtype,tol", [(".wav", "PCM_16", 1e-4), (".wav", "PCM_24", 1e-6),
                                              (".wav", "FLOAT", 0.0), (".flac", "PCM_16", 1e-4),
                                              (".flac", "PCM_24", 1e-6)])
@pytest.mark.parametrize("channels", [1, 2])
def test_roundtrip_lossless(tmp_path, ext, subtype, tol, channels):
    x = tone(0.5, 22050, channels)
    p = A.save_audio(tmp_path / f"a{ext}", x, 22050, subtype=subtype)
    y, sr = A.load_audio(p)
    assert sr == 22050 and y.dtype == np.float32 and y.shape == x.shape
    assert np.max(np.abs(y - x)) <= tol
    info = A.audio_info(p)
    assert (info.channels, info.frames, info.subtype, info.backend) == (channels, x.shape[1], subtype, "soundfile")


def test_int_pcm_and_unsigned_inputs_are_scaled():
    x16 = np.array([0, 16384, -32768, 32767], dtype=np.int16)
    np.testing.assert_allclose(A.as_channels_first(x16)[0], [0, 0.5, -1.0, 32767 / 32768])
    u8 = np.array([128, 255, 0], dtype=np.uint8)
    np.testing.assert_allclose(A.as_channels_first(u8)[0], [0.0, 127 / 128, -1.0])


def test_mono_mixdown_and_resample(tmp_path):
    x = tone(1.0, 44100, 2)
    p = write_wav(tmp_path / "s.wav", x, 44100, "FLOAT")
    y, sr = A.load_audio(p, target_sr=16000, mono=True)
    assert sr == 16000 and y.shape == (1, 16000)
    # the mix-down is the channel mean, resampled
    ref = A.resample(x.mean(axis=0, keepdims=True), 44100, 16000)
    np.testing.assert_allclose(y, ref, atol=1e-5)
    # a 440 Hz tone stays a 440 Hz tone after resampling
    spec = np.abs(np.fft.rfft(A.resample(tone(1.0, 48000, 1, 440.0, 0.5), 48000, 8000)[0]))
    assert abs(np.argmax(spec) * 8000 / (2 * (spec.size - 1)) - 440) < 2


def test_bytes_input(tmp_path):
    x = tone(0.25, 16000)
    p = write_wav(tmp_path / "b.wav", x)
    y, sr = A.load_audio(p.read_bytes())
    assert sr == 16000 and y.shape == x.shape


@needs_ffmpeg
@pytest.mark.parametrize("ext", [".mp3", ".m4a", ".opus", ".ogg"])
def test_lossy_formats_via_ffmpeg_or_soundfile(tmp_path, ext):
    x = tone(1.0, 48000, 2, 300.0)
    p = A.save_audio(tmp_path / f"c{ext}", x, 48000)
    y, sr = A.load_audio(p)
    assert sr == 48000 and y.shape[0] == 2
    assert abs(y.shape[1] - x.shape[1]) < 0.1 * 48000  # codec padding / priming only
    # still the same tone: correlation of the spectra is high
    a, b = np.abs(np.fft.rfft(x[0])), np.abs(np.fft.rfft(y[0][: x.shape[1]], n=x.shape[1]))
    assert np.corrcoef(a, b)[0, 1] > 0.9
    # and bytes input works for containers that need seeking too
    y2, _ = A.load_audio(p.read_bytes())
    assert y2.shape == y.shape


@needs_ffmpeg
def test_ffmpeg_info_and_streaming(tmp_path):
    p = A.save_audio(tmp_path / "d.m4a", tone(3.0, 16000), 16000)
    info = A.audio_info(p)
    assert info.backend == "ffmpeg" and info.sample_rate == 16000 and info.channels == 1
    blocks = list(A.stream_audio(p, block_seconds=0.5))
    assert all(b.shape[1] <= 8000 for b in blocks) and len(blocks) >= 6
    full, _ = A.load_audio(p)
    np.testing.assert_array_equal(np.concatenate(blocks, axis=1), full)


def test_stream_equals_load_and_is_bounded(tmp_path):
    x = tone(5.0, 16000, 2)
    p = write_wav(tmp_path / "e.wav", x, subtype="FLOAT")
    blocks = list(A.stream_audio(p, block_seconds=1.0))
    assert [b.shape for b in blocks] == [(2, 16000)] * 5
    np.testing.assert_array_equal(np.concatenate(blocks, axis=1), x)
    # streamed resampling gives the same samples as whole-file resampling
    rs = np.concatenate(list(A.stream_audio(p, block_seconds=0.7, target_sr=8000, mono=True)), axis=1)
    whole, _ = A.load_audio(p, target_sr=8000, mono=True)
    assert abs(rs.shape[1] - whole.shape[1]) <= 1
    n = min(rs.shape[1], whole.shape[1])
    assert np.max(np.abs(rs[:, 100:n - 100] - whole[:, 100:n - 100])) < 1e-3


# ----------------------------------------------------------------------------- errors
def test_missing_file(tmp_path):
    with pytest.raises(E.AudioFileNotFoundError, match=r"nope\.wav: no such file"):
        A.load_audio(tmp_path / "nope.wav")


def test_directory(tmp_path):
    with pytest.raises(E.NotAFileError, match="is a directory"):
        A.load_audio(tmp_path)


def test_zero_byte_file(tmp_path):
    (tmp_path / "z.wav").write_bytes(b"")
    with pytest.raises(E.EmptyAudioError, match=r"z\.wav: file is empty"):
        A.load_audio(tmp_path / "z.wav")


def test_zero_samples(tmp_path):
    p = write_wav(tmp_path / "zero.wav", np.zeros((1, 0), dtype=np.float32))
    with pytest.raises(E.EmptyAudioError, match="zero samples"):
        A.load_audio(p)


@needs_ffmpeg
def test_not_audio(tmp_path):
    p = tmp_path / "notes.wav"
    p.write_text("this is a text file, not audio\n" * 20)
    with pytest.raises(E.AudioDecodeError, match=r"notes\.wav: not a readable audio file"):
        A.load_audio(p)


@needs_ffmpeg
def test_corrupt_random_bytes(tmp_path):
    p = tmp_path / "junk.mp3"
    p.write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(E.AudioDecodeError, match=r"junk\.mp3"):
        A.load_audio(p)


def test_truncated_wav(tmp_path):
    p = write_wav(tmp_path / "t.wav", tone(1.0))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(E.AudioDecodeError, match=r"t\.wav: truncated: the header declares 32000 bytes"):
        A.load_audio(p)


def test_truncated_flac(tmp_path):
    p = A.save_audio(tmp_path / "t.flac", tone(2.0, freq=97.0), 16000)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(E.AudioDecodeError, match=r"t\.flac: corrupt or truncated"):
        A.load_audio(p)


def test_nan_samples(tmp_path):
    x = tone(1.0)
    x[0, 8000] = np.nan
    p = write_wav(tmp_path / "nan.wav", x, subtype="FLOAT")
    with pytest.raises(E.NonFiniteAudioError, match=r"nan\.wav: contains NaN or infinite samples \(first at 0\.500 s\)"):
        A.load_audio(p)


def test_too_many_channels(tmp_path):
    p = write_wav(tmp_path / "many.wav", tone(0.1, channels=10))
    with pytest.raises(E.UnsupportedChannelsError, match=r"many\.wav: 10 channels are not supported \(at most 8\)"):
        A.load_audio(p)
    y, _ = A.load_audio(p, max_channels=None)
    assert y.shape[0] == 10


def test_too_short(tmp_path):
    p = write_wav(tmp_path / "short.wav", tone(0.2))
    with pytest.raises(E.AudioTooShortError, match=r"short\.wav: audio is 0\.200 s long, too short for AASIST "
                                                   r"\(minimum 0\.5 s\)"):
        A.load_audio(p, min_seconds=0.5, purpose="AASIST")


# ----------------------------------------------------------------------------- saving
def test_save_refuses_to_overwrite_and_is_atomic(tmp_path):
    p = write_wav(tmp_path / "keep.wav", tone(0.5))
    before = p.read_bytes()
    with pytest.raises(E.OutputError, match="already exists"):
        A.save_audio(p, tone(0.1), 16000)
    bad = tone(0.5)
    bad[0, 3] = np.inf
    with pytest.raises(E.NonFiniteAudioError):
        A.save_audio(p, bad, 16000, overwrite=True)
    assert p.read_bytes() == before
    A.save_audio(p, tone(0.1), 16000, overwrite=True)
    assert sf.info(p).frames == 1600
    assert sorted(os.listdir(tmp_path)) == ["keep.wav"]  # no temp files left behind


def test_save_keeps_subtype_of_input(tmp_path):
    src = write_wav(tmp_path / "in.wav", tone(0.2), subtype="PCM_24")
    info = A.audio_info(src)
    x, sr = A.load_audio(src)
    out = A.save_audio(tmp_path / "out.wav", x, sr, like=info)
    assert sf.info(out).subtype == "PCM_24" and sf.info(out).samplerate == sr


def test_save_clips_instead_of_wrapping(tmp_path):
    x = np.array([[0.5, 1.7, -2.0]], dtype=np.float32)
    y, _ = A.load_audio(A.save_audio(tmp_path / "c.wav", x, 16000))
    assert y[0, 1] > 0.99 and y[0, 2] <= -0.99


def test_find_audio_files(tmp_path):
    (tmp_path / "a").mkdir()
    write_wav(tmp_path / "a" / "x.wav", tone(0.1))
    write_wav(tmp_path / "a" / "y.flac", tone(0.1))
    (tmp_path / "a" / "readme.txt").write_text("hi")
    (tmp_path / "a" / "deep").mkdir()
    write_wav(tmp_path / "a" / "deep" / "z.wav", tone(0.1))
    (tmp_path / "empty").mkdir()
    files, problems = A.find_audio_files([tmp_path / "a", str(tmp_path / "a" / "*.wav"), tmp_path / "missing",
                                          tmp_path / "empty"])
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["a/deep/z.wav", "a/x.wav", "a/y.flac"]
    assert [(Path(p.path).name, p.reason) for p in problems] == [("missing", "no such file or folder"),
                                                                  ("empty", "folder holds no audio files")]
