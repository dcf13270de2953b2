"""Model cards of the detection package: the shipped default, loading rules and their errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from voiceguard.cards import sha256_file
from voiceguard.detect.models import CARDS_DIR, DEFAULT_MODEL, list_cards, load_model
from voiceguard.errors import ModelCardError


def test_default_model_ships_verified_and_small():
    card = next(c for c in list_cards() if c.name == DEFAULT_MODEL)
    weights = CARDS_DIR / card.checkpoint
    assert weights.is_file() and weights.stat().st_size <= 5 * 2 ** 20
    assert sha256_file(weights) == card.sha256
    loaded = load_model()
    assert loaded.name == DEFAULT_MODEL and loaded.calibrated and loaded.calibration.eer_threshold is not None
    for key in ("command", "seed", "corpus_command"):
        assert card.training[key] is not None
    assert card.metrics["dev_eer"] < 0.5
    cal = loaded.calibration  # the shipped operating point and the partial-spoof window rule (issue #19)
    assert cal.operating_point is not None and cal.operating_target == 0.01
    assert cal.window["min_flagged_s"] >= loaded.detector.input_samples / 16000
    x = np.random.default_rng(0).standard_normal((2, loaded.detector.input_samples)).astype(np.float32) * 0.1
    assert np.isfinite(loaded.detector.score_batch(x)).all()


def test_loading_errors_are_specific(tmp_path):
    with pytest.raises(ModelCardError, match="unknown model 'nope'.*architectures"):
        load_model("nope")
    with pytest.raises(ModelCardError, match="is an architecture, not a model card"):
        load_model("specnet")
    card = yaml.safe_load((CARDS_DIR / "vg-specnet.yaml").read_text())
    (tmp_path / "w.pt").write_bytes((CARDS_DIR / card["checkpoint"]).read_bytes())
    unsigned = {**card, "checkpoint": "w.pt", "sha256": None}
    (tmp_path / "unsigned.yaml").write_text(yaml.safe_dump(unsigned))
    with pytest.raises(ModelCardError, match="no sha256"):
        load_model(str(tmp_path / "unsigned.yaml"))
    wrong = {**card, "checkpoint": "w.pt", "sha256": "0" * 64}
    (tmp_path / "wrong.yaml").write_text(yaml.safe_dump(wrong))
    with pytest.raises(ModelCardError, match="sha256"):
        load_model(str(tmp_path / "wrong.yaml"))
    torch.save({"not": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(ModelCardError, match="does not fit architecture 'specnet'"):
        load_model("specnet", tmp_path / "foreign.pt")
    custom = load_model("specnet", tmp_path / "w.pt")  # own weights: loads, uncalibrated
    assert not custom.calibrated and custom.notes


def test_one_detector_registry_and_protocol():
    from voiceguard.detect import DETECTORS, Detector, FittedDetector, NetworkDetector
    from voiceguard.detect.models import build_detector
    from voiceguard.registry import UnknownNameError

    entry = DETECTORS["aasist-l"]
    assert (entry.name, entry.architecture, entry.preset, entry.training) == ("aasist-l", "aasist", "light", "epochs")
    assert sorted(n for n in DETECTORS if DETECTORS[n].training == "fit") == ["cqcc-gmm", "lfcc-gmm"]
    for lookup in (lambda: DETECTORS["nonet"], lambda: build_detector("nonet")):
        with pytest.raises(UnknownNameError, match=r"^unknown detector 'nonet'; known: aasist, aasist-l, cqcc-gmm"):
            lookup()
    gmm = DETECTORS["lfcc-gmm"](n_components=2)
    assert isinstance(gmm, FittedDetector) and not isinstance(gmm, NetworkDetector) and gmm.to("cpu") is gmm
    net = DETECTORS["specnet"]()
    assert isinstance(net, NetworkDetector) and isinstance(net, Detector) and net.name == "specnet"
    assert net.config_dict()["n_ffts"] == [256, 512, 1024] and net.input_samples == 64000
    with pytest.raises(ModelCardError, match="unknown config keys"):
        DETECTORS["lcnn"](nope=1)
    with pytest.raises(ModelCardError, match="bad config for 'lfcc-gmm'"):
        build_detector("lfcc-gmm", {"nope": 1})


def test_listing_detectors_imports_neither_torch_nor_sklearn():
    import subprocess
    import sys

    code = ("import sys, voiceguard.detect as d; print(len(d.DETECTORS), "
            "sorted(m for m in ('torch', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["11", "[]"]
