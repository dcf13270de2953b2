"""RawNet2: config presets, shapes, checkpoint round-trip, the fixed mel sinc front end, and that it can learn."""
from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from voiceguard.detect.rawnet2 import (RAWNET2, RAWNET2_SMALL, RawNet2, RawNet2Config, mel_band_edges,
                                       mel_sinc_filters)
from voiceguard.audio import SAMPLE_RATE



def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def small() -> RawNet2:
    torch.manual_seed(0)
    return RawNet2(RAWNET2_SMALL).eval()


def test_config_accepts_lists_and_rejects_nonsense():
    cfg = RawNet2Config(res_channels=[20, 20, 64])
    assert cfg.res_channels == (20, 20, 64)
    assert RawNet2Config(**asdict(RAWNET2_SMALL)) == RAWNET2_SMALL
    assert RAWNET2.sinc_filters == 20 and RAWNET2.sinc_kernel == 1024 and RAWNET2.input_samples == 64600
    assert RAWNET2.res_channels == (20, 20, 128, 128, 128, 128) and RAWNET2.gru_layers == 3
    with pytest.raises(ValueError):
        RawNet2Config(res_channels=())
    with pytest.raises(ValueError):
        RawNet2Config(gru_hidden=0)


@pytest.mark.parametrize("shape", [(2, 64600), (1, 16000)])
def test_small_shapes_and_finite(small, shape):
    torch.manual_seed(1)
    with torch.inference_mode():
        out = small(0.1 * torch.randn(shape))
    assert out.shape == (shape[0], 2) and torch.isfinite(out).all()
    assert small.input_samples == 64600


def test_small_rejects_bad_input(small):
    with pytest.raises(ValueError):
        small(torch.zeros(1, 1, 16000))
    with pytest.raises(ValueError):
        small(torch.zeros(1, 1000))


def test_presets_param_counts():
    torch.manual_seed(0)
    assert 50_000 < n_params(RawNet2(RAWNET2_SMALL)) < 1_000_000
    full = RawNet2(RAWNET2).eval()
    assert 10_000_000 < n_params(full) < 30_000_000
    with torch.inference_mode():
        out = full(0.1 * torch.randn(1, 16000))
    assert out.shape == (1, 2) and torch.isfinite(out).all()


def test_filters_are_a_fixed_buffer(small):
    assert "front.filters" not in small.state_dict()
    assert not any("filters" in name for name, _ in small.named_parameters())
    assert torch.equal(small.front.filters, mel_sinc_filters(20, 251))
    assert small.front.filters.shape == (20, 1, 251)


def test_state_dict_round_trip(small):
    torch.manual_seed(123)
    other = RawNet2(RAWNET2_SMALL).eval()
    x = 0.1 * torch.randn(2, 16000)
    with torch.inference_mode():
        assert not torch.allclose(other(x), small(x))
        other.load_state_dict(small.state_dict(), strict=True)
        assert torch.equal(other(x), small(x))


def test_sinc_bands_are_mel_spaced():
    bands = mel_band_edges(20).numpy()
    low, high = bands[:, 0], bands[:, 1]
    centres = (low + high) / 2
    assert (low > 0).all() and (high < SAMPLE_RATE / 2).all() and (low < high).all()
    assert (np.diff(centres) > 0).all()
    np.testing.assert_allclose(low[1:], high[:-1])  # contiguous
    mel = 2595 * np.log10(1 + np.append(low, high[-1]) / 700)
    np.testing.assert_allclose(np.diff(mel), np.diff(mel)[0], rtol=1e-9)  # equal steps on the mel scale
    assert np.diff(high - low).min() > 0  # hence wider in Hz as frequency rises


@pytest.mark.parametrize("kernel", [1024, 251])
def test_sinc_filters_are_band_pass(kernel):
    h = mel_sinc_filters(20, kernel)[:, 0].double().numpy()
    n_fft = 16384
    mag = np.abs(np.fft.rfft(h, n_fft))
    freqs = np.fft.rfftfreq(n_fft, 1 / SAMPLE_RATE)
    bands = mel_band_edges(20).numpy()
    for (low, high), m in zip(bands, mag):
        centre = (low + high) / 2
        in_band = m[np.argmin(np.abs(freqs - centre))]
        assert 0.5 < in_band < 1.3  # about unit pass-band gain
        assert m[-1] < 0.1 * in_band  # nothing at Nyquist
        far = (freqs < low - 4 * SAMPLE_RATE / kernel) | (freqs > high + 4 * SAMPLE_RATE / kernel)
        assert m[far].max() < 0.05 * in_band  # stop bands away from the band
    # DC: only the lowest band (84-173 Hz) comes near 0 Hz, and the short kernel smears it
    assert (mag[:, 0] < (0.35 if kernel < 512 else 0.05)).all()


def _two_classes(n: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0: white noise; class 1: a low-frequency tone mix plus faint noise; both at the same RMS."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / SAMPLE_RATE
    x, y = [], []
    for i in range(n):
        if i % 2:
            sig = sum(np.sin(2 * np.pi * rng.uniform(100, 600) * t + rng.uniform(0, 2 * np.pi)) for _ in range(3))
            sig = sig + 0.05 * rng.standard_normal(length)
        else:
            sig = rng.standard_normal(length)
        x.append(0.1 * sig / np.sqrt(np.mean(sig ** 2)))
        y.append(i % 2)
    return torch.tensor(np.array(x), dtype=torch.float32), torch.tensor(y)


@pytest.fixture
def one_thread():
    """Tiny tensors train fastest on one thread, and a busy machine does not then stall the OpenMP team."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_small_overfits_two_classes(one_thread):
    torch.manual_seed(0)
    model = RawNet2(RAWNET2_SMALL).train()
    x, y = _two_classes(8, 8000, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    assert (logits.argmax(1) == y).all()  # training accuracy (batch statistics) of the last step
    # 30 steps leave BN running statistics far from the data's; re-estimate them, then eval mode must agree
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)):
        bn.reset_running_stats()
        bn.momentum = None
    with torch.no_grad():
        model(x)
    model.eval()
    held_x, held_y = _two_classes(8, 8000, seed=1)
    with torch.inference_mode():
        assert (model(x).argmax(1) == y).all() and (model(held_x).argmax(1) == held_y).all()


def test_registered_detectors_build_rawnet2():
    pytest.importorskip("voiceguard.detect.aasist")
    pytest.importorskip("voiceguard.detect.lcnn")
    from voiceguard.detect import DETECTORS
    from voiceguard.detect.neural import ARCHITECTURES, normalize_config

    entry = DETECTORS["rawnet2-small"]
    assert (entry.architecture, entry.preset, entry.training) == ("rawnet2", "small", "epochs")
    det = entry()
    assert isinstance(det.module, RawNet2) and det.config == RAWNET2_SMALL and det.input_samples == 64600
    assert det.name == "rawnet2-small" and det.training == "epochs"
    scores = det.score_batch(0.1 * np.random.default_rng(0).standard_normal((3, 64600)).astype(np.float32))
    assert scores.shape == (3,) and np.isfinite(scores).all()
    cfg = ARCHITECTURES["rawnet2"].config("small", **normalize_config(RAWNET2_SMALL))
    assert cfg == RAWNET2_SMALL
