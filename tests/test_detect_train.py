"""Training on an ASVspoof-style protocol: crops, augmentation, resume, card, loading the result."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from helpers import run_cli, write_wav
from voiceguard.cards import sha256_file
from voiceguard.detect.models import load_model
from voiceguard.detect.train import Augmenter, TrainConfig, TrainData, TrainError, _TrainSet, load_trials, \
    parse_augment, train_detector
from voiceguard.audio import SAMPLE_RATE

TINY = {"input_samples": 16000, "widths": [4, 4, 4, 4, 4], "dropout": 0.0}


def toy_corpus(root, n: int = 12):
    """Bona fide = harmonic tones, spoof = noise bursts; 1.5-3 s files; train and dev protocols."""
    rng = np.random.default_rng(0)
    (root / "flac").mkdir(parents=True)
    for split in ("train", "dev"):
        lines = []
        for i in range(n):
            bona = i % 2 == 0
            t = np.arange(int(rng.uniform(1.5, 3.0) * SAMPLE_RATE)) / SAMPLE_RATE
            if bona:
                x = 0.3 * np.sin(2 * np.pi * rng.uniform(120, 300) * t) + 0.01 * rng.standard_normal(t.size)
            else:
                x = 0.1 * rng.standard_normal(t.size)
            utt = f"{split}_{i:03d}"
            write_wav(root / "flac" / f"{utt}.flac", x[None].astype(np.float32))
            lines.append(f"S{i % 3} {utt} - {'-' if bona else 'A01'} {'bonafide' if bona else 'spoof'}")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_crops_are_one_dimensional_windows_and_seeded(tmp_path):
    c = toy_corpus(tmp_path)
    trials = load_trials(c / "train.txt", c / "flac")
    ds = _TrainSet(trials, c / "flac", ".flac", 8000, Augmenter(parse_augment(["rawboost"]), 1.0), seed=3)
    a, label = ds[0]
    assert a.shape == (8000,) and label == 1 and a.abs().max() > 0
    assert np.array_equal(a.numpy(), ds[0][0].numpy())  # same (seed, epoch, index) -> same crop + augmentation
    ds.epoch = 1
    assert not np.array_equal(a.numpy(), ds[0][0].numpy())


def test_augment_specs():
    assert parse_augment(["rawboost:algo=3", "white_noise:snr_db=20"]) == [
        [("rawboost", {"algo": 3})], [("white_noise", {"snr_db": 20})]]
    codec = parse_augment(["codec"])
    assert len(codec) == 1 and len(codec[0]) >= 3  # mu-law / A-law / resampling need no optional encoder
    aug = Augmenter(parse_augment(["polarity", "codec"]), 1.0)
    x = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    flipped = sum(np.array_equal(aug(x, s), -x) for s in range(40))
    assert 10 <= flipped <= 30  # each group is drawn half of the time, however many codecs the group has
    with pytest.raises(TrainError, match="unknown augmentation 'nope'"):
        parse_augment(["nope"])
    with pytest.raises(TrainError, match="key=value"):
        parse_augment(["rawboost:3"])


def test_train_resume_card_and_load(tmp_path):
    c = toy_corpus(tmp_path / "c")
    cfg = TrainConfig(model="lcnn", model_config=TINY, epochs=2, batch_size=4, lr=3e-3, workers=0,
                      augment=("rawboost",), patience=5)
    out = tmp_path / "run"
    data = TrainData(c / "train.txt", c / "flac", dev_protocol=c / "dev.txt")
    r = train_detector(cfg, data, out, progress=False, name="toy")
    assert len(r.history) == 2 and (out / "model.pt").is_file() and (out / "last.pt").is_file()
    card = yaml.safe_load((out / "card.yaml").read_text())
    assert card["sha256"] == sha256_file(out / "model.pt") and card["architecture"] == "lcnn"
    assert card["config"]["widths"] == [4, 4, 4, 4, 4] and card["input_samples"] == 16000
    assert card["metrics"]["dev_eer"] == pytest.approx(min(h.dev_eer for h in r.history))
    assert card["calibration"]["scale"] > 0

    more = TrainConfig(**{**cfg.__dict__, "lr": 1e-2})
    with pytest.raises(TrainError, match="different training config"):
        train_detector(more, data, out, resume=True, progress=False)
    r3 = train_detector(cfg.__class__(**{**cfg.__dict__}), data, tmp_path / "run3", progress=False, name="toy")
    assert [h.loss for h in r3.history] == [h.loss for h in r.history]  # same seed, same run
    assert yaml.safe_load((tmp_path / "run3" / "card.yaml").read_text())["sha256"] == card["sha256"]  # same bytes

    loaded = load_model(str(out / "card.yaml"))
    assert loaded.name == "toy" and loaded.calibrated
    s = loaded.detector.score_batch(np.zeros((2, 16000), dtype=np.float32))
    assert s.shape == (2,) and np.isfinite(s).all()


def test_train_resume_continues(tmp_path):
    c = toy_corpus(tmp_path / "c", n=8)
    base = dict(model="lcnn", model_config=TINY, batch_size=4, workers=0, patience=5, lr=3e-3)
    data = TrainData(c / "train.txt", c / "flac", dev_protocol=c / "dev.txt")
    one = train_detector(TrainConfig(epochs=1, **base), data, tmp_path / "a", progress=False)
    resumed = train_detector(TrainConfig(epochs=2, **base), data, tmp_path / "a", resume=True, progress=False)
    straight = train_detector(TrainConfig(epochs=2, **base), data, tmp_path / "b", progress=False)
    assert [h.epoch for h in resumed.history] == [0, 1] and resumed.history[0] == one.history[0]
    assert resumed.history[1].loss == pytest.approx(straight.history[1].loss, rel=1e-4)


def test_train_cli_gmm_and_errors(tmp_path):
    c = toy_corpus(tmp_path / "c")
    out = tmp_path / "gmm"
    r = run_cli("detect", "train", "--model", "lfcc-gmm", "--protocol", str(c / "train.txt"), "--audio-dir",
                str(c / "flac"), "--dev-protocol", str(c / "dev.txt"), "--out", str(out), "--config",
                "n_components=2", "--seed", "0", "--format", "json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["best_dev_eer"] == 0.0 and res["card"] == str(out / "card.yaml") and res["history"][0]["loss"] is None
    card = yaml.safe_load((out / "card.yaml").read_text())
    assert card["metrics"]["dev_eer"] == 0.0 and card["config"]["n_components"] == 2
    scores = tmp_path / "scores.txt"
    r = run_cli("detect", "score", "--model", str(out / "card.yaml"), "--protocol", str(c / "dev.txt"),
                "--audio-dir", str(c / "flac"), "--out", str(scores), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"model": "lfcc-gmm", "out": str(scores), "n_trials": 12, "n_scored": 12,
                                    "errors": []}
    assert "scored 12 of 12 trials with lfcc-gmm" in r.stderr
    r = run_cli("eval", "eer", "--scores", str(scores), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["eer"] == 0.0

    bad = run_cli("detect", "train", "--model", "lcnn", "--protocol", str(c / "train.txt"), "--audio-dir",
                  str(tmp_path / "nowhere"))
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "missing" in bad.stderr
    bad = run_cli("detect", "train", "--model", "nonet", "--protocol", str(c / "train.txt"), "--audio-dir",
                  str(c / "flac"), "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "unknown detector 'nonet'; known: aasist" in bad.stderr


def test_train_refuses_bad_starts(tmp_path):
    c = toy_corpus(tmp_path / "c", n=6)
    cfg = TrainConfig(model="lcnn", model_config=TINY, epochs=1, batch_size=4, workers=0)
    out = tmp_path / "run"
    with pytest.raises(TrainError, match="nothing to resume"):
        train_detector(cfg, TrainData(c / "train.txt", c / "flac"), out, resume=True, progress=False)
    train_detector(cfg, TrainData(c / "train.txt", c / "flac"), out, progress=False)
    before = (out / "model.pt").read_bytes()
    with pytest.raises(TrainError, match="already holds a trained model"):
        train_detector(cfg, TrainData(c / "train.txt", c / "flac"), out, progress=False)
    assert (out / "model.pt").read_bytes() == before  # nothing was touched
    (out / "last.pt").write_bytes(b"garbage")
    with pytest.raises(TrainError, match="cannot resume from this file"):
        train_detector(cfg, TrainData(c / "train.txt", c / "flac"), out, resume=True, progress=False)
    with pytest.raises(TrainError, match="needs both bona fide and spoof"):
        train_detector(TrainConfig(**{**cfg.__dict__, "max_train": 1}), TrainData(c / "train.txt", c / "flac"),
                       tmp_path / "one", progress=False)
    (c / "flac" / "train_003.flac").write_bytes(b"not audio")
    with pytest.raises(TrainError, match=r"1 of 6 audio files cannot be used: .*train_003.flac \(not audio"):
        train_detector(cfg, TrainData(c / "train.txt", c / "flac"), tmp_path / "bad", progress=False)
