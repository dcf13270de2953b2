"""Watermark engines: messages, block machinery, streaming, any rate/channels/dtype, loading, DSP robustness."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from voiceguard.attacks import get_attack
from voiceguard.errors import ModelCardError
from voiceguard.watermark import DetectionResult, load_watermarker, message_bits, parse_message
from voiceguard.metrics.watermark import match_p_value
from voiceguard.watermark.base import (block_starts, bits_value, crossfade_weights,
                                       smooth_segments, window_score)
from voiceguard.watermark.calibrate import KINDS, clean_windows, threshold_for_fpr
from voiceguard.watermark.models import (build_detector, build_generator, eager, read_checkpoint,
                                         save_checkpoint, seanet_config)


def speechlike(seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """Harmonic source through a resonance, syllable envelope, a little noise: float32 [n]."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 * (1 + 0.08 * np.sin(2 * np.pi * 2.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    src = sum(np.sin(h * phase) / h for h in range(1, 40) if h * 150 < sr / 2)
    x = lfilter([1.0], [1.0, -1.2, 0.7], src) + 0.02 * rng.standard_normal(t.size)
    env = 0.2 + np.clip(np.sin(2 * np.pi * 3.1 * t), 0, None)
    return (0.1 * x * env / np.abs(x).max()).astype(np.float32)


@pytest.fixture(scope="module")
def dsp():
    return load_watermarker("spread-spectrum")


@pytest.fixture(scope="module")
def tiny_audioseal(tmp_path_factory):
    """A randomly initialised small AudioSeal pair written in audioseal's checkpoint format."""
    torch.manual_seed(0)
    cfg = seanet_config(n_filters=4, dimension=16, lstm=0)
    d = tmp_path_factory.mktemp("tiny")
    save_checkpoint(d / "g.pth", build_generator(cfg), cfg)
    save_checkpoint(d / "d.pth", build_detector(cfg), cfg)
    return d / "g.pth", d / "d.pth", cfg


# --------------------------------------------------------------------------- messages
@pytest.mark.parametrize("text,value", [("0xBEEF", 0xBEEF), ("48879", 48879), ("0b101", 5), (7, 7), ("0x0", 0)])
def test_parse_message(text, value):
    assert parse_message(text) == value
    assert bits_value(message_bits(value)) == value


@pytest.mark.parametrize("bad,fragment", [("0x10000", "does not fit in 16 bits"), ("-1", "does not fit"),
                                          ("beef!", "not a number")])
def test_parse_message_errors(bad, fragment):
    with pytest.raises(ValueError, match=fragment):
        parse_message(bad)


def test_match_p_value_is_the_binomial_tail():
    assert match_p_value(16, 16) == pytest.approx(1 / 65536)
    assert match_p_value(0, 16) == 1.0
    assert match_p_value(15, 16) == pytest.approx(17 / 65536)


# --------------------------------------------------------------------------- blocks and windows
@pytest.mark.parametrize("n", [1, 1599, 16000, 16001, 30401, 100000])
def test_crossfaded_blocks_sum_to_one_everywhere(n):
    block, overlap = 16000, 1600
    starts = block_starts(n, block, block - overlap)
    total = np.zeros(n)
    for k, s in enumerate(starts):
        length = min(block, n - s)
        total[s:s + length] += crossfade_weights(length, overlap, k == 0, k == len(starts) - 1)
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    assert starts[-1] + block >= n and (len(starts) == 1 or starts[-2] + block < n)


def test_window_score_and_segments():
    p = np.zeros(500, np.float32)
    p[100:150] = 1.0
    assert window_score(p, 50) == pytest.approx(1.0)
    assert window_score(p[:30], 50) == pytest.approx(0.0)
    segs = smooth_segments(p, 50)
    assert len(segs) == 1 and segs[0].start == pytest.approx(2.0) and segs[0].end == pytest.approx(3.0)
    assert isinstance(segs[0].start, float)


# --------------------------------------------------------------------------- the DSP engine
def test_dsp_round_trip_message_p_value_and_clean_audio(dsp):
    x = speechlike(6.0)
    y = dsp.embed(x, 16000, message="0xBEEF")
    assert y.shape == x.shape and y.dtype == x.dtype
    snr = 10 * np.log10(np.sum(x ** 2) / np.sum((y - x) ** 2))
    assert 23 < snr < 32
    r = dsp.detect(y, 16000, expected=0xBEEF)
    assert isinstance(r, DetectionResult) and r.detected and r.message == 0xBEEF and r.message_hex == "0xBEEF"
    assert r.bits_matched == 16 and r.p_value == pytest.approx(1 / 65536)
    assert r.segments and r.segments[0].start == 0 and r.segments[-1].end == pytest.approx(6.0, abs=0.05)
    clean = dsp.detect(x, 16000, expected=0xBEEF)
    assert not clean.detected and clean.message is None and clean.probability < 0.5


@pytest.mark.parametrize("attack,params", [("mp3", {"bitrate": "32k"}), ("lowpass", {"cutoff_hz": 5000}),
                                           ("highpass", {"cutoff_hz": 1500}), ("white_noise", {"snr_db": 20}),
                                           ("gain", {"factor": 0.5})])
def test_dsp_survives_common_edits(dsp, attack, params):
    y = dsp.embed(speechlike(5.0, seed=1), 16000, message=0x1234)
    r = dsp.detect(get_attack(attack, seed=0, **params)(y, 16000), 16000)
    assert r.detected and r.message == 0x1234, (attack, r.probability, r.bits)


def test_any_rate_multichannel_int_input_keeps_layout_and_the_band_above_8k(dsp):
    sr = 44100
    x = np.stack([speechlike(3.0, sr, seed=2), 0.5 * speechlike(3.0, sr, seed=3)])
    x_int = np.round(x * 32767).astype(np.int16)
    y = dsp.embed(x_int, sr, message=0x00FF)
    assert y.shape == x_int.shape and y.dtype == np.int16
    d = y.astype(np.float64) - x_int
    assert np.abs(d[0] - d[1]).max() <= 1  # the same mark on every channel (int rounding aside)
    d = dsp.embed(x, sr, message=0x00FF).astype(np.float64) - x  # float input: no rounding noise
    np.testing.assert_allclose(d[0], d[1], atol=1e-7)
    spec = np.abs(np.fft.rfft(d[0])) ** 2
    f = np.fft.rfftfreq(d.shape[1], 1 / sr)
    assert spec[f > 8500].sum() < 1e-4 * spec.sum()  # the mark stays below 8 kHz (> 40 dB down above)
    r = dsp.detect(y, sr)
    assert r.detected and r.message == 0x00FF and r.duration == pytest.approx(3.0)


@pytest.mark.parametrize("chunks", [[1], [7, 3001, 250], [16000], [16001, 5]])
def test_streaming_equals_whole_file_with_uneven_chunks(dsp, chunks):
    sr = 22050
    x = np.stack([speechlike(3.3, sr), speechlike(3.3, sr, seed=5)])
    whole = dsp.embed(x, sr, message=0xCAFE)
    stream = dsp.stream(sr, 0xCAFE, channels=2)
    out, pos, i = [], 0, 0
    while pos < x.shape[1]:
        k = chunks[i % len(chunks)] * (37 if chunks == [1] else 1)
        piece = stream.push(x[:, pos:pos + k])
        assert piece.shape[0] == 2
        out.append(piece)
        pos += k
        i += 1
        assert sum(o.shape[1] for o in out) >= pos - stream.latency_samples
    out.append(stream.flush())
    y = np.concatenate(out, axis=1)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, whole, atol=1e-6)
    with pytest.raises(RuntimeError, match="already flushed"):
        stream.push(x[:, :10])


def test_empty_and_bad_arguments(dsp):
    with pytest.raises(ValueError, match="empty"):
        dsp.embed(np.zeros(0, np.float32), 16000)
    with pytest.raises(ValueError, match="16 bits"):
        dsp.embed(speechlike(1.0), 16000, message=70000)
    with pytest.raises(ValueError, match="strength"):
        load_watermarker("spread-spectrum", strength=0)
    with pytest.raises(KeyError, match="unknown watermark engine"):
        load_watermarker("nope")


# --------------------------------------------------------------------------- the one getter and its registry
def test_importing_the_package_registers_every_engine():
    import subprocess
    import sys

    code = "import voiceguard.watermark as w; print(' '.join(sorted(w.WATERMARKERS)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["audioseal", "spread-spectrum"]


def test_unknown_engine_is_a_one_line_error_listing_the_engines():
    from voiceguard.errors import VoiceguardError
    from voiceguard.registry import UnknownNameError

    with pytest.raises(UnknownNameError) as e:
        load_watermarker("nope")
    assert isinstance(e.value, VoiceguardError) and e.value.exit_code == 2
    assert str(e.value) == "unknown watermark engine 'nope'; known: audioseal, spread-spectrum"


def test_load_watermarker_options_none_means_the_default_and_unknown_options_are_named():
    from voiceguard.watermark import EngineOptionError, engine_options

    assert engine_options("spread-spectrum") == ["key", "snr_db", "threshold", "strength", "speed_search"]
    assert {"generator", "detector", "threshold", "strength", "snr_db"} <= set(engine_options("audioseal"))
    default = load_watermarker("spread-spectrum")
    same = load_watermarker("spread-spectrum", key=None, snr_db=None, threshold=None, strength=None)
    assert (same.key, same.snr_db, same.threshold, same.strength) == \
        (default.key, default.snr_db, default.threshold, default.strength) == \
        (0x5EED, 28.0, default.calibration["threshold"], 1.0)  # the calibrated threshold (issue #20)
    assert load_watermarker("spread-spectrum", key=7, threshold=0.8).key == 7
    with pytest.raises(EngineOptionError, match=r"spread-spectrum watermark engine takes no option 'generator' "
                                                 r"\(its options: key, snr_db, threshold, strength, speed_search\)"):
        load_watermarker("spread-spectrum", generator="x")
    with pytest.raises(ValueError, match="need must be one of"):
        load_watermarker("spread-spectrum", need="train")


def test_audioseal_need_loads_one_half(tiny_audioseal):
    g, d, _ = tiny_audioseal
    emb = load_watermarker("audioseal", need="embed", generator=str(g), detector=str(d))
    det = load_watermarker("audioseal", need="detect", generator=str(g), detector=str(d), threshold=0.7)
    assert emb.generator is not None and emb.detector is None
    assert det.generator is None and det.detector is not None and det.threshold == 0.7
    assert load_watermarker("audioseal", need="detect").model == "vg_detector_16bits_small"
    assert load_watermarker("audioseal", need="embed").model == "vg_wm_16bits_small"
    both = load_watermarker("audioseal")
    assert both.model == "vg_wm_16bits_small+vg_detector_16bits_small"
    assert both.threshold == float(both.calibration["threshold"])


def test_message_is_parsed_once_with_one_error_for_cli_and_api(tmp_path, dsp):
    """The same one-line message from the Python API and the CLI (parsed at the boundary, an int below)."""
    import soundfile as sf
    from helpers import run_cli

    from voiceguard.api import detect_file, embed_file
    from voiceguard.watermark import MessageError

    src = tmp_path / "a.wav"
    sf.write(src, speechlike(1.0), 16000)
    with pytest.raises(MessageError) as e:
        embed_file(src, tmp_path / "o.wav", "hello", engine=dsp)
    text = str(e.value)
    assert text == "message 'hello' is not a number (use e.g. 0xBEEF or 48879)" and isinstance(e.value, ValueError)
    assert not (tmp_path / "o.wav").exists()
    r = run_cli("watermark", "embed", str(src), str(tmp_path / "o.wav"), "--message", "hello",
                "--engine", "spread-spectrum")
    assert r.returncode == 2 and r.stderr.strip() == f"voiceguard: error: {text}"
    with pytest.raises(MessageError, match="does not fit in 16 bits"):
        detect_file(src, engine=dsp, expected="0x1FFFF")
    r = run_cli("watermark", "detect", str(src), "--expect", "0x1FFFF", "--engine", "spread-spectrum")
    assert r.returncode == 2 and r.stderr.strip() == \
        "voiceguard: error: message '0x1FFFF' does not fit in 16 bits (0 to 65535)"


def test_the_engine_receives_the_parsed_int(tmp_path, monkeypatch):
    import soundfile as sf

    from voiceguard.api import embed_file

    src = tmp_path / "a.wav"
    sf.write(src, speechlike(1.0), 16000)
    wm = load_watermarker("spread-spectrum")
    seen = []
    real = type(wm).embed
    monkeypatch.setattr(type(wm), "embed", lambda self, audio, sr, message=None, **kw:
                        seen.append(message) or real(self, audio, sr, message, **kw))
    row = embed_file(src, tmp_path / "o.wav", "0xBEEF", engine=wm)
    assert seen == [0xBEEF] and type(seen[0]) is int and row.message == "0xBEEF"


def test_api_embed_file_then_detect_file_round_trip(tmp_path):
    import soundfile as sf

    from voiceguard.api import DetectRow, EmbedRow, detect_file, embed_file
    from voiceguard.errors import OutputError, VoiceguardError

    src = tmp_path / "a.wav"
    sf.write(src, speechlike(2.0), 16000)
    row = embed_file(src, tmp_path / "o.wav", 0xBEEF, engine="spread-spectrum", key=11)
    assert isinstance(row, EmbedRow) and (row.status, row.message, row.sample_rate, row.channels) == \
        ("ok", "0xBEEF", 16000, 1)
    with pytest.raises(Exception):
        row.status = "x"  # frozen
    got = detect_file(tmp_path / "o.wav", engine="spread-spectrum", key=11, expected="0xBEEF")
    assert isinstance(got, DetectRow) and got.result.message == 0xBEEF and got.result.bits_matched == 16
    assert got.to_dict()["message"] == "0xBEEF"
    with pytest.raises(OutputError, match="already exists"):
        embed_file(src, tmp_path / "o.wav", 1, engine="spread-spectrum")
    with pytest.raises(VoiceguardError, match="no such file"):
        detect_file(tmp_path / "missing.wav", engine="spread-spectrum")
    with pytest.raises(TypeError, match="engine options go with an engine name"):
        detect_file(src, engine=load_watermarker("spread-spectrum"), key=3)


# --------------------------------------------------------------------------- the AudioSeal engine and loading
def test_audioseal_engine_streams_like_whole_file_and_keeps_shapes(tiny_audioseal):
    g, d, _ = tiny_audioseal
    wm = load_watermarker("audioseal", generator=str(g), detector=str(d))
    x = speechlike(2.7, 48000)
    whole = wm.embed(x, 48000, message=0xBEEF)
    st = wm.stream(48000, 0xBEEF)
    pieces = [st.push(x[i:i + 9999]) for i in range(0, len(x), 9999)] + [st.flush()]
    np.testing.assert_allclose(np.concatenate(pieces), whole, atol=1e-5)
    r = wm.detect(whole, 48000, expected=0xBEEF)
    assert len(r.bits) == 16 and r.presence.shape == (int(2.7 * 50),) and r.duration == pytest.approx(2.7)
    long = wm.detect(speechlike(23.0), 16000)  # several detector chunks
    assert long.presence.shape == (23 * 50,)


def test_our_checkpoints_load_in_audioseal_and_theirs_in_ours(tiny_audioseal, tmp_path):
    from audioseal import AudioSeal
    from omegaconf import OmegaConf

    g, d, cfg = tiny_audioseal
    theirs = AudioSeal.load_generator(str(g)).eval()
    ours = load_watermarker("audioseal", generator=str(g), detector=str(d)).generator
    x = torch.from_numpy(speechlike(1.0))[None, None]
    msg = torch.from_numpy(message_bits(0xBEEF))[None]
    with torch.no_grad(), eager():
        np.testing.assert_allclose(theirs.get_watermark(x, message=msg).numpy(),
                                   ours.get_watermark(x, message=msg).numpy(), atol=1e-6)
    assert type(AudioSeal.load_detector(str(d))).__name__ == "AudioSealDetector"
    # the official files keep their config as an omegaconf DictConfig: loaded weights-only all the same
    _, state = read_checkpoint(g, None)
    official = tmp_path / "official_style.pth"
    torch.save({"xp.cfg": OmegaConf.create(cfg), "model": state}, official)
    got_cfg, got_state = read_checkpoint(official, None)
    assert got_cfg == cfg and set(got_state) == set(state)


def test_checkpoint_safety(tiny_audioseal, tmp_path):
    g, _, _ = tiny_audioseal
    with pytest.raises(ModelCardError, match="sha256 mismatch"):
        read_checkpoint(g, "0" * 64)
    evil = tmp_path / "evil.pth"
    torch.save({"xp.cfg": {}, "model": {}, "obj": ModelCardError("x")}, evil)
    with pytest.raises(ModelCardError, match="not a loadable weights-only checkpoint"):
        read_checkpoint(evil, None)
    bare = tmp_path / "bare.pth"
    torch.save({"weights": torch.zeros(2)}, bare)
    with pytest.raises(ModelCardError, match="no 'model' state_dict"):
        read_checkpoint(bare, None)
    with pytest.raises(ModelCardError, match="unknown model"):
        load_watermarker("audioseal", generator="no_such_card")


def test_official_cards_say_how_to_get_the_weights_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("VOICEGUARD_CACHE", str(tmp_path))
    import torch.hub

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ModelCardError, match="could not download .*audioseal.*put it at"):
        load_watermarker("audioseal", need="embed", generator="audioseal_wm_16bits")


def test_official_card_loads_a_cached_checkpoint_of_the_official_shape(monkeypatch, tmp_path):
    """The official 16-bit detector card, fed a (random) checkpoint of the official shape from the cache."""
    from omegaconf import OmegaConf

    from voiceguard.cards import find_card
    from voiceguard.watermark.models import CARDS_DIR, audioseal_keys

    card = find_card("audioseal_detector_16bits", [CARDS_DIR])
    model = build_detector(card.config)
    cached = tmp_path / "audioseal_detector_16bits" / "detector_base.pth"
    cached.parent.mkdir()
    torch.save({"xp.cfg": OmegaConf.create(card.config), "model": audioseal_keys(model.state_dict())}, cached)
    monkeypatch.setenv("VOICEGUARD_CACHE", str(tmp_path))
    wm = load_watermarker("audioseal", need="detect", detector="audioseal_detector_16bits")
    assert sum(p.numel() for p in wm.detector.parameters()) == sum(p.numel() for p in model.parameters())
    assert wm.detect(speechlike(1.0), 16000).duration == pytest.approx(1.0)


# --------------------------------------------------------------------------- calibration
def test_clean_windows_are_seeded_and_varied():
    speech = [speechlike(3.0)]
    a = list(clean_windows(60, 3, speech))
    b = list(clean_windows(60, 3, speech))
    assert all(ka == kb and np.array_equal(xa, xb) for (ka, xa), (kb, xb) in zip(a, b))
    kinds = {k for k, _ in a}
    assert "speech" in kinds and len(kinds) >= 6 and kinds <= set(KINDS)
    assert all(x.shape == (16000,) and np.isfinite(x).all() and np.abs(x).max() <= 1 for _, x in a)


def test_threshold_for_fpr_allows_at_most_the_target_rate():
    scores = np.linspace(0, 1, 1000)
    t = threshold_for_fpr(scores, 0.01)
    assert (scores >= t).sum() == 10  # floor(0.01 * 1000): the lowest threshold that lets no more through
    rng_scores = np.random.default_rng(0).random(5000) * 0.4 + 0.55
    assert (rng_scores >= threshold_for_fpr(rng_scores, 0.003)).sum() == 15
    assert threshold_for_fpr(np.zeros(100), 0.01) == 0.5  # never below a majority of frames


def test_calibrate_fpr_on_the_dsp_engine():
    from voiceguard.watermark.calibrate import calibrate_fpr

    wm = load_watermarker("spread-spectrum")
    cal = calibrate_fpr(wm, n_windows=150, n_heldout=150, target_fpr=0.02, speech=[speechlike(4.0)], seed=1)
    assert wm.threshold == cal.threshold >= 0.5
    assert cal.fpr <= 0.05 and sum(v[0] for v in cal.by_kind.values()) == 150
    assert wm.detect(wm.embed(speechlike(2.0), 16000, 5), 16000).detected


def test_training_state_is_sha256_verified_and_weights_only(tmp_path):
    from voiceguard.cards import load_verified, save_verified

    path = tmp_path / "state.pt"
    save_verified({"step": 3, "w": torch.ones(2), "config": {"data": ("a",)}}, path)
    assert load_verified(path)["step"] == 3
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(ModelCardError, match="sha256 mismatch"):
        load_verified(path)
    (tmp_path / "state.pt.sha256").unlink()
    with pytest.raises(ModelCardError, match="refusing to load"):
        load_verified(path)
    # a run killed between the sidecar update and the file replacement still resumes from the old file
    save_verified({"step": 1}, path)
    old = path.read_bytes()
    save_verified({"step": 2}, path)
    side = tmp_path / "state.pt.sha256"
    assert len(side.read_text().split()) == 1  # settled: only the new digest
    import hashlib

    side.write_text(side.read_text().split()[0] + "\n" + hashlib.sha256(old).hexdigest() + "\n")
    path.write_bytes(old)
    assert load_verified(path)["step"] == 1
    save_verified({"obj": ModelCardError("x")}, path)  # a pickled object, even with a valid sidecar
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        load_verified(path)


def test_spread_spectrum_detects_on_clips_shorter_than_its_fft():
    wm = load_watermarker("spread-spectrum")
    for n in (1, 100, 511):
        r = wm.detect(np.full(n, 0.1, np.float32), 16000)
        assert not r.detected and r.presence.size >= 1
