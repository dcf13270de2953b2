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
        load_watermarker("audioseal", generator="audioseal_wm_16bits", detector=None)


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
    wm = load_watermarker("audioseal", generator=None, detector="audioseal_detector_16bits")
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
    from voiceguard.watermark import load_watermarker

    wm = load_watermarker("spread-spectrum")
    for n in (1, 100, 511):
        r = wm.detect(np.full(n, 0.1, np.float32), 16000)
        assert not r.detected and r.presence.size >= 1
