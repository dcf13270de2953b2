"""Issue #16 §2-3: speech activity (silero-vad) before the spoof verdict, the speech-aware channel rule shared
by `scan` and `risk`, and non-finite scores as error rows."""
from __future__ import annotations

import csv
import json
import math
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from scipy.signal import lfilter

from helpers import SHARED, speech, write_wav
from voiceguard import vad
from voiceguard.detect.batch import MIN_SECONDS, decode, decode_speech, score_files
from voiceguard.api.scan import ScanRow, exit_code, scan, summary_line
from voiceguard.detect.scoring import Calibration, summarize_windows
from voiceguard.errors import ModelCardError, ScoreError
from voiceguard.vad import MIN_SPEECH_SECONDS, choose_mix, speech_activity, speech_mix
from voiceguard.audio import SAMPLE_RATE

PROFILE = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _pink(n: int, rng) -> np.ndarray:
    x = lfilter([0.049922035, -0.095993537, 0.050612699, -0.004408786], [1, -2.494956002, 2.017265875, -0.522189400],
                rng.standard_normal(n))
    return x / np.abs(x).max()


def non_speech(kind: str, seconds: float, sr: int, level_db: float, freq: float, seed: int = 0) -> np.ndarray:
    """Signals with no voice in them: the kinds the issue found scanned as confident `bonafide`."""
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    rng = np.random.default_rng(seed)
    a = 10 ** (level_db / 20)
    x = {"silence": lambda: np.zeros(n), "dc": lambda: np.ones(n), "tone": lambda: np.sin(2 * np.pi * freq * t),
         "square": lambda: np.sign(np.sin(2 * np.pi * freq * t)),
         "white": lambda: rng.standard_normal(n) / 4, "pink": lambda: _pink(n, rng),
         "tone+hiss": lambda: 0.7 * np.sin(2 * np.pi * freq * t) + 0.075 * rng.standard_normal(n)}[kind]()
    return np.clip(a * x, -1, 1).astype(np.float32)


@pytest.fixture(scope="module")
def loaded():
    from voiceguard.detect.models import load_model

    return load_model()


# --------------------------------------------------------------------------- the issue's examples
def test_issue_examples_are_no_speech_not_bonafide(tmp_path, loaded):
    """Regression: silence, DC, a 1 kHz tone and hiss were `bonafide` with p_spoof 0.000, exit 0."""
    for kind in ("silence", "dc", "tone", "white", "pink"):
        write_wav(tmp_path / f"{kind}.wav", non_speech(kind, 5.0, SAMPLE_RATE, -6, 1000.0)[None], subtype="FLOAT")
    rows = list(scan([str(tmp_path)], model=loaded, watermark=False))
    assert len(rows) == 5
    for r in rows:
        assert (r.status, r.verdict, r.p_spoof, r.llr) == ("ok", "no-speech", None, None), r
        assert r.note == "no speech detected (0.00 s of 5.00 s)" and r.speech_s == 0 and r.duration_s == 5.0
        assert not any(isinstance(v, float) and not math.isfinite(v) for v in r.to_dict().values())
    assert exit_code(rows) == 4
    assert summary_line(rows, loaded.name).endswith(": 0 bona fide, 0 spoof, 0 partial spoof, 5 no speech, 0 error(s)")


def test_cancelling_stereo_is_scored_on_one_channel(tmp_path, loaded):
    """Regression: right = -left mixed to silence and was called `bonafide` with LLR > 11."""
    x = speech(3.0)[0]
    write_wav(tmp_path / "cancel.wav", np.stack([x, -x]), subtype="FLOAT")
    write_wav(tmp_path / "mono.wav", x[None], subtype="FLOAT")
    cancel, mono = list(scan([str(tmp_path / "cancel.wav"), str(tmp_path / "mono.wav")], model=loaded, watermark=False))
    assert cancel.verdict != "no-speech" and cancel.channels == 2
    assert cancel.note == "channel 1 of 2 used: the channels cancel in the mean"
    assert (cancel.p_spoof, cancel.llr, cancel.verdict) == (mono.p_spoof, mono.llr, mono.verdict)
    assert cancel.speech_s == mono.speech_s >= 2.0 and mono.note is None


@settings(max_examples=40, **PROFILE)
@given(kind=st.sampled_from(["silence", "dc", "tone", "square", "white", "pink", "tone+hiss"]),
       seconds=st.floats(0.3, 4.0), sr=st.sampled_from([8000, 16000, 22050, 44100, 48000]),
       level_db=st.floats(-70, -1), freq=st.floats(40, 3900), seed=st.integers(0, 2 ** 16))
def test_signals_without_a_voice_have_no_speech(kind, seconds, sr, level_db, freq, seed):
    act = speech_activity(non_speech(kind, seconds, sr, level_db, freq, seed), sr)
    assert not act.has_speech and act.speech_s < MIN_SPEECH_SECONDS, (kind, act)
    assert act.duration_s == pytest.approx(seconds, abs=1e-3)


@settings(max_examples=12, **PROFILE)
@given(seconds=st.floats(0.6, 5.5), sr=st.sampled_from([8000, 16000, 24000, 44100]), gain_db=st.floats(-30, 0))
def test_speech_is_found_at_any_rate_and_level(seconds, sr, gain_db):
    x = speech(seconds, sr)[0] * 10 ** (gain_db / 20)
    act = speech_activity(x, sr)
    # at least the no-speech minimum (a 0.6 s clip at -30 dB gave 0.38 s of detected speech)
    assert act.has_speech and vad.MIN_SPEECH_SECONDS <= act.speech_s <= seconds + 1e-3
    assert all(0 <= a < b <= act.duration_s + 1e-3 for a, b in act.spans)


# --------------------------------------------------------------------------- the channel rule
def test_channel_rule_cases():
    x = speech(3.0)[0]
    noise = non_speech("white", 3.0, SAMPLE_RATE, -10, 0)
    cases = {"cancel": (np.stack([x, -x]), 0, "the channels cancel in the mean"),
             "dead": (np.stack([np.zeros_like(x), x]), 1, "channel 1 has no speech"),
             "near-silent": (np.stack([x, 1e-4 * noise]), 0, "channel 2 has no speech"),
             "noise + speech": (np.stack([noise, x]), 1, "channel 1 has no speech")}
    for name, (audio, channel, why) in cases.items():
        m = choose_mix(audio, SAMPLE_RATE)
        assert (m.channel, m.why) == (channel, why), name
        assert np.array_equal(m.audio[0], audio[channel]) and np.array_equal(speech_mix(audio, SAMPLE_RATE), m.audio)
        assert m.activity.has_speech and m.audio.dtype == np.float32 and m.audio.shape == (1, x.size)
    normal = np.stack([x, 0.7 * x + 0.01 * noise])
    m = choose_mix(normal, SAMPLE_RATE)
    assert m.channel is None and m.note is None and np.allclose(m.audio[0], normal.mean(axis=0))
    silent = np.zeros((2, SAMPLE_RATE), np.float32)  # nothing to choose: the mean, and no speech
    assert choose_mix(silent, SAMPLE_RATE).channel is None and not choose_mix(silent, SAMPLE_RATE).activity.has_speech
    mono = choose_mix(x, SAMPLE_RATE, activity=False)
    assert mono.channel is None and mono.activity is None and np.array_equal(mono.audio[0], x)


@settings(max_examples=15, **PROFILE)
@given(channels=st.integers(2, 4), data=st.data())
def test_channel_rule_layouts(channels, data):
    """Any channel count: a dead or noise-only channel is never used, an opposite-phase pair makes one
    channel be used, in-phase copies keep the mean."""
    x = speech(1.5)[0]
    layout = data.draw(st.lists(st.sampled_from(["speech", "inverted", "dead", "noise"]), min_size=channels,
                                max_size=channels).filter(lambda ls: "speech" in ls))
    gains = data.draw(st.lists(st.floats(0.6, 1.0), min_size=channels, max_size=channels))
    rows = {"speech": lambda g: g * x, "inverted": lambda g: -g * x, "dead": lambda g: 0 * x,
            "noise": lambda g: non_speech("white", 1.5, SAMPLE_RATE, -12, 0, seed=int(g * 1000))}
    audio = np.stack([rows[k](g) for k, g in zip(layout, gains)]).astype(np.float32)
    m = choose_mix(audio, SAMPLE_RATE)
    assert m.activity.has_speech
    signed = [g if k == "speech" else -g for k, g in zip(layout, gains) if k in ("speech", "inverted")]
    loudest = max(abs(g) for g in signed)
    cancels = abs(sum(signed)) / channels < vad.CANCEL_RATIO * loudest * (1 - 1e-3) \
        if len(signed) == channels else True  # a dead or noise channel: always one channel
    if cancels:
        assert m.channel is not None and layout[m.channel] in ("speech", "inverted"), (layout, m)
        assert np.array_equal(m.audio[0], audio[m.channel])
    elif abs(sum(signed)) / channels > vad.CANCEL_RATIO * loudest * (1 + 1e-3):
        assert m.channel is None and np.allclose(m.audio[0], audio.mean(axis=0), atol=1e-6), (layout, gains)


def test_scan_and_risk_use_the_same_rule(tmp_path):
    from voiceguard.eval.risk.embed import decode_voice

    x = speech(2.0)[0]
    for name, audio, channel in (("cancel", np.stack([x, -x]), 0), ("dead", np.stack([0 * x, x]), 1)):
        p = write_wav(tmp_path / f"{name}.wav", audio, subtype="FLOAT")
        scan_audio, _ = decode(p)
        assert np.array_equal(scan_audio[0], decode_voice(p)) and np.array_equal(scan_audio[0], audio[channel])
        audio3, _, mix = decode_speech(p)
        assert np.array_equal(audio3, scan_audio) and mix.channel == channel


# --------------------------------------------------------------------------- exit codes
STATES = {"bonafide": ScanRow("a", "ok", "bonafide", 0.1, 2.0), "spoof": ScanRow("b", "ok", "spoof", 0.9, -2.0),
          "partial-spoof": ScanRow("c", "ok", "partial-spoof", 0.2, 1.0),
          "no-speech": ScanRow("d", "ok", "no-speech"), "error": ScanRow("e", "error", error="bad")}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(sorted(STATES)), max_size=8))
def test_exit_code_priority(kinds):
    rows = [STATES[k] for k in kinds]
    want = 2 if "error" in kinds else 1 if {"spoof", "partial-spoof"} & set(kinds) else 4 if "no-speech" in kinds else 0
    assert exit_code(rows) == want
    line = summary_line(rows, "m")
    assert f"{kinds.count('bonafide')} bona fide, {kinds.count('spoof')} spoof" in line
    assert f"{kinds.count('no-speech')} no speech, {kinds.count('error')} error(s)" in line


# --------------------------------------------------------------------------- non-finite scores
class Stub:
    """A detector that returns ``values`` cycled over windows (NaN, inf...)."""

    input_samples = 8000

    def __init__(self, values):
        self.values = np.asarray(values, dtype=np.float64)

    def score_batch(self, batch):
        return np.resize(self.values, len(batch))


class StubLoaded:
    def __init__(self, detector, calibration=Calibration()):
        self.detector, self.calibration, self.name, self.calibrated = detector, calibration, "stub", False


def test_nan_from_the_model_is_an_error_row_never_nan(tmp_path):
    write_wav(tmp_path / "a.wav", speech(2.0), subtype="FLOAT")
    for values in ([np.nan], [1.0, np.inf], [-np.inf, 0.5, 0.5]):
        rows = list(scan([str(tmp_path / "a.wav")], model=StubLoaded(Stub(values)), watermark=False))
        assert [(r.status, r.p_spoof, r.llr, r.verdict) for r in rows] == [("error", None, None, None)]
        assert rows[0].error.startswith("model produced a non-finite score"), rows[0].error
        json.dumps([r.to_dict(segments=True) for r in rows], allow_nan=False)  # raises on NaN/Inf
        assert exit_code(rows) == 2
    # a finite raw score that the calibration maps to an infinite LLR is caught too
    rows = list(scan([str(tmp_path / "a.wav")], model=StubLoaded(Stub([1e300]), Calibration(scale=1e300)), watermark=False))
    assert rows[0].status == "error" and "non-finite" in rows[0].error


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 12), data=st.data())
def test_any_non_finite_window_makes_the_file_an_error(n, data):
    raw = np.array(data.draw(st.lists(st.floats(-5, 5), min_size=n, max_size=n)))
    bad = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n))
    raw[bad] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    with pytest.raises(ScoreError, match="model produced a non-finite score"):
        summarize_windows(raw, list(range(0, 100 * n, 100)), 100 * n, SAMPLE_RATE, 100)


def test_only_the_file_with_nan_scores_fails(tmp_path):
    class NanOnLoud(Stub):
        def score_batch(self, batch):
            return np.where(np.abs(batch).max(axis=1) > 0.6, np.nan, 1.0)

    write_wav(tmp_path / "a.wav", 0.5 * np.ones((1, 2 * SAMPLE_RATE), np.float32), subtype="FLOAT")
    write_wav(tmp_path / "b.wav", 0.9 * np.ones((1, 2 * SAMPLE_RATE), np.float32), subtype="FLOAT")
    write_wav(tmp_path / "c.wav", 0.5 * np.ones((1, 2 * SAMPLE_RATE), np.float32), subtype="FLOAT")
    out = list(score_files(NanOnLoud([1.0]), sorted(tmp_path.glob("*.wav")), batch_windows=3))
    assert [o.result is None for o in out] == [False, True, False]
    assert "non-finite" in out[1].error and out[0].result.llr == 1.0


# --------------------------------------------------------------------------- the watermark column
def test_no_speech_row_still_reports_the_watermark(tmp_path, loaded):
    from voiceguard.watermark import load_watermarker

    tone = non_speech("tone", 3.0, SAMPLE_RATE, -10, 1000.0)
    marked = load_watermarker("audioseal").embed(tone, SAMPLE_RATE, 0xBEEF)
    write_wav(tmp_path / "marked_tone.wav", np.asarray(marked)[None], subtype="FLOAT")
    write_wav(tmp_path / "tone.wav", tone[None], subtype="FLOAT")
    rows = list(scan([str(tmp_path)], model=loaded, watermark=load_watermarker("audioseal", need="detect")))
    got = {r.path.rsplit("/", 1)[1]: r for r in rows}
    assert all(r.verdict == "no-speech" for r in rows)
    assert got["marked_tone.wav"].watermark not in (None, "none") and got["marked_tone.wav"].wm_probability > 0.5
    assert got["tone.wav"].watermark == "none"


def test_demo_scan_says_no_speech(tmp_path):
    from voiceguard.demo import handlers as H

    p = write_wav(tmp_path / "hiss.wav", non_speech("white", 2.0, SAMPLE_RATE, -20, 0)[None], subtype="FLOAT")
    v = H.scan_clip(p)
    assert (v.verdict, v.p_spoof, v.llr) == ("no-speech", None, None)
    assert "no speech detected (0.00 s of 2.00 s)" in v.summary and "Watermark: none" in v.summary


# --------------------------------------------------------------------------- the VAD model itself
def test_vad_matches_the_stock_silero_onnx_path():
    """The sequence model gives the same speech spans as silero-vad's streaming OnnxWrapper."""
    import torch
    from silero_vad import get_speech_timestamps, load_silero_vad

    x = np.concatenate([speech(3.0)[0], np.zeros(SAMPLE_RATE, np.float32), speech(2.0)[0]])
    threads = torch.get_num_threads()
    stock = get_speech_timestamps(torch.from_numpy(x), load_silero_vad(onnx=True), sampling_rate=SAMPLE_RATE)
    torch.set_num_threads(threads)
    assert tuple((round(s["start"] / SAMPLE_RATE, 3), round(s["end"] / SAMPLE_RATE, 3)) for s in stock) == speech_activity(x, SAMPLE_RATE).spans


def test_model_file_sha256_is_checked(tmp_path, monkeypatch):
    bad = tmp_path / "silero_vad_16k_sequence.onnx"
    bad.write_bytes(b"not the model")
    with pytest.raises(ModelCardError, match="sha256 mismatch for the silero-vad model"):
        vad.check_model_file(bad)
    monkeypatch.setattr(vad, "_vad", None)
    monkeypatch.setattr(vad, "SILERO_SHA256", "0" * 64)
    with pytest.raises(ModelCardError, match="expected 0000"):
        vad.load_vad()
    monkeypatch.undo()
    assert vad.check_model_file(vad._model_path()).name == vad.SILERO_MODEL


def test_scanning_leaves_torch_thread_count_alone(tmp_path, loaded, monkeypatch):
    """`import silero_vad` sets torch's thread count to 1; the first load (here forced again) restores it."""
    import torch

    before = torch.get_num_threads()
    for name in [m for m in sys.modules if m == "silero_vad" or m.startswith("silero_vad.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(vad, "_vad", None)
    torch.set_num_threads(3)
    try:
        write_wav(tmp_path / "a.wav", speech(1.0))
        rows = list(scan([str(tmp_path / "a.wav")], model=loaded, watermark=False))
        assert rows[0].status == "ok" and "silero_vad.model" in sys.modules  # the import really ran again
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------- real speech (../shared)
LIBRI = SHARED / "data" / "speech" / "librispeech" / "test-other"
NEURAL = SHARED / "data" / "neural"


def test_real_speech_is_never_no_speech():
    """Every LibriSpeech test-other file, and one file per system and label of the neural set (bona fide
    and spoof), has speech.  bench/bench_vad.py runs all 508 neural files (README: 0 no-speech)."""
    if not LIBRI.is_dir() or not (NEURAL / "protocol.csv").is_file():
        pytest.skip(f"{LIBRI} or {NEURAL} not found (../shared is absent)")
    from voiceguard.audio import load_audio
    from voiceguard.errors import AudioError

    files = sorted(LIBRI.rglob("*.flac"))
    assert len(files) >= 100
    seen = set()
    with open(NEURAL / "protocol.csv", newline="", encoding="utf-8-sig") as f:
        for row in csv.DictReader(f):
            if (row["label"], row["system"]) not in seen:
                seen.add((row["label"], row["system"]))
                files.append(NEURAL / row["path"])
    missed = []
    for p in files:
        try:
            audio, _ = load_audio(p, SAMPLE_RATE, min_seconds=MIN_SECONDS)
        except AudioError:  # unreadable / too short for scan: an error row before the VAD is asked
            continue
        act = choose_mix(audio, SAMPLE_RATE).activity
        if not act.has_speech:
            missed.append((p.name, act.speech_s))
    assert not missed, missed
