"""Pretrained detectors: model cards in ``detect/cards/`` (shipped or downloadable), and loading by
card name, card file, or an architecture name plus ``--checkpoint``."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from voiceguard.cards import ModelCard, find_card, load_card, load_state_dict, resolve_checkpoint
from voiceguard.errors import ModelCardError

from .base import DETECTORS, Detector
from .scoring import Calibration

CARDS_DIR = Path(__file__).parent / "cards"
DEFAULT_MODEL = "vg-whisper"


@dataclass(frozen=True)
class LoadedModel:
    """A ready detector with its card (None for a bare checkpoint) and calibration."""

    detector: Detector
    name: str
    version: str
    calibration: Calibration
    card: ModelCard | None = None
    checkpoint: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def calibrated(self) -> bool:
        return self.calibration.fitted_on is not None


def list_cards() -> list[ModelCard]:
    """The detector cards of ``detect/cards/`` (shipped or downloadable), sorted by file name."""
    return [load_card(p) for p in sorted(CARDS_DIR.glob("*.yaml"))]


#: the columns of ``model_catalogue`` (``voiceguard detect list``)
CATALOGUE_COLUMNS = ("name", "architecture", "weights", "trained_on", "eer")


def model_catalogue() -> list[dict]:
    """One row per detector card: ``name`` (" (default)" marks ``DEFAULT_MODEL``), ``architecture``, ``weights``
    ("shipped" next to the card, else "download"), ``trained_on`` and ``eer`` (the card's eval EER in %, or the
    EER its authors reported)."""
    def eer(metrics: dict) -> str:
        if "eval" in metrics:
            return f"{metrics['eval']['eer'] * 100:.2f} % (voiceguard corpus eval)"
        return str(metrics.get("reported_eer", "-"))

    return [{"name": c.name + (" (default)" if c.name == DEFAULT_MODEL else ""), "architecture": c.architecture,
             "weights": "shipped" if c.shipped else "download",
             "trained_on": (c.training or {}).get("data", "-"), "eer": eer(c.metrics or {})} for c in list_cards()]


def build_detector(architecture: str, config: dict | None = None) -> Detector:
    """An untrained detector of a registered name (``lfcc-gmm``, ``aasist``, ``lcnn-small``, ...) with
    ``config`` overrides.  Raises ``UnknownNameError`` (listing the names) or ``ModelCardError`` (bad config)."""
    entry = DETECTORS[architecture]
    try:
        return entry(**(config or {}))
    except TypeError as e:
        raise ModelCardError(f"bad config for {architecture!r}: {e}") from None


def _is_card_ref(model: str) -> bool:
    return model.endswith((".yaml", ".yml")) or model in {c.name for c in list_cards()}


def load_model(model: str | None = None, checkpoint: str | os.PathLike | None = None, *,
               device: str = "cpu") -> LoadedModel:
    """``model``: a card name, a card file, or an architecture name (then ``checkpoint`` is required).

    A card's checkpoint is found next to the card, then in ``$VOICEGUARD_CACHE``, then downloaded from
    its URL; its sha256 is always checked.  An explicit ``checkpoint`` replaces the card's file (and must
    still match the card's sha256: pass an architecture name instead for your own weights).
    """
    model = model or DEFAULT_MODEL
    if _is_card_ref(model):
        card = load_card(model) if model.endswith((".yaml", ".yml")) else find_card(model, [CARDS_DIR])
        if card.kind != "detector":
            raise ModelCardError(f"{card.name!r} is a {card.kind} card, not a detector", source=card.path)
        if not card.sha256:
            raise ModelCardError("the card has no sha256: its weights cannot be verified", source=card.path)
        det = build_detector(card.architecture, card.config)
        path = Path(checkpoint) if checkpoint else resolve_checkpoint(card)
        det.load_state_dict(load_state_dict(path, card.sha256))
        det.to(device)
        cal = Calibration.from_dict(card.extra.get("calibration"))
        return LoadedModel(det, card.name, str(card.extra.get("version", "1")), cal, card, str(path))
    if model not in DETECTORS:
        raise ModelCardError(f"unknown model {model!r}; model cards: {', '.join(c.name for c in list_cards())}; "
                             f"architectures (with --checkpoint): {', '.join(sorted(DETECTORS))}")
    if checkpoint is None:
        raise ModelCardError(f"{model!r} is an architecture, not a model card: give its weights with "
                             f"--checkpoint PATH (cards: {', '.join(c.name for c in list_cards())})")
    det = build_detector(model)
    det.load_state_dict(load_state_dict(checkpoint))
    det.to(device)
    return LoadedModel(det, model, "custom", Calibration(), None, str(checkpoint),
                       ("uncalibrated: LLR = raw score",))
