"""LFCC front end and the LFCC-LCNN network."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from voiceguard.detect.features import lfcc, lfcc_module
from voiceguard.detect.lcnn import LCNN, LCNN_SMALL, Lcnn, LcnnConfig
from voiceguard.audio import SAMPLE_RATE



def test_lfcc_shape_and_tone_energy_lands_in_the_right_filter():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    x = (0.5 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)
    f = lfcc(x)
    assert f.shape == (99, 60) and np.isfinite(f).all()
    static = lfcc_module(use_deltas=False, n_ceps=20)
    # invert the orthonormal DCT: log filter energies; the 3 kHz tone peaks in filter 3000/(8000/21) ~ 7.9
    with torch.inference_mode():
        ceps = static(torch.from_numpy(x)[None])[0]
    log_e = ceps @ static.dct.T
    assert int(log_e.mean(0).argmax()) in (6, 7)


def test_lfcc_level_norm_removes_recording_level_only():
    x = np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32) * 0.1
    m = lfcc_module(level_norm=True)
    with torch.inference_mode():
        a, b = m(torch.from_numpy(x)[None]), m(torch.from_numpy(4 * x)[None])
    assert torch.allclose(a, b, atol=1e-4)
    plain = lfcc_module(level_norm=False)
    with torch.inference_mode():
        assert not torch.allclose(plain(torch.from_numpy(x)[None]), plain(torch.from_numpy(4 * x)[None]), atol=1e-2)


@pytest.mark.parametrize("cfg,params", [(LCNN, 269_826), (LCNN_SMALL, 68_482)])
def test_lcnn_shapes_and_size(cfg, params):
    torch.manual_seed(0)
    m = Lcnn(cfg).eval()
    assert sum(p.numel() for p in m.parameters()) == params
    with torch.inference_mode():
        for n in (16000, cfg.input_samples):
            y = m(torch.randn(2, n) * 0.1)
            assert y.shape == (2, 2) and torch.isfinite(y).all()


def test_lcnn_config_validates_and_roundtrips_state():
    with pytest.raises(ValueError, match="5 values"):
        LcnnConfig(widths=(8, 8))
    torch.manual_seed(0)
    a, b = Lcnn(LCNN_SMALL).eval(), Lcnn(LCNN_SMALL).eval()
    x = torch.randn(1, 16000) * 0.1
    with torch.inference_mode():
        assert not torch.allclose(a(x), b(x))
        b.load_state_dict(a.state_dict(), strict=True)
        assert torch.equal(a(x), b(x))


def test_lcnn_learns_a_toy_task():
    """Noise vs. low-pass tones: 40 steps of the small LCNN must separate them (it can fail)."""
    rng = np.random.default_rng(0)
    t = np.arange(16000) / SAMPLE_RATE

    def sample(label: int) -> np.ndarray:
        if label:
            f = rng.uniform(100, 400)
            return 0.3 * np.sin(2 * np.pi * f * t) + 0.01 * rng.standard_normal(t.size)
        return 0.1 * rng.standard_normal(t.size)

    labels = np.array([0, 1] * 8)
    x = torch.tensor(np.stack([sample(k) for k in labels]), dtype=torch.float32)
    y = torch.tensor(labels)
    torch.manual_seed(0)
    m = Lcnn(LcnnConfig(input_samples=16000, widths=(8, 8, 8, 8, 8), dropout=0.0))
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    for _ in range(40):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(m(x), y)
        loss.backward()
        opt.step()
    m.eval()
    with torch.inference_mode():
        assert (m(x).argmax(1) == y).float().mean() == 1.0
