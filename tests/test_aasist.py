"""AASIST: parameter counts, shapes, strict loading of the published checkpoints, logits against the
stored bench results and against the reference implementation's logits on silence-padded inputs
(tests/data/aasist_reference_logits.json), and the eval-mode fused path against the plain (training) path."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from helpers import REPO, SHARED
from voiceguard.detect.aasist import AASIST, AASIST_L, Aasist, AasistConfig

WEIGHTS = SHARED / "weights"
CHECKPOINTS = {"AASIST": (AASIST, WEIGHTS / "aasist" / "AASIST.pth"),
               "AASIST-L": (AASIST_L, WEIGHTS / "aasist" / "AASIST-L.pth"),
               "ASVspoof5": (AASIST, WEIGHTS / "asvspoof5-aasist" / "best.pth")}
RESULTS = REPO / "bench" / "results" / "aasist.json"
# the reference's logits on bench_aasist.parity_inputs(), written by `python bench/bench_aasist.py
# --reference-dir CHECKOUT_OF_clovaai/aasist --golden tests/data/aasist_reference_logits.json`
GOLDEN = REPO / "tests" / "data" / "aasist_reference_logits.json"
CARDS = {"AASIST": "aasist-la19", "AASIST-L": "aasist-l-la19"}


def checkpoint(name: str) -> dict:
    path = CHECKPOINTS[name][1]
    if not path.is_file():
        pytest.skip(f"{path} not found (../shared is absent)")
    return torch.load(path, map_location="cpu", weights_only=True)


def bench_module():
    spec = importlib.util.spec_from_file_location("bench_aasist", REPO / "bench" / "bench_aasist.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("config, count", [(AASIST, 297_866), (AASIST_L, 85_306)])
def test_parameter_counts(config, count):
    assert sum(p.numel() for p in Aasist(config).parameters()) == count


def test_config_normalises_lists_and_is_hashable():
    cfg = AasistConfig(filts=[70, [1, 32], [32, 32], [32, 24], [24, 24]], gat_dims=[24, 32],
                       pool_ratios=[0.4, 0.5, 0.7, 0.5], temperatures=[2, 2, 100, 100])
    assert cfg == AASIST_L and hash(cfg) == hash(AASIST_L)


@pytest.mark.parametrize("shape", [(2, 64600), (1, 16000)])
def test_forward_shapes(shape):
    torch.manual_seed(0)
    model = Aasist(AASIST_L).eval()
    assert model.input_samples == 64600
    with torch.inference_mode():
        out = model(0.1 * torch.randn(*shape))
    assert out.shape == (shape[0], 2) and torch.isfinite(out).all()


def test_training_step_runs():
    torch.manual_seed(0)
    model = Aasist(AASIST_L).train()
    loss = torch.nn.functional.cross_entropy(model(0.1 * torch.randn(2, 16000)), torch.tensor([0, 1]))
    loss.backward()
    assert torch.isfinite(loss) and model.encoder[0][0].conv2.weight.grad is not None


@pytest.mark.parametrize("name", list(CHECKPOINTS))
def test_strict_load_of_published_checkpoints(name):
    sd = checkpoint(name)
    model = Aasist(CHECKPOINTS[name][0])
    model.load_state_dict(sd, strict=True)
    assert set(model.state_dict()) == set(sd)


@pytest.mark.parametrize("name", ["AASIST", "AASIST-L"])
def test_logits_match_stored_bench_results(name):
    sd = checkpoint(name)
    if not RESULTS.is_file():
        pytest.skip(f"{RESULTS} missing: run bench/bench_aasist.py")
    stored = np.array(json.loads(RESULTS.read_text())["models"][name]["logits"])
    rows = [1, 4, 6]  # noise, a harmonic tone, the chirp (keeps the test fast)
    x = torch.from_numpy(bench_module().fixed_inputs()[rows])
    model = Aasist(CHECKPOINTS[name][0])
    model.load_state_dict(sd)
    with torch.inference_mode():
        ours = model.eval()(x).numpy()
    np.testing.assert_allclose(ours, stored[rows], rtol=0, atol=1e-4)


def parity_inputs() -> tuple[list[str], np.ndarray]:
    """The golden file's inputs (bench_aasist.parity_inputs: silence, padded and plain speech), as ``[k, n]``."""
    bench = bench_module()
    if not (SHARED / bench.PARITY_SPEECH).is_file():
        pytest.skip(f"{SHARED / bench.PARITY_SPEECH} not found (../shared is absent)")
    inputs = bench.parity_inputs(SHARED)
    return list(inputs), np.stack(list(inputs.values()))


@pytest.mark.parametrize("name", ["AASIST", "AASIST-L"])
def test_logits_match_reference_on_silence_padded_inputs(name):
    """Every raw logit within 1e-4 of the reference's (recorded in GOLDEN) on digital silence, speech
    padded with silence, repeat-padded clips and plain speech, with the checkpoint loaded through its
    model card as `voiceguard scan` does; the detector's score is the logit difference of that input,
    nothing added before the network (no dither, no normalisation)."""
    from voiceguard.detect.models import load_model

    path = CHECKPOINTS[name][1]
    if not path.is_file():
        pytest.skip(f"{path} not found (../shared is absent)")
    golden = json.loads(GOLDEN.read_text())
    names, x = parity_inputs()
    assert names == golden["inputs"]
    expected = np.array(golden["models"][name]["logits"])
    detector = load_model(CARDS[name], path).detector
    with torch.inference_mode():
        ours = detector.module(torch.from_numpy(x)).numpy()
    for row, (what, got, want) in enumerate(zip(names, ours, expected)):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4, err_msg=f"input {row}: {what}")
    silent = [names.index(k) for k in ("zeros", "speech_1s+zeros", "speech_1s+zeros_4.0s_clip_repeat_padded")]
    np.testing.assert_allclose(detector.score_batch(x[silent]), expected[silent, 1] - expected[silent, 0],
                               rtol=0, atol=2e-4)


def test_eval_fused_path_follows_loaded_weights():
    """The eval path folds BatchNorm from the current parameters: loading new weights changes the scores
    to exactly those of a fresh model, and they equal the plain path with running statistics."""
    torch.manual_seed(0)
    x = 0.1 * torch.randn(2, 16000)
    a, b = Aasist(AASIST_L), Aasist(AASIST_L)
    with torch.no_grad():
        for module in b.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    model = Aasist(AASIST_L).eval()
    with torch.inference_mode():
        model.load_state_dict(a.state_dict())
        first = model(x)
        model.load_state_dict(b.state_dict())
        second = model(x)
        fresh = b.eval()(x)
        for block in b.encoder:  # the training-mode block computation, with BatchNorm in eval mode
            block[0].train()
            block[0].bn2.eval()
        unfused = b(x)
    assert (first - second).abs().max() > 1e-3
    torch.testing.assert_close(second, fresh, rtol=0, atol=0)
    torch.testing.assert_close(second, unfused, rtol=0, atol=1e-4)
