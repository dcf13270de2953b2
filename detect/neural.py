"""Neural detectors: the table of network architectures (data behind the ``DETECTORS`` entries), a Detector
wrapper that scores windows in batches, and the registration of every network preset.

The network modules (``aasist``, ``rawnet2``, ``lcnn``, ``specnet``) import torch; they are imported when a
detector is built, so importing ``voiceguard.detect`` (and listing the names) stays cheap.
"""
from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import numpy as np

from voiceguard.audio import SAMPLE_RATE
from voiceguard.errors import ModelCardError

from .base import register_detector


@dataclass(frozen=True)
class Architecture:
    """Where one network lives: ``detect/<module>.py`` holds the ``nn.Module`` class ``network``, its config
    dataclass ``config_class`` and the module-level config constants named by ``presets`` (preset -> name)."""

    name: str
    module: str
    network: str
    config_class: str
    presets: Mapping[str, str]

    def _module(self):
        return importlib.import_module(f"{__package__}.{self.module}")

    def config(self, preset: str = "default", **overrides: Any) -> Any:
        """The preset's config dataclass with ``overrides`` applied; an unknown key raises ``ModelCardError``."""
        mod = self._module()
        base = getattr(mod, self.presets[preset])
        known = {f.name for f in fields(getattr(mod, self.config_class))}
        unknown = set(overrides) - known
        if unknown:
            raise ModelCardError(f"{self.name}: unknown config keys {sorted(unknown)}; known: {sorted(known)}")
        return type(base)(**{**asdict(base), **overrides})

    def build(self, preset: str = "default", **overrides: Any) -> tuple[Any, Any]:
        """``(nn.Module, config)`` for the preset with ``overrides`` applied (untrained weights)."""
        cfg = self.config(preset, **overrides)
        return getattr(self._module(), self.network)(cfg), cfg


ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in (
    Architecture("aasist", "aasist", "Aasist", "AasistConfig", {"default": "AASIST", "light": "AASIST_L"}),
    Architecture("rawnet2", "rawnet2", "RawNet2", "RawNet2Config", {"default": "RAWNET2", "small": "RAWNET2_SMALL"}),
    Architecture("lcnn", "lcnn", "Lcnn", "LcnnConfig", {"default": "LCNN", "small": "LCNN_SMALL"}),
    Architecture("specnet", "specnet", "SpecNet", "SpecNetConfig", {"default": "SPECNET"}),
    Architecture("whisper", "whispercm", "WhisperCM", "WhisperCMConfig",
                 {"default": "WHISPER_ASP", "seq": "WHISPER_SEQ"}),
)}

#: registered name -> (architecture, preset)
NETWORK_DETECTORS: dict[str, tuple[str, str]] = {
    "aasist": ("aasist", "default"), "aasist-l": ("aasist", "light"),
    "rawnet2": ("rawnet2", "default"), "rawnet2-small": ("rawnet2", "small"),
    "lcnn": ("lcnn", "default"), "lcnn-small": ("lcnn", "small"),
    "specnet": ("specnet", "default"),
    "whisper-asp": ("whisper", "default"), "whisper-seq": ("whisper", "seq"),
}


#: architectures whose module splits into a frozen ``features`` part and a trained ``head``
FEATURE_TRAINED = frozenset({"whisper"})


def normalize_config(cfg: Any) -> dict:
    """A config dataclass as plain YAML-able data (tuples -> lists)."""
    def plain(v):
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    return {k: plain(v) for k, v in asdict(cfg).items()}


class NeuralDetector:
    """A network as a ``NetworkDetector``: ``score_batch`` of fixed-length windows, in batches of
    ``batch_size`` on ``device``.  The architectures of ``FEATURE_TRAINED`` (a frozen ``features`` part and a
    trained ``head``: ``whispercm.WhisperCM``) train with cached features (``training = "features"``), the others
    by epochs over waveforms."""

    sample_rate = SAMPLE_RATE

    def __init__(self, architecture: str, module, config: Any, *, name: str | None = None, device: str = "cpu",
                 batch_size: int = 16):
        self.architecture, self.module, self.config = architecture, module.to(device).eval(), config
        self.name = name or architecture
        self.device, self.batch_size = device, batch_size
        self.input_samples = int(module.input_samples)
        self.training = "features" if architecture in FEATURE_TRAINED else "epochs"

    @classmethod
    def create(cls, name: str, architecture: str, preset: str = "default", **overrides: Any) -> "NeuralDetector":
        """An untrained detector: ``ARCHITECTURES[architecture]``'s ``preset`` with config ``overrides``."""
        module, cfg = ARCHITECTURES[architecture].build(preset, **overrides)
        return cls(architecture, module, cfg, name=name)

    def config_dict(self) -> dict:
        return normalize_config(self.config)

    def score_batch(self, batch: np.ndarray) -> np.ndarray:
        """``[B, n]`` float32 windows -> ``[B]`` scores (logit bona fide minus logit spoof; higher = bona fide)."""
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(batch), self.batch_size):
                x = torch.as_tensor(np.ascontiguousarray(batch[i:i + self.batch_size]), dtype=torch.float32,
                                    device=self.device)
                logits = self.module(x).float()
                out.append((logits[:, 1] - logits[:, 0]).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)

    def to(self, device: str) -> "NeuralDetector":
        self.module.to(device)
        self.device = device
        return self

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


def _register(name: str, architecture: str, preset: str) -> None:
    def build(**overrides: Any) -> NeuralDetector:
        return NeuralDetector.create(name, architecture, preset, **overrides)

    training = "features" if architecture in FEATURE_TRAINED else "epochs"
    register_detector(name, architecture=architecture, preset=preset, training=training)(build)


for _name, (_arch, _preset) in NETWORK_DETECTORS.items():
    _register(_name, _arch, _preset)
