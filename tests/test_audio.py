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


# ----------------------------------------------------------------------------- issue #16: faithful decoding
import re  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tracemalloc  # noqa: E402
import warnings  # noqa: E402


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True)


def _encode(tmp_path, n: int, sr: int, ext: str, *extra: str, channels: int = 1) -> tuple[Path, np.ndarray]:
    """A ``n``-frame tone as WAV, encoded by ffmpeg to ``ext`` (the source length is known exactly)."""
    x = tone(n / sr, sr, channels, 300.0, 0.3)[:, :n]
    src = write_wav(tmp_path / f"src{n}_{sr}.wav", x, sr, "FLOAT")
    out = tmp_path / f"enc{n}_{sr}{ext}"
    _ffmpeg("-i", str(src), *extra, str(out))
    return out, x


@pytest.mark.parametrize("peak,subtype", [(1e30, "FLOAT"), (1e38, "FLOAT"), (1e300, "DOUBLE")])
@pytest.mark.parametrize("backend", ["auto", pytest.param("ffmpeg", marks=needs_ffmpeg)])
def test_huge_finite_float_samples_are_refused(tmp_path, peak, subtype, backend):
    x = tone(1.0).astype(np.float64)
    x[0, 4000] = peak
    p = write_wav(tmp_path / "big.wav", x, subtype=subtype)
    with pytest.raises(E.AudioRangeError, match=r"big\.wav: float samples out of range: peak " + re.escape(f"{peak:.4g}")):
        A.load_audio(p, backend=backend, mono=True)
    with pytest.raises(E.AudioRangeError, match=r"big\.wav"):
        list(A.stream_audio(p, block_seconds=0.1, target_sr=8000))


@needs_ffmpeg
@pytest.mark.parametrize("n,sr", [(46272, 48000), (16000, 16000), (33344, 16000), (44100, 44100)])
def test_m4a_length_equals_source(tmp_path, n, sr):
    # issue example: a 0.964 s clip was reported and decoded as 1.024 s (encoder priming and padding)
    p, x = _encode(tmp_path, n, sr, ".m4a", "-c:a", "aac")
    assert A.audio_info(p).frames == n
    y, got_sr = A.load_audio(p)
    assert got_sr == sr and y.shape == (1, n)
    # aligned (priming removed): the decoded tone correlates with the source sample for sample
    assert np.corrcoef(x[0, 2000:-2000], y[0, 2000:-2000])[0, 1] > 0.95


@needs_ffmpeg
@pytest.mark.parametrize("n", [1000, 23456])
@pytest.mark.parametrize("sr", [22050, 48000])
def test_m4a_any_length_within_edit_list_resolution(tmp_path, n, sr):
    # ffmpeg's muxer stores the edit list in ms (movie timescale 1000): exact with -movie_timescale
    p, _ = _encode(tmp_path, n, sr, ".m4a", "-c:a", "aac", "-movie_timescale", str(sr))
    assert A.audio_info(p).frames == n and A.load_audio(p)[0].shape == (1, n)
    p, _ = _encode(tmp_path, n, sr, ".mp4", "-c:a", "aac")
    y, _ = A.load_audio(p)
    assert abs(y.shape[1] - n) <= sr // 1000 + 1 and A.audio_info(p).frames == y.shape[1]


@needs_ffmpeg
@pytest.mark.parametrize("ext,codec", [(".mp3", "libmp3lame"), (".opus", "libopus"), (".ogg", "libvorbis")])
@pytest.mark.parametrize("n,sr,channels", [(46272, 48000, 1), (12345, 16000, 2), (9000, 8000, 1)])
def test_gapless_lengths_mp3_opus_vorbis(tmp_path, ext, codec, n, sr, channels):
    if codec == "libopus" and sr not in (8000, 12000, 16000, 24000, 48000):
        pytest.skip("opus rates")
    p, _ = _encode(tmp_path, n, sr, ext, "-c:a", codec, channels=channels)
    info = A.audio_info(p)
    y, _ = A.load_audio(p)
    assert y.shape == (channels, n)
    if ext == ".mp3":  # exact from the Xing frame count minus the LAME delay and padding
        assert (info.backend, info.frames, info.length_from) == ("ffmpeg", n, "header")


@needs_ffmpeg
def test_truncated_mp3_is_an_error_like_a_truncated_wav(tmp_path):
    p, _ = _encode(tmp_path, 6 * 48000, 48000, ".mp3", "-c:a", "libmp3lame")
    data = p.read_bytes()
    cut = tmp_path / "partial.mp3"
    cut.write_bytes(data[: int(len(data) * 0.4)])
    with pytest.raises(E.AudioDecodeError, match=r"partial\.mp3: truncated: 2\.4 of 6\.0 s decoded"):
        A.load_audio(cut)


@needs_ffmpeg
@pytest.mark.parametrize("ext,extra", [(".mp3", ("-c:a", "libmp3lame")), (".m4a", ("-c:a", "aac", "-movflags", "+faststart")),
                                       (".flac", ()), (".wav", ()), (".mp3", ("-c:a", "libmp3lame", "-b:a", "64k"))])
def test_truncation_is_detected_for_every_format(tmp_path, ext, extra):
    p, _ = _encode(tmp_path, 4 * 16000, 16000, ext, *extra)
    data = p.read_bytes()
    cut = tmp_path / f"cut{ext}"
    for share in (0.15, 0.4, 0.7, 0.95):
        cut.write_bytes(data[: int(len(data) * share)])
        with pytest.raises(E.AudioDecodeError, match=r"cut\.\w+: (truncated|corrupt or truncated|not a readable)"):
            A.load_audio(cut)
        assert cut.read_bytes() == data[: int(len(data) * share)]


@needs_ffmpeg
def test_mp3_without_declared_length_is_not_flagged(tmp_path):
    # no Xing header: the length is a bitrate estimate made from the (cut) file size -- never "truncated"
    p, _ = _encode(tmp_path, 6 * 48000, 48000, ".mp3", "-c:a", "libmp3lame", "-write_xing", "0")
    info = A.audio_info(p)
    assert info.length_from == "estimate"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    y, _ = A.load_audio(p)
    assert 2.5 < y.shape[1] / 48000 < 3.5


def _damage(data: bytes, at: int, n: int, seed: int) -> bytes:
    b = bytearray(data)
    b[at:at + n] = np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()
    return bytes(b)


@needs_ffmpeg
@pytest.mark.parametrize("ext,codec", [(".mp3", "libmp3lame"), (".m4a", "aac")])
def test_decoder_messages_are_captured_one_warning_naming_the_file(tmp_path, capfd, ext, codec):
    p, _ = _encode(tmp_path, 6 * 48000, 48000, ext, "-c:a", codec, "-movflags", "+faststart")
    bad = tmp_path / f"damaged{ext}"
    for at, n, seed in [(20000, 300, 0), (9000, 64, 1), (30000, 1500, 2), (500, 40, 3), (15000, 4000, 4),
                        (25000, 2, 5)]:
        bad.write_bytes(_damage(p.read_bytes(), at, n, seed))
        _one_warning_at_most(bad, capfd)


def _one_warning_at_most(bad: Path, capfd) -> None:
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            y, _ = A.load_audio(bad)
            assert np.isfinite(y).all()
        except E.AudioError as e:  # damage that costs more than the tolerance: "truncated or damaged: ..."
            assert str(e).startswith(f"{bad}: ") and "\n" not in str(e)
    out = capfd.readouterr()
    assert out.err == "" and out.out == ""  # nothing from libmpg123 / ffmpeg reaches the process's stderr
    ours = [w for w in caught if issubclass(w.category, E.AudioDecodeWarning)]
    assert len(ours) <= 1
    for w in ours:
        assert str(w.message).startswith(f"{bad}: decoder reported damaged data") and "\n" not in str(w.message)


@needs_ffmpeg
def test_damaged_mp3_regression_warns_once(tmp_path, capfd):
    p, _ = _encode(tmp_path, 6 * 48000, 48000, ".mp3", "-c:a", "libmp3lame")
    bad = tmp_path / "resync.mp3"
    b = bytearray(p.read_bytes())
    b[20000:20040] = bytes(40)  # one frame's worth of damage: libmpg123 printed "Trying to resync..."
    bad.write_bytes(bytes(b))
    with pytest.warns(E.AudioDecodeWarning, match=r"resync\.mp3: decoder reported damaged data, decoded anyway"):
        y, _ = A.load_audio(bad)
    assert y.shape[1] > 5.95 * 48000
    assert capfd.readouterr().err == ""


def test_cli_prints_toolkit_warnings_as_one_line(capsys):
    from voiceguard import cli

    cli._show_warning(E.AudioDecodeWarning("x.mp3: decoder reported damaged data"), E.AudioDecodeWarning,
                      "audio.py", 1)
    assert capsys.readouterr().err == "voiceguard: warning: x.mp3: decoder reported damaged data\n"


def _flac_claiming(tmp_path, total: int) -> Path:
    p = A.save_audio(tmp_path / "claim.flac", tone(1.0), 16000)
    b = bytearray(p.read_bytes())
    v = int.from_bytes(b[18:26], "big")
    b[18:26] = ((v & ~((1 << 36) - 1)) | total).to_bytes(8, "big")  # STREAMINFO: 36-bit total samples
    p.write_bytes(bytes(b))
    return p


def test_header_claiming_64g_frames_does_not_preallocate(tmp_path):
    p = _flac_claiming(tmp_path, 64 * 2**30)
    assert A.audio_info(p).frames >= 64 * 2**30  # libsndfile may report it as 'unknown' (INT64_MAX)
    tracemalloc.start()
    try:
        with pytest.raises(E.AudioDecodeError, match=r"claim\.flac: (corrupt or )?truncated"):
            A.load_audio(p)
        assert tracemalloc.get_traced_memory()[1] < 64 << 20
    finally:
        tracemalloc.stop()


def test_preallocation_is_bounded_by_file_size(tmp_path):
    # a valid file still decodes fully when the compressed data holds more than the cap (digital silence)
    x = np.zeros((1, 16000 * 30), dtype=np.float32)
    p = A.save_audio(tmp_path / "silence.flac", x, 16000)
    assert A._preallocation(p, A.audio_info(p)) < x.shape[1]
    y, _ = A.load_audio(p)
    assert y.shape == x.shape and not y.any()


def _alarm(seconds: int):
    def boom(*_):
        raise TimeoutError("opened a FIFO")
    signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX only")
def test_non_regular_files_say_so(tmp_path):
    os.mkfifo(tmp_path / "fifo.wav")
    os.symlink("/dev/zero", tmp_path / "zero.wav")
    os.symlink(tmp_path / "gone.wav", tmp_path / "dangling.wav")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock.wav"))
    write_wav(tmp_path / "ok.wav", tone(0.1))
    _alarm(10)  # opening the FIFO would block forever
    try:
        names = ["fifo.wav", "zero.wav", "sock.wav", "dangling.wav", "missing.wav"]
        files, problems = A.find_audio_files([tmp_path / n for n in names] + [tmp_path])
        for n in ["fifo.wav", "zero.wav", "sock.wav"]:
            with pytest.raises(E.NotAFileError, match=rf"{n}: not a regular file \(a "):
                A.audio_info(tmp_path / n)
            with pytest.raises(E.NotAFileError, match="not a regular file"):
                A.load_audio(tmp_path / n)
    finally:
        signal.alarm(0)
        sock.close()
    assert [f.name for f in files] == ["ok.wav"]
    assert [(Path(p.path).name, p.reason) for p in problems] == [
        ("fifo.wav", "not a regular file (a FIFO / named pipe)"), ("zero.wav", "not a regular file (a character device)"),
        ("sock.wav", "not a regular file (a socket)"), ("dangling.wav", "broken symbolic link (its target does not exist)"),
        ("missing.wav", "no such file or folder")]


@pytest.mark.parametrize("raw", [b"caf\xe9.wav", b"\xff\xfe name.flac", b"sub\x80dir.wav"])
@pytest.mark.parametrize("backend", ["auto", pytest.param("ffmpeg", marks=needs_ffmpeg)])
def test_non_utf8_file_names_decode(tmp_path, raw, backend):
    p = Path(os.fsdecode(os.fsencode(tmp_path) + b"/" + raw))
    x = tone(0.2, 16000, 2)
    sf.write(os.fsencode(p), x.T, 16000, subtype="PCM_24", format="FLAC" if raw.endswith(b".flac") else "WAV")
    info = A.audio_info(p, backend=backend)
    y, sr = A.load_audio(p, backend=backend)
    assert sr == 16000 and y.shape == x.shape and info.frames == x.shape[1]
    assert np.max(np.abs(y - x)) < 1e-4
    files, problems = A.find_audio_files([tmp_path])
    assert files == [p] and problems == []


@needs_ffmpeg
@pytest.mark.parametrize("ext,codec", [(".m4a", "aac"), (".mp3", "libmp3lame")])
def test_non_utf8_names_through_ffmpeg_formats(tmp_path, ext, codec):
    p, _ = _encode(tmp_path, 16000, 16000, ext, "-c:a", codec)
    odd = Path(os.fsdecode(os.fsencode(tmp_path) + b"/\xe9t\xe9" + ext.encode()))
    os.rename(p, odd)
    y, _ = A.load_audio(odd)
    assert y.shape == (1, 16000)
    odd.write_bytes(b"not audio" * 100)
    with pytest.raises(E.AudioDecodeError) as e:
        A.load_audio(odd)
    assert str(e.value).startswith(str(odd) + ": ") and "\n" not in str(e.value)


def test_block_coded_wav_decodes_to_its_fact_length_and_cut_rf64_is_truncated(tmp_path):
    """Issue #16 (found by the malformed-input generator): MS/IMA ADPCM WAV decoded the last block's
    padding (2.909 s for a 2.861 s source); a cut RF64 decoded as 'ok' with half its length."""
    import soundfile as sf

    from voiceguard.errors import AudioDecodeError

    rng = np.random.default_rng(0)
    # (IMA ADPCM writers -- libsndfile's and ffmpeg's -- store the padded length in the fact chunk, so
    # only MS ADPCM and GSM 6.10 carry the source's length)
    for subtype in ("MS_ADPCM", "GSM610"):
        for n in (1000, 45782, 16001):
            y = (0.3 * np.sin(np.arange(n) * 0.05) + 0.01 * rng.standard_normal(n)).astype(np.float32)
            path = tmp_path / f"{subtype}-{n}.wav"
            sr = 8000 if subtype == "GSM610" else 16000
            sf.write(path, y, sr, subtype=subtype)
            assert A.audio_info(path).frames == n
            assert A.load_audio(path)[0].shape == (1, n)
    x = (0.1 * rng.standard_normal((10752, 3))).astype(np.float32)
    sf.write(tmp_path / "r.wav", x, 8000, format="RF64", subtype="FLOAT")
    assert A.load_audio(tmp_path / "r.wav")[0].shape == (3, 10752)
    data = (tmp_path / "r.wav").read_bytes()
    for cut in (len(data) // 2, len(data) - 12):
        (tmp_path / "cut.wav").write_bytes(data[:cut])
        with pytest.raises(AudioDecodeError, match="truncated"):
            A.load_audio(tmp_path / "cut.wav")


def test_content_wins_over_an_mpeg_extension(tmp_path):
    """Found by the malformed-input bench (case 16:1570): an MS ADPCM WAV named .aac went to ffmpeg, which
    ignores the fact chunk (2.909 s for a 2.861 s source); WAV/FLAC/Ogg/AIFF content named .mp3/.aac is
    read by libsndfile like any other file of that content."""
    n = 45782
    y = (0.3 * np.sin(np.arange(n) * 0.05)).astype(np.float32)
    for subtype, fmt, name in [("MS_ADPCM", "WAV", "x.aac"), ("PCM_16", "FLAC", "y.mp3"), ("PCM_16", "AIFF", "z.mp2")]:
        sf.write(tmp_path / name, y, 16000, subtype=subtype, format=fmt)
        info = A.audio_info(tmp_path / name)
        assert info.backend == "soundfile" and info.frames == n, (name, info)
        assert A.load_audio(tmp_path / name)[0].shape == (1, n)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_mpeg_audio_inside_a_wav_is_decoded_with_captured_messages(tmp_path):
    """Found by the second 3,000-case bench run: MP3 data inside a RIFF WAVE (damaged) went to libsndfile,
    whose libmpg123 printed 'Note: Illegal Audio-MPEG-Header ...' straight to the process's stderr."""
    import subprocess
    import sys

    src = tmp_path / "mp3.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=f=440:d=2", "-ar", "16000",
                    "-c:a", "libmp3lame", str(src)], check=True)
    data = bytearray(src.read_bytes())
    data[5346:5346] = data[:200]  # a copy of the WAV header inside the MPEG stream (libmpg123 resyncs)
    (tmp_path / "bad.wav").write_bytes(bytes(data))
    assert A.audio_info(src).backend == "ffmpeg"
    code = ("import warnings, voiceguard.audio as A\n"
            "warnings.simplefilter('ignore')\n"
            "for p in ('mp3.wav', 'bad.wav'):\n"
            "    try: A.load_audio(p)\n"
            "    except Exception as e: print(type(e).__name__)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0 and "Note:" not in r.stderr and "MPEG" not in r.stderr, r.stderr


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_damaged_mpeg_in_wav_variants_print_nothing(tmp_path):
    """The kind behind the bench's stray-stderr rows: MP3-in-WAV files, glued, zeroed or with foreign
    headers inside, must never make libmpg123 write to the process's stderr (raw soundfile does)."""
    import subprocess
    import sys

    src = tmp_path / "mp3.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=f=440:d=1", "-ar", "16000",
                    "-c:a", "libmp3lame", str(src)], check=True)
    d0 = src.read_bytes()
    rng = np.random.default_rng(1)
    for k in range(12):
        d = bytearray(d0)
        pos = int(rng.integers(60, len(d) - 100))
        if k % 4 == 0:
            d[pos:pos] = d0[:200]
        elif k % 4 == 1:
            d[pos:pos + 50] = bytes(50)
        elif k % 4 == 2:
            d += d0
        else:
            d[pos:pos + 4] = b"RIFF"
        (tmp_path / f"v{k}.wav").write_bytes(bytes(d))
    code = ("import warnings; warnings.simplefilter('ignore'); import voiceguard.audio as A\n"
            "for k in range(12):\n    try: A.load_audio(f'v{k}.wav')\n    except Exception: pass\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "", r.stderr[:500]
