"""RawNet2 anti-spoofing network (Tak et al., "End-to-end anti-spoofing with RawNet2", ICASSP 2021).

Raw 16 kHz waveform -> fixed mel-spaced sinc band-pass filterbank -> residual blocks with filter-wise
feature map scaling (FMS) -> GRU over time -> fully connected layers -> 2 logits (index 1 = bona fide).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from voiceguard.audio import SAMPLE_RATE

SLOPE = 0.3  # LeakyReLU negative slope


@dataclass(frozen=True)
class RawNet2Config:
    """RawNet2 hyper-parameters; ``res_channels`` lists the output channels of each residual block."""

    input_samples: int = 64600
    sinc_filters: int = 20
    sinc_kernel: int = 1024
    res_channels: tuple[int, ...] = (20, 20, 128, 128, 128, 128)
    gru_hidden: int = 1024
    gru_layers: int = 3
    fc_dim: int = 1024

    def __post_init__(self) -> None:
        object.__setattr__(self, "res_channels", tuple(int(c) for c in self.res_channels))
        if not self.res_channels or min(self.res_channels) < 1:
            raise ValueError(f"res_channels must be a non-empty list of positive ints, got {self.res_channels}")
        for name in ("input_samples", "sinc_filters", "sinc_kernel", "gru_hidden", "gru_layers", "fc_dim"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


RAWNET2 = RawNet2Config()
RAWNET2_SMALL = RawNet2Config(sinc_kernel=251, res_channels=(20, 20, 64, 64, 64, 64), gru_hidden=128,
                              gru_layers=1, fc_dim=128)


def _hz_to_mel(f: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def _mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_band_edges(n_filters: int, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """``[n_filters, 2]`` (low, high) cut-offs in Hz of contiguous mel-spaced bands strictly inside (0, sr/2)."""
    mels = torch.linspace(0.0, float(_hz_to_mel(torch.tensor(sample_rate / 2.0))), n_filters + 3,
                          dtype=torch.float64)
    edges = _mel_to_hz(mels[1:-1])
    return torch.stack([edges[:-1], edges[1:]], dim=1)


def mel_sinc_filters(n_filters: int, kernel: int, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """``[n_filters, 1, kernel]`` Hamming-windowed ideal band-pass (difference of two sinc low-passes)."""
    bands = mel_band_edges(n_filters, sample_rate) / sample_rate  # normalised cut-offs, cycles/sample
    t = torch.arange(kernel, dtype=torch.float64) - (kernel - 1) / 2.0
    low, high = bands[:, :1], bands[:, 1:]
    h = 2 * high * torch.sinc(2 * high * t) - 2 * low * torch.sinc(2 * low * t)
    window = torch.hamming_window(kernel, periodic=False, dtype=torch.float64)
    return (h * window).float().unsqueeze(1)


class SincFrontEnd(nn.Module):
    """Fixed sinc filterbank conv, then |.|, max-pool 3, BN, LeakyReLU."""

    def __init__(self, n_filters: int, kernel: int):
        super().__init__()
        self.register_buffer("filters", mel_sinc_filters(n_filters, kernel), persistent=False)
        self.bn = nn.BatchNorm1d(n_filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv1d(x.unsqueeze(1), self.filters)
        return F.leaky_relu(self.bn(F.max_pool1d(x.abs(), 3)), SLOPE)


class ResBlock(nn.Module):
    """(BN, LeakyReLU,) conv3, BN, LeakyReLU, conv3 + skip (1x1 conv if channels change), max-pool 3, FMS."""

    def __init__(self, c_in: int, c_out: int, pre_activation: bool):
        super().__init__()
        self.pre = nn.Sequential(nn.BatchNorm1d(c_in), nn.LeakyReLU(SLOPE)) if pre_activation else nn.Identity()
        self.conv1 = nn.Conv1d(c_in, c_out, 3, padding=1)
        self.bn = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.fms = nn.Linear(c_out, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(self.pre(x))
        y = self.conv2(F.leaky_relu(self.bn(y), SLOPE)) + self.skip(x)
        y = F.max_pool1d(y, 3)
        s = torch.sigmoid(self.fms(y.mean(dim=-1))).unsqueeze(-1)
        return y * s + s


class RawNet2(nn.Module):
    """RawNet2: ``[B, n]`` 16 kHz waveform -> ``[B, 2]`` logits (spoof, bona fide)."""

    def __init__(self, config: RawNet2Config = RAWNET2):
        super().__init__()
        self.config = config
        self.input_samples = int(config.input_samples)
        self.front = SincFrontEnd(config.sinc_filters, config.sinc_kernel)
        chans = (config.sinc_filters, *config.res_channels)
        # the front end already ends in BN + LeakyReLU, so the first block skips its pre-activation
        self.blocks = nn.Sequential(*(ResBlock(a, b, pre_activation=i > 0)
                                      for i, (a, b) in enumerate(zip(chans[:-1], chans[1:]))))
        self.bn = nn.BatchNorm1d(chans[-1])
        self.gru = nn.GRU(chans[-1], config.gru_hidden, num_layers=config.gru_layers, batch_first=True)
        self.fc = nn.Linear(config.gru_hidden, config.fc_dim)
        self.out = nn.Linear(config.fc_dim, 2)

    @property
    def min_samples(self) -> int:
        """Shortest input that leaves at least one frame for the GRU."""
        return self.config.sinc_kernel - 1 + 3 ** (len(self.config.res_channels) + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[-1] < self.min_samples:
            raise ValueError(f"RawNet2 expects [B, n] audio with n >= {self.min_samples}, got {tuple(x.shape)}")
        h = self.blocks(self.front(x))
        h = F.leaky_relu(self.bn(h), SLOPE).transpose(1, 2)  # [B, T, C]
        _, last = self.gru(h)
        return self.out(F.leaky_relu(self.fc(last[-1]), SLOPE))


__all__ = ["RAWNET2", "RAWNET2_SMALL", "RawNet2", "RawNet2Config", "mel_band_edges", "mel_sinc_filters"]
