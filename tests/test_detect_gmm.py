"""Features (LFCC/CQCC), the GMM baselines and model cards (sha256 + weights-only loading)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from voiceguard.cards import find_card, load_card, load_state_dict, resolve_checkpoint, sha256_file, update_card
from voiceguard.detect.base import DETECTORS
from voiceguard.detect.features import cqcc, deltas, lfcc, linear_filterbank
from voiceguard.detect.gmm import GmmDetector
from voiceguard.errors import ModelCardError
from voiceguard.metrics.cm import eer
from voiceguard.audio import SAMPLE_RATE



def voiced(f0, seconds=1.0, seed=0, buzz=True):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    x = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 20)) if buzz else np.zeros(t.size)
    return (0.1 * x + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def test_lfcc_shapes_and_filterbank():
    fb = linear_filterbank(20, 512)
    assert fb.shape == (20, 257) and np.allclose(fb.max(axis=1), 1.0, atol=0.1)
    f = lfcc(voiced(120), SAMPLE_RATE)
    assert f.shape == (99, 60) and np.isfinite(f).all()
    assert np.isfinite(lfcc(np.zeros(SAMPLE_RATE), SAMPLE_RATE)).all()  # digital silence: dither keeps logs finite
    ramp = np.arange(10, dtype=np.float32)[:, None]
    assert np.allclose(deltas(ramp)[3:-3], 1.0)  # the regression slope of a unit ramp is 1


def test_cqcc_shape():
    f = cqcc(voiced(200), SAMPLE_RATE)
    assert f.shape[1] == 60 and f.shape[0] > 100 and np.isfinite(f).all()


@pytest.mark.parametrize("name", ["lfcc-gmm", "cqcc-gmm"])
def test_gmm_separates_two_sources_and_round_trips(name, tmp_path):
    det = DETECTORS[name](n_components=4, max_iter=30)
    bona = [voiced(110 + 7 * i, seed=i) for i in range(6)]
    spoof = [voiced(110 + 7 * i, seed=50 + i, buzz=False) + 0.05 * np.sign(voiced(110 + 7 * i, seed=i))
             for i in range(6)]
    det.fit(bona, spoof)
    test_b = [voiced(125 + 9 * i, seed=100 + i) for i in range(5)]
    test_s = [voiced(125 + 9 * i, seed=200 + i, buzz=False) + 0.05 * np.sign(voiced(125 + 9 * i, seed=i))
              for i in range(5)]
    sb, ss = np.array([det.score(a) for a in test_b]), np.array([det.score(a) for a in test_s])
    assert eer(sb, ss)[0] == 0.0
    path = tmp_path / "gmm.pt"
    torch.save(det.state_dict(), path)
    again = GmmDetector(det.feature).load_state_dict(load_state_dict(path, sha256_file(path)))
    assert again.score(test_b[0]) == pytest.approx(det.score(test_b[0]), rel=1e-9)
    with pytest.raises(ModelCardError, match="not a GMM checkpoint"):
        GmmDetector().load_state_dict({"x": torch.zeros(1)})


def test_cards_checksums_and_resolution(tmp_path, monkeypatch):
    weights = tmp_path / "tiny.pt"
    torch.save({"w": torch.arange(3.0)}, weights)
    digest = sha256_file(weights)
    card = tmp_path / "tiny.yaml"
    card.write_text(f"name: tiny\nkind: detector\narchitecture: test\ncheckpoint: tiny.pt\nsha256: {digest}\n"
                    "metrics: {eer: 0.1}\ntraining: {command: none}\n")
    c = find_card("tiny", [tmp_path])
    assert c.metrics == {"eer": 0.1} and resolve_checkpoint(c) == weights
    assert torch.equal(load_state_dict(resolve_checkpoint(c), c.sha256)["w"], torch.arange(3.0))
    with pytest.raises(ModelCardError, match="sha256 mismatch"):
        load_state_dict(weights, "0" * 64)
    with pytest.raises(ModelCardError, match="unknown model 'other'; known: tiny"):
        find_card("other", [tmp_path])
    assert update_card(card, metrics={"eer": 0.2}, version=2) == card
    again = load_card(card)
    assert again.metrics == {"eer": 0.2} and again.extra == {"version": 2} and again.sha256 == digest
    assert card.read_text().startswith("name: tiny\nkind: detector\n")  # field order kept
    with pytest.raises(ModelCardError, match="no such model card"):
        update_card(tmp_path / "none.yaml", metrics={})
    # not shipped, not cached, download impossible: a clear message naming where to put it
    monkeypatch.setenv("VOICEGUARD_CACHE", str(tmp_path / "cache"))
    remote = tmp_path / "remote.yaml"
    remote.write_text("name: remote\nkind: detector\narchitecture: test\ncheckpoint: r.pt\n"
                      "url: http://127.0.0.1:9/r.pt\n")
    with pytest.raises(ModelCardError, match=r"could not download http://127\.0\.0\.1:9/r\.pt .*put it at"):
        resolve_checkpoint(load_card(remote))
    (tmp_path / "cache" / "remote").mkdir(parents=True, exist_ok=True)
    torch.save({"w": torch.ones(1)}, tmp_path / "cache" / "remote" / "r.pt")
    assert resolve_checkpoint(load_card(remote)) == tmp_path / "cache" / "remote" / "r.pt"


def test_pickled_objects_are_refused(tmp_path):
    import argparse

    p = tmp_path / "evil.pt"
    torch.save({"obj": argparse.Namespace(cmd="rm -rf /")}, p)  # any pickled object, not just tensors
    with pytest.raises(ModelCardError, match="not a loadable weights-only checkpoint"):
        load_state_dict(p)
