"""SpecNet: STFT magnitude + phase statistics and an MLP (the shipped default model's architecture)."""
from __future__ import annotations

import numpy as np
import torch

from voiceguard.detect.features import spectral_statistics_module
from voiceguard.detect.specnet import SpecNet, SpecNetConfig
from voiceguard.audio import SAMPLE_RATE



def test_shapes_size_and_any_length():
    torch.manual_seed(0)
    m = SpecNet().eval()
    dims = 8 * (129 + 257 + 513)  # 8 statistics per bin of the 256-, 512- and 1024-point STFTs
    assert sum(p.numel() for p in m.parameters()) == dims * 64 + 64 + 64 * 2 + 2 and m.input_samples == 64000
    with torch.inference_mode():
        for n in (4000, 16000, 64000):
            y = m(torch.randn(3, n) * 0.1)
            assert y.shape == (3, 2) and torch.isfinite(y).all()


def test_recording_level_cannot_change_the_score():
    torch.manual_seed(0)
    m = SpecNet().eval()
    x = torch.randn(2, 32000) * 0.05
    with torch.inference_mode():
        assert torch.allclose(m(x), m(8 * x), atol=1e-3)


def test_phase_statistics_tell_a_steady_tone_from_noise():
    """A stationary sine has a regular phase advance (unit mean phasor at its bin); noise does not."""
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    f0_bin = 64  # 64 * 16000 / 512 = 2000 Hz: the tone sits on a bin centre
    tone = torch.tensor(0.5 * np.sin(2 * np.pi * 2000 * t), dtype=torch.float32)[None]
    noise = torch.tensor(np.random.default_rng(0).standard_normal(SAMPLE_RATE) * 0.1, dtype=torch.float32)[None]
    stats = spectral_statistics_module()
    with torch.inference_mode():
        ft, fn = stats(tone)[0].view(8, 257), stats(noise)[0].view(8, 257)
    assert ft[4, f0_bin] > 0.99 and fn[4, f0_bin] < 0.5  # instantaneous-frequency regularity
    assert ft[0].argmax() == f0_bin  # the mean log power peaks at the tone


def test_learns_noise_from_tones():
    rng = np.random.default_rng(0)
    t = np.arange(8000) / SAMPLE_RATE
    x = [0.3 * np.sin(2 * np.pi * rng.uniform(200, 3000) * t) if k else 0.1 * rng.standard_normal(t.size)
         for k in [0, 1] * 8]
    x, y = torch.tensor(np.stack(x), dtype=torch.float32), torch.tensor([0, 1] * 8)
    torch.manual_seed(0)
    m = SpecNet(SpecNetConfig(input_samples=8000, n_ffts=[512], hidden=8, dropout=0.0))  # a YAML list works
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for _ in range(20):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
    with torch.inference_mode():
        assert (m.eval()(x).argmax(1) == y).all()
