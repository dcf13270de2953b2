"""Issue #16: what the watermark API and `watermark embed` accept, refuse and write.

Float range (section 3), array layout, output formats, lengths kept, and each engine's minimum length
(section 5), `detect --expect` table column (section 8). Each issue example is a regression test; each kind
of fault also gets generated variants.
"""
from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
from helpers import run_cli
from hypothesis import HealthCheck, given, settings, strategies as st
from test_watermark import speechlike

from voiceguard.audio import MAX_CHANNELS, audio_info, load_audio, resample, save_audio
from voiceguard.api import embed_file
from voiceguard.errors import AudioRangeError, AudioTooShortError, NonFiniteAudioError, OutputError, VoiceguardError
from voiceguard.watermark import AudioArrayError, load_watermarker

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def dsp():
    return load_watermarker("spread-spectrum")


@pytest.fixture(scope="module")
def shipped():
    return load_watermarker("audioseal")


def _entry_points(wm, audio, sr, layout="channels_first"):
    """Every API entry point on ``audio``: embed, detect, embed_batch, detect_batch, stream push (a stream
    declared with the smaller dimension as its channel count, as its user would)."""
    channels = 1 if np.ndim(audio) == 1 else min(np.shape(audio))
    return [lambda: wm.embed(audio, sr, 7, layout=layout), lambda: wm.detect(audio, sr, layout=layout),
            lambda: wm.embed_batch([speechlike(1.0), audio], sr, layout=layout) if np.ndim(audio) == 1
            else wm.embed_batch([audio], sr, layout=layout),
            lambda: wm.detect_batch([audio], sr, layout=layout),
            lambda: wm.stream(sr, 7, channels=channels, layout=layout).push(audio)]


# --------------------------------------------------------------------------- 1. float range (section 3)
def test_int16_scale_floats_are_refused_by_every_entry_point(dsp):
    """Regression: int16-scale floats were embedded silently and the mark was then undetectable."""
    x = speechlike(2.0) * 32768.0
    for call in _entry_points(dsp, x, 16000):
        with pytest.raises(AudioRangeError, match=r"(audio array( \d)?|stream chunk): float samples out of range: peak .*32768"):
            call()
    with pytest.raises(AudioRangeError, match="stream chunk: float samples out of range"):
        dsp.stream(16000, 1).push(x)
    assert np.abs(x).max() > 100  # the input was not rescaled in place


@settings(max_examples=30, **SETTINGS)
@given(peak=st.floats(16.01, 1e30), dtype=st.sampled_from([np.float32, np.float64]),
       where=st.floats(0, 1), channels=st.integers(1, 3), entry=st.integers(0, 4))
def test_any_float_peak_above_the_limit_is_refused(dsp, peak, dtype, where, channels, entry):
    x = np.stack([speechlike(0.6, seed=c) for c in range(channels)]).astype(dtype)
    x[-1, int(where * (x.shape[1] - 1))] = -peak if where > 0.5 else peak
    before = x.copy()
    with pytest.raises(AudioRangeError, match="out of range"):
        _entry_points(dsp, x if channels > 1 else x[0], 16000)[entry]()
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_refused(dsp, bad):
    x = speechlike(1.0)
    x[100] = bad
    for call in _entry_points(dsp, x, 16000):
        with pytest.raises(NonFiniteAudioError):
            call()


def test_hot_but_plausible_floats_and_all_int_types_are_accepted(dsp):
    x = speechlike(1.0)
    x = 0.9 * x / np.abs(x).max()  # loud enough for the mark to clear 8-bit quantisation
    hot = 4.0 * x  # +12 dBFS: a float mix that overshoots, still [-1, 1] scale
    assert dsp.embed(hot, 16000, 1).dtype == np.float32
    for dtype in (np.int16, np.int32, np.uint8, np.int8):
        info = np.iinfo(dtype)
        xi = np.clip(np.round(x * (info.max + 1) / 2 + (0 if info.min < 0 else (info.max + 1) / 2)),
                     info.min, info.max).astype(dtype)
        y = dsp.embed(xi, 16000, 0x1234)
        assert y.dtype == dtype and dsp.detect(y, 16000).message == 0x1234


# --------------------------------------------------------------------------- 2a. layout (section 5)
def test_samples_channels_array_is_refused_by_default_and_works_with_channels_last(dsp):
    """Regression: a [samples, channels] array was read as 32000 channels of 2 samples."""
    x = np.stack([speechlike(2.0), 0.5 * speechlike(2.0, seed=1)]).T  # [32000, 2], as soundfile reads it
    *calls, push = _entry_points(dsp, x, 16000)
    for call in calls:
        with pytest.raises(AudioArrayError, match=r"32000 channels of 2 samples.*layout='channels_last'"):
            call()
    with pytest.raises(AudioArrayError, match=r"\(32000, 2\) does not fit a 2-channel stream.*'channels_last'"):
        push()
    y = dsp.embed(x, 16000, 0xBEEF, layout="channels_last")
    assert y.shape == x.shape and y.dtype == x.dtype and not np.array_equal(y, x)
    np.testing.assert_array_equal(y, dsp.embed(np.ascontiguousarray(x.T), 16000, 0xBEEF).T)
    r = dsp.detect(y, 16000, layout="channels_last")
    assert r.detected and r.message == 0xBEEF and r.duration == pytest.approx(2.0)
    with pytest.raises(AudioArrayError, match=r"layout='channels_first'"):
        dsp.embed(np.ascontiguousarray(x.T), 16000, layout="channels_last")  # the other way round
    with pytest.raises(ValueError, match="layout must be one of"):
        dsp.embed(x, 16000, layout="interleaved")


@settings(max_examples=25, **SETTINGS)
@given(channels=st.integers(1, MAX_CHANNELS), extra=st.integers(0, 3000), layout=st.sampled_from(
    ["channels_first", "channels_last"]), dtype=st.sampled_from([np.float32, np.float64, np.int16]))
def test_both_layouts_round_trip_any_channel_count(dsp, channels, extra, layout, dtype):
    n = 4000 + extra  # 0.5 s at 8 kHz and more
    x = np.stack([speechlike(n / 8000, 8000, seed=c)[:n] for c in range(channels)])
    x = np.round(x * 32767).astype(dtype) if dtype == np.int16 else x.astype(dtype)
    given_x = x if layout == "channels_first" else np.ascontiguousarray(x.T)
    y = dsp.embed(given_x, 8000, 0x0F0F, layout=layout)
    assert y.shape == given_x.shape and y.dtype == given_x.dtype
    ref = dsp.embed(x, 8000, 0x0F0F)
    np.testing.assert_allclose((y if layout == "channels_first" else y.T).astype(np.float64), ref,
                               atol=1 if dtype == np.int16 else 1e-6)


@settings(max_examples=40, **SETTINGS)
@given(shape=st.one_of(st.tuples(st.integers(MAX_CHANNELS + 1, 60), st.integers(1, 20000)),  # too many channels
                       st.tuples(st.integers(2, 50000), st.integers(1, 8)).filter(lambda s: s[0] > s[1])),
       layout=st.sampled_from(["channels_first", "channels_last"]), entry=st.integers(0, 3))
def test_shapes_that_cannot_be_audio_are_refused_with_the_other_layout_named(dsp, shape, layout, entry):
    channels, samples = shape
    x = np.zeros((channels, samples) if layout == "channels_first" else (samples, channels), np.float32)
    other = "channels_last" if layout == "channels_first" else "channels_first"
    with pytest.raises(AudioArrayError, match=f"{channels} channels of {samples} samples.*layout='{other}'"):
        _entry_points(dsp, x, 16000, layout)[entry]()


@pytest.mark.parametrize("bad,fragment", [(np.zeros((2, 3, 4)), "is not audio"), (np.zeros(0), "empty"),
                                          (np.zeros((1, 0)), "empty"), (np.ones(8000, bool), "dtype bool"),
                                          (np.ones(8000, complex), "dtype complex")])
def test_arrays_that_are_not_audio(dsp, bad, fragment):
    with pytest.raises(AudioArrayError, match=fragment):
        dsp.embed(bad, 16000)
    with pytest.raises(AudioArrayError, match="sample rate"):
        dsp.detect(speechlike(1.0), 0)


def test_stream_accepts_channels_last_chunks_and_refuses_the_wrong_layout(dsp):
    x = np.stack([speechlike(2.3, 22050), speechlike(2.3, 22050, seed=4)]).T  # [n, 2]
    stream = dsp.stream(22050, 0xCAFE, channels=2, layout="channels_last")
    out = [stream.push(x[i:i + 4000]) for i in range(0, len(x), 4000)] + [stream.flush()]
    y = np.concatenate(out, axis=0)
    np.testing.assert_allclose(y, dsp.embed(x, 22050, 0xCAFE, layout="channels_last"), atol=1e-6)
    wrong = dsp.stream(22050, 0xCAFE, channels=2)
    with pytest.raises(AudioArrayError, match=r"does not fit a 2-channel stream.*layout='channels_last'"):
        wrong.push(x[:4000])


# --------------------------------------------------------------------------- 2b/c. file formats (section 5)
def _make_input(tmp_path, kind: str, x: np.ndarray, sr: int = 16000):
    """A file of ``kind`` (``FORMAT/SUBTYPE.ext`` written by soundfile, or ``ffmpeg:codec.ext``)."""
    if kind.startswith("ffmpeg:"):
        codec, ext = kind[7:].rsplit(".", 1)
        pcm = tmp_path / "pcm.wav"
        sf.write(pcm, x.T, sr, subtype="PCM_16")
        out = tmp_path / f"in_{codec}.{ext}"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(pcm), "-c:a", codec, str(out)], check=True)
        return out
    fmt, rest = kind.split("/")
    subtype, ext = rest.rsplit(".", 1)
    out = tmp_path / f"in_{fmt}_{subtype}.{ext}"
    sf.write(out, x.T, sr, format=fmt, subtype=subtype)
    return out


INPUTS = ["WAV/PCM_16.wav", "WAV/PCM_24.wav", "WAV/FLOAT.wav", "WAV/ALAW.wav", "WAV/ULAW.wav",
          "WAV/IMA_ADPCM.wav", "WAV/MS_ADPCM.wav", "RF64/PCM_16.wav", "WAVEX/PCM_24.wav", "FLAC/PCM_24.flac",
          "OGG/VORBIS.ogg", "AIFF/PCM_16.aiff", "MP3/MPEG_LAYER_III.mp3", "ffmpeg:adpcm_ima_wav.wav"]
OUTPUTS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".aiff": "AIFF", ".mp3": "mp3"}
LOSSLESS = {"PCM_16", "PCM_24", "FLOAT", "ALAW", "ULAW", "IMA_ADPCM", "MS_ADPCM"}


def _expected_subtype(src_format, src_subtype, ext):
    container = OUTPUTS[ext]
    if ext == ".wav" and src_format in ("WAV", "RF64", "WAVEX"):
        return src_subtype  # same container: kept, ADPCM included
    try:
        keep = sf.check_format(container, src_subtype) and src_subtype not in ("IMA_ADPCM", "MS_ADPCM")
    except ValueError:  # not a libsndfile subtype (an ffmpeg codec name)
        keep = False
    if keep:
        return src_subtype
    if src_subtype in ("PCM_24", "FLOAT") and sf.check_format(container, "PCM_24"):
        return "PCM_24"
    return sf.default_subtype(container)


@needs_ffmpeg
@pytest.mark.parametrize("kind", INPUTS)
def test_embed_converts_every_input_format_to_every_output_extension(tmp_path, dsp, kind):
    """Regression (wav->ogg, ogg->wav, mp3->wav, A-law->FLAC, ADPCM->FLAC ended in "Invalid combination of
    format, subtype and endian") and the matrix of input formats x output extensions."""
    channels = 1 if "LAW" in kind else 2
    x = np.stack([speechlike(1.3, seed=c) for c in range(channels)])
    src = _make_input(tmp_path, kind, x)
    info = audio_info(src)
    before = src.read_bytes()
    for ext, container in OUTPUTS.items():
        out = tmp_path / "out" / f"marked{ext}"
        row = embed_file(src, out, 0xBEEF, engine=dsp, overwrite=True)
        assert row.status == "ok", (kind, ext, row.error)
        got = audio_info(out)
        assert got.format.upper().startswith(container.upper()) or (ext == ".wav" and got.format == info.format)
        if ext != ".mp3":  # encoded by ffmpeg: its default codec
            assert got.subtype == _expected_subtype(info.format, info.subtype, ext), (kind, ext, got)
        assert (got.sample_rate, got.channels) == (info.sample_rate, info.channels)
        y, _ = load_audio(out)
        if ext in (".wav", ".flac", ".aiff"):
            assert y.shape[1] == info.frames, (kind, ext)  # lossless outputs keep the length exactly
        assert dsp.detect(y, info.sample_rate).message == 0xBEEF, (kind, ext)
    assert src.read_bytes() == before


@needs_ffmpeg
@pytest.mark.parametrize("kind,channels", [("ffmpeg:adpcm_ima_wav.wav", 1), ("ffmpeg:adpcm_ms.wav", 1),
                                           ("ffmpeg:adpcm_ms.wav", 2), ("WAV/IMA_ADPCM.wav", 2),
                                           ("RF64/PCM_16.wav", 2), ("WAVEX/PCM_24.wav", 2)])
def test_same_extension_keeps_length_rate_channels_and_container(tmp_path, dsp, kind, channels):
    """Regression: IMA ADPCM came back longer (97,968 -> 98,649 samples: libsndfile re-blocked it into
    1017-sample blocks and padded the last one); RF64 came back as plain WAV."""
    x = np.stack([speechlike(97968 / 16000, seed=c)[:97968] for c in range(channels)])
    src = _make_input(tmp_path, kind, x)
    info = audio_info(src)
    out = tmp_path / "marked.wav"
    row = embed_file(src, out, 0x0ACE, engine=dsp)
    assert row.status == "ok", row.error
    got = audio_info(out)
    assert (got.frames, got.sample_rate, got.channels, got.format, got.subtype) == \
        (info.frames, info.sample_rate, info.channels, info.format, info.subtype)
    if kind == "ffmpeg:adpcm_ima_wav.wav":
        assert got.frames == 97968  # the example


@settings(max_examples=12, **SETTINGS)
@given(n=st.integers(8000, 40000), channels=st.integers(1, 2), block=st.sampled_from([256, 512, 1024, 2048]),
       codec=st.sampled_from(["adpcm_ima_wav", "adpcm_ms"]))
def test_adpcm_of_any_length_and_block_size_keeps_its_length(tmp_path_factory, dsp, n, channels, block, codec):
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    d = tmp_path_factory.mktemp("adpcm")
    pcm = d / "pcm.wav"
    sf.write(pcm, np.stack([speechlike(n / 16000 + 0.01, seed=c)[:n] for c in range(channels)]).T, 16000)
    src = d / "in.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(pcm), "-c:a", codec, "-block_size", str(block),
                    str(src)], check=True)
    info = audio_info(src)
    row = embed_file(src, d / "out.wav", 3, engine=dsp)
    assert row.status == "ok", row.error
    got = audio_info(d / "out.wav")
    assert (got.frames, got.subtype, got.channels) == (info.frames, info.subtype, info.channels)


def test_impossible_outputs_name_the_file_and_format_never_the_temp_file(tmp_path, dsp):
    src = tmp_path / "in.wav"
    sf.write(src, speechlike(1.0), 16000)
    for name, fragment in [("out.xyz", "unknown audio extension .xyz"), ("out", "no file extension")]:
        with pytest.raises(VoiceguardError, match=fragment) as e:
            embed_file(src, tmp_path / name, engine=dsp)
        assert ".part" not in str(e.value)
        assert not (tmp_path / name).exists()
    with pytest.raises(OutputError, match=r"out\.flac: a FLAC file cannot hold FLOAT samples") as e:
        save_audio(tmp_path / "out.flac", speechlike(0.1), 16000, subtype="FLOAT")
    assert ".part" not in str(e.value)
    if shutil.which("ffmpeg"):
        with pytest.raises(OutputError, match=r"out\.amr: cannot write \.amr audio at 44100 Hz") as e:
            save_audio(tmp_path / "out.amr", speechlike(0.1, 44100), 44100)  # AMR is 8 kHz only
        assert ".part" not in str(e.value) and "out.amr" in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav"]  # no temp files left


# --------------------------------------------------------------------------- 2d. minimum length (section 5)
def at_rate(x16: np.ndarray, sr: int) -> np.ndarray:
    """The same 16 kHz clip at ``sr`` (``speechlike`` itself moves its formant with the rate)."""
    return resample(x16, 16000, sr)


def test_engines_state_their_minimum(dsp, shipped):
    assert shipped.min_seconds == 1.5 and dsp.min_seconds == 0.5


@pytest.mark.parametrize("seconds", [0.1, 1.0, 1.49])
def test_clips_shorter_than_the_shipped_model_marks_are_refused(shipped, seconds):
    """Regression: 0.1 s and 1 s clips were 'ok' and then read as not watermarked."""
    with pytest.raises(AudioTooShortError, match=r"too short for the audioseal watermark \(minimum 1.5 s\)"):
        shipped.embed(speechlike(seconds), 16000, 0xBEEF)
    stream = shipped.stream(16000, 0xBEEF)
    stream.push(speechlike(seconds))
    with pytest.raises(AudioTooShortError, match="stream: .*minimum 1.5 s"):
        stream.flush()


def test_cli_refuses_a_clip_too_short_with_an_error_row(tmp_path):
    src = tmp_path / "short.wav"
    sf.write(src, speechlike(1.0), 16000)
    r = run_cli("watermark", "embed", str(src), str(tmp_path / "out.wav"), "--format", "json", "--engine", "audioseal")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "too short for the audioseal watermark (minimum 1.5 s)" in r.stdout
    assert not (tmp_path / "out.wav").exists()
    sf.write(src, speechlike(0.3), 16000)  # the default engine's minimum is 0.5 s
    r = run_cli("watermark", "embed", str(src), str(tmp_path / "out.wav"), "--format", "json")
    assert r.returncode == 2 and "too short for the spread-spectrum watermark (minimum 0.5 s)" in r.stdout
    assert not (tmp_path / "out.wav").exists()


@pytest.mark.parametrize("seconds,sr", [(1.5, 16000), (1.53, 44100), (1.75, 22050), (2.05, 48000),
                                        (3.15, 16000)])
def test_shipped_model_finds_its_mark_at_every_length_from_its_minimum(shipped, seconds, sr):
    """At and above ``min_seconds`` the mark is detected and the message read (the shipped model's bit
    accuracy is 0.935, so up to 3 of 16 bits may flip: p-value <= 0.011 against a random message)."""
    x = at_rate(speechlike(seconds, seed=int(seconds * 100)), sr)
    message = int(seconds * 1000) * 37 % 65536
    r = shipped.detect(shipped.embed(x, sr, message), sr, expected=message)
    assert r.detected and r.bits_matched >= 13, (seconds, sr, r.probability, r.bits_matched)


@settings(max_examples=15, **SETTINGS)
@given(seconds=st.floats(0.5, 3.0), sr=st.sampled_from([16000, 22050, 44100, 48000]), seed=st.integers(0, 99),
       message=st.integers(0, 2 ** 16 - 1))
def test_spread_spectrum_finds_its_mark_at_every_length_from_its_minimum(dsp, seconds, sr, seed, message):
    x = at_rate(speechlike(seconds, seed=seed), sr)
    assert len(x) >= dsp.min_seconds * sr
    r = dsp.detect(dsp.embed(x, sr, message), sr)
    assert r.detected and r.message == message, (seconds, sr, r.probability)
    with pytest.raises(AudioTooShortError, match="minimum 0.5 s"):
        dsp.embed(x[:int(0.49 * sr)], sr, message)


# --------------------------------------------------------------------------- 3. detect --expect table (section 8)
def test_detect_table_shows_bits_matched_with_expect(tmp_path, dsp):
    """Regression: bits matched was in the JSON but not in the table."""
    out = tmp_path / "m.wav"
    sf.write(out, dsp.embed(speechlike(2.0), 16000, 0xBEEF), 16000)
    r = run_cli("watermark", "detect", str(out), "--expect", "0xBEEF", "--engine", "spread-spectrum")
    lines = [re.split(r"\s{2,}", line.strip()) for line in r.stdout.splitlines() if line.strip()]
    header, row = lines[0], lines[-1]
    assert r.returncode == 1 and header.index("bits_matched") == header.index("p_value") - 1
    assert row[header.index("bits_matched")] == "16" and row[header.index("message")] == "0xBEEF"
    r = run_cli("watermark", "detect", str(out), "--engine", "spread-spectrum")
    assert "bits_matched" not in r.stdout.splitlines()[0]
