"""LFCC-LCNN: the ASVspoof 2021 baseline countermeasure (Wang & Yamagishi, "A comparative study on recent
neural spoofing countermeasures", ICASSP 2021): LFCC front end, a light CNN of max-feature-map blocks,
two bidirectional LSTM layers with a skip connection, average pooling over time, two logits."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .features import lfcc_module


@dataclass(frozen=True)
class LcnnConfig:
    input_samples: int = 64600
    n_filters: int = 20
    n_ceps: int = 20
    level_norm: bool = True  # c0 minus its utterance mean: the recording level cannot be a shortcut
    widths: tuple[int, ...] = (32, 48, 64, 32, 32)  # output channels (after max-feature-map) of the 5 blocks
    lstm: bool = True
    dropout: float = 0.7

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if len(self.widths) != 5:
            raise ValueError(f"lcnn widths needs 5 values, got {list(self.widths)}")


LCNN = LcnnConfig()
# a CPU-sized variant on 2 s windows: a quarter of the parameters, a fifth of the compute
LCNN_SMALL = LcnnConfig(input_samples=32000, widths=(16, 24, 32, 16, 16), dropout=0.5)


class MaxFeatureMap(nn.Module):
    """Split channels in two halves and keep the element-wise maximum (the 'light CNN' activation)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return torch.maximum(a, b)


def _mfm_conv(c_in: int, c_out: int, k: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, 2 * c_out, k, padding=k // 2), MaxFeatureMap()]


def _block(c_in: int, c_out: int) -> list[nn.Module]:
    """1x1 MFM conv, batch norm, 3x3 MFM conv."""
    return [*_mfm_conv(c_in, c_in, 1), nn.BatchNorm2d(c_in, affine=False), *_mfm_conv(c_in, c_out, 3)]


class Lcnn(nn.Module):
    def __init__(self, config: LcnnConfig = LCNN) -> None:
        super().__init__()
        self.config, self.input_samples = config, config.input_samples
        w = config.widths
        self.front_end = lfcc_module(n_filters=config.n_filters, n_ceps=config.n_ceps, level_norm=config.level_norm)
        pool = lambda: nn.MaxPool2d(2, 2)  # noqa: E731
        self.cnn = nn.Sequential(
            *_mfm_conv(1, w[0], 5), pool(),
            *_block(w[0], w[1]), pool(), nn.BatchNorm2d(w[1], affine=False),
            *_block(w[1], w[2]), pool(),
            *_block(w[2], w[3]), nn.BatchNorm2d(w[3], affine=False),
            *_block(w[3], w[4]), pool(),
            nn.Dropout(config.dropout))
        dims = 3 * config.n_ceps
        for _ in range(4):
            dims //= 2
        hidden = w[4] * dims
        self.lstm = nn.LSTM(hidden, hidden // 2, num_layers=2, bidirectional=True, batch_first=True) \
            if config.lstm else None
        self.out = nn.Linear(hidden, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.front_end(x)  # [B, T, D]
        h = self.cnn(feats.unsqueeze(1))  # [B, C, T', D']
        h = h.permute(0, 2, 1, 3).flatten(2)  # [B, T', C * D']
        if self.lstm is not None:
            h = h + self.lstm(h)[0]
        return self.out(h.mean(dim=1))
