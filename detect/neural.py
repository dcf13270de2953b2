"""Neural detectors: the architecture registry (name -> module + config presets), a Detector wrapper
that scores windows in batches, and persistence."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Callable

import numpy as np

from voiceguard.errors import ModelCardError

from .base import register_detector
from voiceguard.audio import SAMPLE_RATE



@dataclass(frozen=True)
class Architecture:
    """How to build one network: its module class, config class and named presets."""

    name: str
    build: Callable[[Any], Any]  # config -> nn.Module
    config_class: type
    presets: dict

    def config(self, preset: str | None = None, **overrides: Any) -> Any:
        base = self.presets[preset or "default"]
        known = {f.name for f in fields(self.config_class)}
        unknown = set(overrides) - known
        if unknown:
            raise ModelCardError(f"{self.name}: unknown config keys {sorted(unknown)}; known: {sorted(known)}")
        return type(base)(**{**asdict(base), **overrides})


def _architectures() -> dict[str, Architecture]:
    from .aasist import AASIST, AASIST_L, Aasist, AasistConfig
    from .lcnn import LCNN, LCNN_SMALL, Lcnn, LcnnConfig
    from .rawnet2 import RAWNET2, RAWNET2_SMALL, RawNet2, RawNet2Config
    from .specnet import SPECNET, SpecNet, SpecNetConfig

    return {
        "aasist": Architecture("aasist", Aasist, AasistConfig, {"default": AASIST, "light": AASIST_L}),
        "rawnet2": Architecture("rawnet2", RawNet2, RawNet2Config, {"default": RAWNET2, "small": RAWNET2_SMALL}),
        "lcnn": Architecture("lcnn", Lcnn, LcnnConfig, {"default": LCNN, "small": LCNN_SMALL}),
        "specnet": Architecture("specnet", SpecNet, SpecNetConfig, {"default": SPECNET}),
    }


_ARCH_CACHE: dict[str, Architecture] = {}


def architectures() -> dict[str, Architecture]:
    if not _ARCH_CACHE:
        _ARCH_CACHE.update(_architectures())
    return _ARCH_CACHE


def build_module(architecture: str, config: dict | None = None, preset: str | None = None):
    archs = architectures()
    if architecture not in archs:
        raise ModelCardError(f"unknown architecture {architecture!r}; one of {', '.join(archs)}")
    arch = archs[architecture]
    cfg = arch.config(preset, **(config or {}))
    return arch.build(cfg), cfg


def normalize_config(cfg: Any) -> dict:
    """A config dataclass as plain YAML-able data (tuples -> lists)."""
    def plain(v):
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    return {k: plain(v) for k, v in asdict(cfg).items()}


class NeuralDetector:
    """A network as a Detector: ``score_batch`` of fixed-length windows, ``score`` of a whole signal."""

    sample_rate = SAMPLE_RATE

    def __init__(self, architecture: str, module, config: Any, *, name: str | None = None, device: str = "cpu",
                 batch_size: int = 16):
        self.architecture, self.module, self.config = architecture, module.to(device).eval(), config
        self.name = name or architecture
        self.device, self.batch_size = device, batch_size
        self.input_samples = int(module.input_samples)

    @classmethod
    def create(cls, architecture: str, preset: str | None = None, **overrides: Any) -> "NeuralDetector":
        module, cfg = build_module(architecture, overrides, preset)
        return cls(architecture, module, cfg, name=architecture if preset in (None, "default")
                   else f"{architecture}-{preset}")

    def config_dict(self) -> dict:
        return normalize_config(self.config)

    def score_batch(self, batch: np.ndarray) -> np.ndarray:
        """``[B, n]`` windows -> ``[B]`` scores (logit bona fide minus logit spoof; higher = bona fide)."""
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(batch), self.batch_size):
                x = torch.as_tensor(np.ascontiguousarray(batch[i:i + self.batch_size]), dtype=torch.float32,
                                    device=self.device)
                logits = self.module(x).float()
                out.append((logits[:, 1] - logits[:, 0]).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)

    def score(self, audio: np.ndarray) -> float:
        from .scoring import windows

        batch, _ = windows(audio, self.input_samples, self.input_samples // 2)
        return float(np.mean(self.score_batch(batch)))

    def state_dict(self) -> dict:
        return {k: v.detach().cpu() for k, v in self.module.state_dict().items()}

    def load_state_dict(self, sd: dict) -> "NeuralDetector":
        try:
            self.module.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            first = str(e).strip().splitlines()
            raise ModelCardError(f"checkpoint does not fit architecture {self.architecture!r}: "
                                 f"{' '.join(first[:3])[:400]}") from None
        self.module.eval()
        return self


def _factory(architecture: str, preset: str | None):
    def make(**overrides: Any) -> NeuralDetector:
        return NeuralDetector.create(architecture, preset, **overrides)
    return make


for _name, _arch, _preset in [("aasist", "aasist", None), ("aasist-l", "aasist", "light"),
                              ("rawnet2", "rawnet2", None), ("rawnet2-small", "rawnet2", "small"),
                              ("lcnn", "lcnn", None), ("lcnn-small", "lcnn", "small"),
                              ("specnet", "specnet", None)]:
    register_detector(_name)(_factory(_arch, _preset))
