"""SpecNet: this project's compact CPU countermeasure. Per-frequency-bin statistics of the STFT magnitude
and phase over a window (``features.spectral_statistics_module``) at three resolutions (16, 32 and 64 ms
frames), standardised, then a small MLP.

Fine spectral detail at 31 Hz resolution and the phase regularity that vocoders and Griffin-Lim phase
reconstruction disturb are what separate generated from natural speech here; the model trains in
minutes on two CPU cores, where the convolutional networks need a GPU.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from voiceguard.audio import SAMPLE_RATE

from .features import spectral_statistics_module


@dataclass(frozen=True)
class SpecNetConfig:
    input_samples: int = 64000  # 4 s windows
    n_ffts: tuple[int, ...] = (256, 512, 1024)  # one STFT per size, frames as long as the FFT
    hidden: int = 64
    dropout: float = 0.3

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_ffts", tuple(int(n) for n in self.n_ffts))
        if not self.n_ffts:
            raise ValueError("specnet needs at least one FFT size")


SPECNET = SpecNetConfig()


class SpecNet(nn.Module):
    def __init__(self, config: SpecNetConfig = SPECNET) -> None:
        super().__init__()
        self.config, self.input_samples = config, config.input_samples
        self.front_ends = nn.ModuleList(spectral_statistics_module(n_fft=n, win_ms=1000 * n / SAMPLE_RATE)
                                        for n in config.n_ffts)
        dims = sum(8 * (n // 2 + 1) for n in config.n_ffts)
        self.standardize = nn.BatchNorm1d(dims, affine=False)  # running mean / variance: a learned scaler
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(dims, config.hidden), nn.ReLU(),
                                  nn.Dropout(config.dropout), nn.Linear(config.hidden, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.standardize(torch.cat([f(x) for f in self.front_ends], dim=1)))
