"""AudioSeal generator/detector models: configs, cards, and checkpoints in audioseal's own format.

The models are audioseal's classes (``AudioSealWM``, ``AudioSealDetector``) built through its builder
from a config dict.  A checkpoint is ``{"xp.cfg": <plain config dict>, "model": <state_dict>}``, the
layout ``audioseal.AudioSeal.load_generator(path)`` reads; here it is loaded weights-only after a
sha256 check instead of through audioseal's unpickling loader.
"""
from __future__ import annotations

import copy
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from voiceguard.audio import SAMPLE_RATE
from voiceguard.errors import ModelCardError

if TYPE_CHECKING:
    from voiceguard.cards import ModelCard
# voiceguard.cards (yaml) is imported where it is used: `import voiceguard.watermark` stays light

CARDS_DIR = Path(__file__).parent / "cards"
NBITS = 16
DEFAULT_GENERATOR = "vg_wm_16bits_small"
DEFAULT_DETECTOR = "vg_detector_16bits_small"


#: the columns of ``model_catalogue`` (``voiceguard watermark list``)
CATALOGUE_COLUMNS = ("name", "kind", "weights", "message", "fpr")


def model_catalogue() -> list[dict]:
    """One row per watermark card of ``watermark/cards/``: ``name`` (" (default)" marks the shipped pair),
    ``kind``, ``weights`` ("shipped" next to the card, "none" for the DSP engine, else "download"),
    ``message`` (payload and whether it is checked), ``fpr`` (the calibrated false-positive rate, or "-")."""
    from voiceguard.cards import load_card

    rows = []
    for p in sorted(CARDS_DIR.glob("*.yaml")):
        c = load_card(p)
        default = " (default)" if c.name in (DEFAULT_GENERATOR, DEFAULT_DETECTOR) else ""
        default = " (default engine)" if c.kind == "watermark-engine" else default
        weights = "shipped" if c.shipped else ("none" if c.checkpoint is None and not c.url else "download")
        message = c.extra.get("message") or ("16 bits, unchecked (no room for a check value)"
                                             if c.kind == "watermark-detector" else "-")
        rows.append({"name": c.name + default, "kind": c.kind, "weights": weights, "message": message,
                     "fpr": (c.extra.get("calibration") or {}).get("fpr", "-")})
    return rows


def seanet_config(*, n_filters: int = 12, dimension: int = 48, lstm: int = 1, nbits: int = NBITS,
                  causal: bool = False) -> dict[str, Any]:
    """An audioseal config dict (the official cards use n_filters=32, dimension=128, lstm=2)."""
    return {
        "nbits": nbits,
        "seanet": {
            "activation": "ELU", "activation_params": {"alpha": 1.0}, "causal": causal, "channels": 1,
            "compress": 2, "dilation_base": 2, "dimension": dimension, "disable_norm_outer_blocks": 0,
            "kernel_size": 7, "last_kernel_size": 7, "lstm": lstm, "n_filters": n_filters,
            "n_residual_layers": 1, "norm": "none", "norm_params": {}, "pad_mode": "constant",
            "ratios": [8, 5, 4, 2], "residual_kernel_size": 3, "true_skip": True,
        },
        "decoder": {"final_activation": None, "final_activation_params": None, "trim_right_ratio": 1.0},
        "detector": {"output_dim": 32},
    }


@contextmanager
def eager() -> Iterator[None]:
    """Run audioseal's SEANet without its lazy ``torch.compile`` (slow to start, recompiles per shape)."""
    if sys.version_info < (3, 10):
        yield
        return
    from audioseal.libs.moshi.utils.compile import no_compile

    with no_compile():
        yield


def scale_to_snr(w, x, snr_db: float):
    """Scale each item's watermark so that it sits ``snr_db`` below the host (RMS over the item); silent
    hosts get no watermark.  Training applies it per 1 s crop, the engine per 1 s block."""
    rx = x.pow(2).mean(-1, keepdim=True).sqrt()
    rw = w.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-9)
    return w * (rx * 10 ** (-snr_db / 20) / rw)


def build_generator(config: dict[str, Any]):
    from audioseal.builder import AudioSealWMConfig, create_generator
    from audioseal.loader import AudioSeal

    return create_generator(AudioSeal.parse_config(copy.deepcopy(config), AudioSealWMConfig))


def build_detector(config: dict[str, Any]):
    from audioseal.builder import AudioSealDetectorConfig, create_detector
    from audioseal.loader import AudioSeal

    return create_detector(AudioSeal.parse_config(copy.deepcopy(config), AudioSealDetectorConfig))


def save_checkpoint(path: str | os.PathLike, model, config: dict[str, Any], extra: dict | None = None) -> str:
    """Write ``{"xp.cfg", "model"}`` atomically; return its sha256."""
    import torch

    from voiceguard.cards import sha256_file
    from voiceguard.files import atomic_output

    state = audioseal_keys(model.state_dict())
    with atomic_output(path) as tmp:
        torch.save({"xp.cfg": copy.deepcopy(config), "model": state, **(extra or {})}, tmp)
    return sha256_file(path)


def audioseal_keys(state: dict) -> dict:
    """State-dict keys as audioseal's checkpoints store them (``...conv.conv.weight``): its loader renames
    them to the in-memory ``...conv.conv.inner_conv.weight`` and would mangle already-renamed keys."""
    return {k.replace(".inner_conv.", "."): v.detach().cpu().clone() for k, v in state.items()}


def read_checkpoint(path: str | os.PathLike, sha256: str | None, *, warn: bool = True) -> tuple[dict, dict]:
    """(config, state_dict with the in-memory key names) of an audioseal-format checkpoint, loaded
    weights-only after the sha256 check."""
    import collections
    import typing

    import omegaconf

    from voiceguard.cards import load_checkpoint

    path = Path(path)
    # official checkpoints store their cfg as an omegaconf DictConfig: allow exactly the plain-data
    # classes it unpickles to (no code objects, no reduce-to-arbitrary-callable)
    safe = [omegaconf.dictconfig.DictConfig, omegaconf.listconfig.ListConfig, omegaconf.base.ContainerMetadata,
            omegaconf.base.Metadata, omegaconf.nodes.AnyNode, typing.Any, dict, list, int, collections.defaultdict]
    obj = load_checkpoint(path, sha256, allowed_globals=safe, warn_unpinned=warn)
    if not isinstance(obj, dict):
        raise ModelCardError(f"checkpoint holds a {type(obj).__name__}, not a dict", source=path)
    state = obj.get("best_state", {}).get("model") if isinstance(obj.get("best_state"), dict) else obj.get("model")
    if not isinstance(state, dict):
        raise ModelCardError("checkpoint has no 'model' state_dict (not in audioseal's format)", source=path)
    cfg = obj.get("xp.cfg") or {}
    if not isinstance(cfg, dict):
        from omegaconf import OmegaConf

        cfg = OmegaConf.to_container(cfg, resolve=True)
    if not any(".inner_conv." in k for k in state):  # stored as audioseal stores it: rename as its loader does
        from audioseal.loader import convert_state_dict_for_scriptable_model

        state = convert_state_dict_for_scriptable_model(state)
    return cfg, state


def _merged(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _load(kind: str, name_or_path: str, sha256: str | None = None):
    from audioseal.loader import load_state_dict

    from voiceguard.cards import find_card, resolve_checkpoint

    card: ModelCard | None = None
    path = Path(name_or_path)
    if path.suffix in (".pt", ".pth"):
        if not path.is_file():
            raise ModelCardError("no such checkpoint", source=path)
        ckpt = path
    else:
        card = find_card(name_or_path, [CARDS_DIR])
        if card.kind != f"watermark-{kind}":
            raise ModelCardError(f"{card.name!r} is a {card.kind} card, not a watermark-{kind}", source=card.path)
        ckpt = resolve_checkpoint(card)
        sha256 = sha256 or card.sha256
    cfg, state = read_checkpoint(ckpt, sha256)
    if card is not None:  # the card's config wins over the checkpoint's (as in audioseal's cards)
        cfg = _merged(cfg, card.config)
    if "seanet" not in cfg:
        raise ModelCardError("no seanet config in the checkpoint or its card", source=ckpt)
    model = build_generator(cfg) if kind == "generator" else build_detector(cfg)
    try:
        load_state_dict(model, state)  # audioseal's: also folds weight-norm pairs of official checkpoints
    except (RuntimeError, AssertionError) as e:
        raise ModelCardError(f"weights do not fit the {kind} config ({str(e)[:300]})", source=ckpt) from None
    model.eval()
    return model, card, cfg


def load_generator(name_or_path: str, sha256: str | None = None):
    """(AudioSealWM, card or None, config) from a card name or an audioseal-format checkpoint path."""
    return _load("generator", name_or_path, sha256)


def load_detector(name_or_path: str, sha256: str | None = None):
    """(AudioSealDetector, card or None, config) from a card name or an audioseal-format checkpoint path."""
    return _load("detector", name_or_path, sha256)


def export_model(run_dir: str | os.PathLike, dest: str | os.PathLike, *, generator_name: str = DEFAULT_GENERATOR,
                 detector_name: str = DEFAULT_DETECTOR, training: dict | None = None) -> list[Path]:
    """Turn a training run's ``generator.pth``/``detector.pth`` into shippable checkpoints + cards in ``dest``."""
    from voiceguard.files import atomic_write_text

    run, dest = Path(run_dir), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, name in (("generator", generator_name), ("detector", detector_name)):
        cfg, state = read_checkpoint(run / f"{kind}.pth", sha256=None, warn=False)
        model = build_generator(cfg) if kind == "generator" else build_detector(cfg)
        model.load_state_dict(state)
        ckpt = dest / f"{name}.pth"
        sha = save_checkpoint(ckpt, model, cfg)
        card = {"name": name, "kind": f"watermark-{kind}", "architecture": "audioseal-seanet", "sample_rate": SAMPLE_RATE,
                "checkpoint": ckpt.name, "sha256": sha,
                "parameters": sum(p.numel() for p in model.parameters()),
                "config": {"nbits": cfg.get("nbits", NBITS), "seanet": {k: cfg["seanet"][k] for k in (
                    "n_filters", "dimension", "lstm", "ratios", "causal")}},
                "training": training or {}}
        if kind == "generator":
            card["strength"] = 1.0
            snr = (training or {}).get("config", {}).get("target_snr_db")
            if snr is not None:  # the engine scales each 1 s block's watermark to this level, as in training
                card["snr_db"] = float(snr)
        import yaml

        atomic_write_text(dest / f"{name}.yaml", yaml.safe_dump(card, sort_keys=False))
        written += [ckpt, dest / f"{name}.yaml"]
    return written


def export_run(run_dir: str | os.PathLike, dest: str | os.PathLike, *, generator_name: str | None = None,
               detector_name: str | None = None, command: str | None = None) -> list[Path]:
    """``export_model`` with the training summary read from ``RUN/train.json`` (data, steps, seconds, seed,
    threads, device, config, final running metrics, and ``command``, default the one recorded there); returns
    the files written (checkpoints and cards)."""
    import json

    info_path = Path(run_dir) / "train.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    cfg = info.get("config", {})
    training = {"data": list(cfg.get("data", [])), "steps": info.get("step"), "seconds": info.get("seconds"),
                "seed": cfg.get("seed"), "torch_threads": info.get("torch_threads"),
                "device": info.get("device", "cpu"), "config": cfg,
                "final_running_metrics": info.get("running"),
                "command": command or info.get("command")}
    return export_model(run_dir, dest, generator_name=generator_name or DEFAULT_GENERATOR,
                        detector_name=detector_name or DEFAULT_DETECTOR, training=training)


def update_card(name_or_path: str, **fields: Any) -> Path:
    """Set top-level fields of a card (e.g. ``calibration=...``, ``metrics=...``) and rewrite it atomically."""
    import yaml

    from voiceguard.cards import find_card
    from voiceguard.files import atomic_write_text

    card = find_card(name_or_path, [CARDS_DIR])
    data = yaml.safe_load(card.path.read_text()) or {}
    data.update(fields)
    atomic_write_text(card.path, yaml.safe_dump(data, sort_keys=False))
    return card.path
