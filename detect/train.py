"""Training detectors on ASVspoof-style protocols: seeded, class-weighted, augmented with the attack
library, early stopping on dev EER, checkpoint + resume, then calibration and a model card.

Layout written to ``out``: ``model.pt`` (best weights, state_dict), ``card.yaml``, ``last.pt`` (resume
state with the per-epoch history).
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from voiceguard.attacks import ATTACKS, get_attack
from voiceguard.audio import audio_info, load_audio
from voiceguard.cards import load_verified, save_verified, sha256_file
from voiceguard.errors import VoiceguardError, preview
from voiceguard.files import atomic_write_text
from voiceguard.protocols import Trial, check_audio_files, read_protocol

from .batch import MIN_SECONDS, score_files
from .models import build_detector
from .scoring import Calibration, fit_calibration, fit_window
from voiceguard.audio import SAMPLE_RATE

# the ``codec`` augmentation group: channel codecs of the ASVspoof 2021 LA/DF conditions
CODEC_GROUP: tuple[tuple[str, dict], ...] = (
    ("mp3", {"bitrate": "32k"}), ("mp3", {"bitrate": "64k"}), ("aac", {"bitrate": "32k"}),
    ("opus", {"bitrate": "16k"}), ("vorbis", {"bitrate": "48k"}), ("mulaw", {}), ("alaw", {}), ("g722", {}),
    ("gsm", {}), ("resample", {"rate_hz": 8000}))


class TrainError(VoiceguardError):
    """A training run that cannot start or continue (bad option, no data, corrupt resume state)."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (together with the data)."""

    model: str = "lcnn-small"
    model_config: dict = field(default_factory=dict, hash=False)
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    patience: int = 6  # epochs without a better dev EER before stopping
    augment: tuple[str, ...] = ()  # attack specs: "rawboost", "rawboost:algo=3", "codec", "white_noise:snr_db=20"
    augment_prob: float = 0.5
    workers: int = 2
    device: str = "auto"
    max_train: int | None = None  # use a seeded subset (quick runs)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["augment"] = list(self.augment)
        return d


@dataclass(frozen=True)
class EpochLog:
    epoch: int
    loss: float
    dev_eer: float
    seconds: float
    lr: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TrainResult:
    out_dir: str
    checkpoint: str
    card: str
    best_epoch: int
    best_dev_eer: float
    history: tuple[EpochLog, ...]
    calibration: Calibration

    def to_dict(self) -> dict:
        return {"out_dir": self.out_dir, "checkpoint": self.checkpoint, "card": self.card,
                "best_epoch": self.best_epoch, "best_dev_eer": self.best_dev_eer,
                "history": [h.to_dict() for h in self.history], "calibration": self.calibration.to_dict()}


# --------------------------------------------------------------------------------------------- augmentation
def parse_augment(specs: Sequence[str]) -> list[list[tuple[str, dict]]]:
    """``["rawboost:algo=3", "codec"]`` -> one group per spec, each a list of ``(attack, params)``;
    ``codec`` is the group of CODEC_GROUP codecs that ffmpeg here can encode."""
    out: list[list[tuple[str, dict]]] = []
    for spec in specs:
        name, _, rest = spec.partition(":")
        if name == "codec":
            group = [(n, p) for n, p in CODEC_GROUP if _available(n)]
            if not group:
                raise TrainError("--augment codec: none of its codecs can be encoded here (is ffmpeg installed?)")
            out.append(group)
            continue
        if name not in ATTACKS:
            raise TrainError(f"unknown augmentation {name!r}; an attack name ({', '.join(sorted(ATTACKS))}) "
                             "or 'codec'")
        params: dict[str, Any] = {}
        for kv in filter(None, rest.split(",")):
            k, eq, v = kv.partition("=")
            if not eq:
                raise TrainError(f"augmentation {spec!r}: expected key=value after ':'")
            params[k] = _number(v)
        out.append([(name, params)])
    return out


def _number(v: str) -> Any:
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def _available(name: str) -> bool:
    try:
        ATTACKS[name].check_available()
        return True
    except Exception:
        return False


class Augmenter:
    """With probability ``prob``: a group drawn uniformly, then one of its attacks; seeded by ``seed``."""

    def __init__(self, groups: list[list[tuple[str, dict]]], prob: float):
        self.groups, self.prob = [g for g in groups if g], prob

    def __call__(self, x: np.ndarray, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        if not self.groups or rng.random() >= self.prob:
            return x
        group = self.groups[int(rng.integers(len(self.groups)))]
        name, params = group[int(rng.integers(len(group)))]
        y = get_attack(name, seed=int(rng.integers(2 ** 31)), **params)(x, SAMPLE_RATE)
        y = np.asarray(y, dtype=np.float32).ravel()
        return y if np.isfinite(y).all() else x


# --------------------------------------------------------------------------------------------- data
def load_trials(protocol: str | os.PathLike, audio_dir: str | os.PathLike | None, ext: str = ".flac",
                protocol_format: str = "auto") -> list[Trial]:
    """A protocol's trials, every audio file checked up front (exists, readable header, long enough), so
    a bad file stops training before it starts, with one message listing the bad files."""
    trials = read_protocol(protocol, protocol_format)
    check_audio_files(trials, audio_dir, ext, source=str(protocol))
    _check_two_classes(trials, protocol)
    bad = []
    for t in trials:
        path = t.audio_path(audio_dir, ext)
        try:
            info = audio_info(path)
            if info.frames is not None and info.frames < MIN_SECONDS * info.sample_rate:
                bad.append(f"{path} (shorter than {MIN_SECONDS:g} s, the shortest audio scoring accepts)")
        except VoiceguardError as e:
            bad.append(f"{path} ({e.reason})")
    if bad:
        raise TrainError(f"{len(bad)} of {len(trials)} audio files cannot be used: {preview(bad)}", source=protocol)
    return trials


def _check_two_classes(trials: list[Trial], source) -> None:
    labels = {t.label for t in trials}
    if labels != {"bonafide", "spoof"}:
        raise TrainError(f"needs both bona fide and spoof trials, found only {sorted(labels)}", source=source)


def _read(trial: Trial, audio_dir, ext: str) -> np.ndarray:
    """A trial's audio as 16 kHz mono ``[n]``."""
    return load_audio(trial.audio_path(audio_dir, ext), SAMPLE_RATE, mono=True)[0][0]


class _TrainSet:
    """Random fixed-length crops (repeat-padded when short), augmented; item seed = (seed, epoch, index)."""

    def __init__(self, trials: list[Trial], audio_dir, ext: str, win: int, augment: Augmenter, seed: int):
        self.trials, self.audio_dir, self.ext, self.win = trials, audio_dir, ext, win
        self.augment, self.seed, self.epoch = augment, seed, 0

    def __len__(self) -> int:
        return len(self.trials)

    def __getitem__(self, i: int):
        import torch

        item_seed = ((self.seed * 1_000_003 + self.epoch) * 1_000_003 + i) % (2 ** 31)
        rng = np.random.default_rng(item_seed)
        x = _read(self.trials[i], self.audio_dir, self.ext)
        if x.size > self.win:
            start = int(rng.integers(0, x.size - self.win + 1))
            x = x[start:start + self.win]
        x = fit_window(self.augment(x, item_seed + 1), self.win)
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), int(self.trials[i].is_bonafide)


def _seeded_subset(trials: list[Trial], n: int | None, seed: int) -> list[Trial]:
    if n is None or n >= len(trials):
        return trials
    idx = np.random.default_rng(seed).permutation(len(trials))[:n]
    return [trials[i] for i in sorted(idx)]


# --------------------------------------------------------------------------------------------- loop
def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def dev_scores(detector, trials: list[Trial], audio_dir, ext: str) -> np.ndarray:
    """Each trial's file score (mean window score) exactly as ``scan`` and ``detect score`` compute it."""
    if hasattr(detector, "module"):
        detector.module.eval()
    out = []
    for s in score_files(detector, [t.audio_path(audio_dir, ext) for t in trials]):
        if s.result is None:
            raise TrainError(f"cannot score a dev file: {s.error}", source=s.source)
        out.append(s.result.score)
    return np.array(out)


def _eer(scores: np.ndarray, trials: list[Trial]) -> float:
    from voiceguard.metrics.cm import compute_eer

    lab = np.array([t.is_bonafide for t in trials])
    return float(compute_eer(scores[lab], scores[~lab])[0])


def train_detector(config: TrainConfig, train_protocol: str | os.PathLike, audio_dir: str | os.PathLike | None,
                   out_dir: str | os.PathLike, *, dev_protocol: str | os.PathLike | None = None,
                   dev_audio_dir: str | os.PathLike | None = None, ext: str = ".flac", resume: bool = False,
                   command: str | None = None, name: str | None = None, progress: bool = True,
                   overwrite: bool = False, protocol_format: str = "auto") -> TrainResult:
    """Train, keep the best dev-EER epoch, calibrate on dev, write weights + card to ``out_dir``.

    ``protocol_format`` (both protocols): ``auto`` (sniffed) or a ``voiceguard.protocols.READERS`` name."""
    import torch
    from tqdm import tqdm

    out = Path(out_dir)
    last = out / "last.pt"
    if resume and not last.is_file():
        raise TrainError("nothing to resume: no last.pt here (check --out)", source=out)
    existing = [p.name for p in (out / "model.pt", last, out / "card.yaml") if p.exists()]
    if existing and not resume and not overwrite:
        raise TrainError(f"already holds a trained model ({', '.join(existing)}); use --resume to continue it, "
                         "--overwrite to replace it, or another --out", source=out)
    out.mkdir(parents=True, exist_ok=True)
    train = _seeded_subset(load_trials(train_protocol, audio_dir, ext, protocol_format), config.max_train,
                           config.seed)
    _check_two_classes(train, f"{train_protocol} (--max-train {config.max_train} subset)")
    dev_dir = dev_audio_dir if dev_audio_dir is not None else audio_dir
    dev = load_trials(dev_protocol, dev_dir, ext, protocol_format) if dev_protocol else None
    augment = Augmenter(parse_augment(config.augment), config.augment_prob)
    device = _device(config.device)
    torch.manual_seed(config.seed)
    det = build_detector(config.model, config.model_config)
    if not hasattr(det, "module"):
        if "seed" not in config.model_config:
            det.seed = config.seed
        return _train_gmm(det, config, train, audio_dir, dev, dev_dir, ext, out, command, name, dev_protocol)
    module = det.module.to(device)
    det.device = device
    n_bona = sum(t.is_bonafide for t in train)
    weights = torch.tensor([len(train) / (2 * (len(train) - n_bona)), len(train) / (2 * n_bona)],
                           dtype=torch.float32, device=device)  # balanced: each class weighs half
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
    opt = torch.optim.AdamW(module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start_epoch, best, best_epoch, history = 0, math.inf, -1, []
    if resume:
        try:
            state = load_verified(last, map_location=device)
            same = state.get("config") == _resume_key(config)
            if same:
                module.load_state_dict(state["model"])
                opt.load_state_dict(state["optimizer"])
        except Exception as e:  # noqa: BLE001 - a corrupt or foreign file: one clear message
            raise TrainError(f"cannot resume from this file ({type(e).__name__}: {str(e)[:200]})",
                             source=last) from None
        if not same:
            raise TrainError("resume state was written with a different training config (only --epochs, "
                             "--patience, --workers and --device may change)", source=last)
        start_epoch, best, best_epoch = state["epoch"] + 1, state["best"], state["best_epoch"]
        history = [EpochLog(**h) for h in state["history"]]
    dataset = _TrainSet(train, audio_dir, ext, int(module.input_samples), augment, config.seed)
    bad_epochs = sum(1 for h in history if h.epoch > best_epoch)
    for epoch in range(start_epoch, config.epochs):
        if bad_epochs >= config.patience:
            break
        t0 = time.time()
        lr = cosine_lr(config.lr, epoch, config.epochs)
        for group in opt.param_groups:
            group["lr"] = lr
        dataset.epoch = epoch
        torch.manual_seed(config.seed * 1000 + epoch)
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=config.batch_size, shuffle=True, drop_last=len(train) > config.batch_size,
            num_workers=config.workers, generator=torch.Generator().manual_seed(config.seed * 1000 + epoch),
            persistent_workers=False)
        module.train()
        total, count = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", file=sys.stderr, disable=not progress,
                   leave=False)
        for x, y in bar:
            x, y = x.to(device), y.to(device)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(module(x), y)
            loss.backward()
            opt.step()
            total, count = total + loss.item() * len(y), count + len(y)
            bar.set_postfix(loss=f"{total / count:.4f}")
        loss_avg = total / max(count, 1)
        if dev is not None:
            dev_eer = _eer(dev_scores(det, dev, dev_dir, ext), dev)
        else:
            dev_eer = loss_avg  # without dev data, the training loss picks the epoch
        history.append(EpochLog(epoch, round(loss_avg, 6), round(dev_eer, 6), round(time.time() - t0, 1), lr))
        if dev_eer < best:
            best, best_epoch, bad_epochs = dev_eer, epoch, 0
            _save(module.state_dict(), out / "model.pt")
        else:
            bad_epochs += 1
        _save({"model": module.state_dict(), "optimizer": opt.state_dict(),
               "epoch": epoch, "best": best, "best_epoch": best_epoch,
               "history": [h.to_dict() for h in history],
               "config": _resume_key(config)}, last)
        if progress:
            print(f"epoch {epoch + 1}: loss {loss_avg:.4f}, dev EER "
                  f"{dev_eer * 100:.2f} %{' (best)' if best_epoch == epoch else ''} [{history[-1].seconds:.0f} s]",
                  file=sys.stderr)
    if best_epoch < 0:
        raise TrainError("no epoch was trained (already finished? remove --resume or raise --epochs)", source=out)
    module.load_state_dict(torch.load(out / "model.pt", map_location=device, weights_only=True))
    calibration = Calibration()
    if dev is not None:
        s = dev_scores(det, dev, dev_dir, ext)
        lab = np.array([t.is_bonafide for t in dev])
        calibration = fit_calibration(s[lab], s[~lab], fitted_on=str(dev_protocol))
    card = write_card(out, name or f"{config.model}-{Path(train_protocol).stem}", config, out / "model.pt",
                      calibration, {"best_epoch": best_epoch, "dev_eer": best if dev is not None else None},
                      data={"train_protocol": str(train_protocol), "n_train": len(train),
                            "dev_protocol": str(dev_protocol) if dev_protocol else None},
                      command=command)
    return TrainResult(str(out), str(out / "model.pt"), str(card), best_epoch, best, tuple(history), calibration)


def cosine_lr(base: float, epoch: int, epochs: int) -> float:
    """Cosine annealing from ``base`` (epoch 0) towards 0 (closed form: a resumed run continues exactly)."""
    return base * 0.5 * (1 + math.cos(math.pi * epoch / max(1, epochs)))


def _resume_key(config: TrainConfig) -> str:
    """The part of the config a resumed run must share (more epochs or another device are fine)."""
    d = {k: v for k, v in config.to_dict().items() if k not in ("epochs", "patience", "workers", "device")}
    return json.dumps(d, sort_keys=True)


def _train_gmm(det, config: TrainConfig, train, audio_dir, dev, dev_dir, ext, out: Path, command, name,
               dev_protocol) -> TrainResult:
    """GMM baselines: one EM fit (no epochs); augmentation applies once per training file."""
    augment = Augmenter(parse_augment(config.augment), config.augment_prob)
    audio = [augment(_read(t, audio_dir, ext), config.seed + i) for i, t in enumerate(train)]
    t0 = time.time()
    det.fit([a for a, t in zip(audio, train) if t.is_bonafide], [a for a, t in zip(audio, train) if not t.is_bonafide])
    _save(det.state_dict(), out / "model.pt")
    calibration, dev_eer = Calibration(), math.nan
    if dev is not None:
        s = dev_scores(det, dev, dev_dir, ext)
        dev_eer = _eer(s, dev)
        lab = np.array([t.is_bonafide for t in dev])
        calibration = fit_calibration(s[lab], s[~lab], fitted_on=str(dev_protocol))
    log = EpochLog(0, math.nan, dev_eer, round(time.time() - t0, 1), 0.0)
    card = write_card(out, name or config.model, config, out / "model.pt", calibration,
                      {"dev_eer": None if math.isnan(dev_eer) else dev_eer},
                      data={"n_train": len(train)}, command=command)
    return TrainResult(str(out), str(out / "model.pt"), str(card), 0, dev_eer, (log,), calibration)


def _save(obj: Any, path: Path) -> None:
    save_verified(obj, path)


def write_card(out: Path, name: str, config: TrainConfig, checkpoint: Path, calibration: Calibration,
               metrics: dict, *, data: dict, command: str | None) -> Path:
    """The model card of a trained model (YAML next to the weights)."""
    import yaml

    det = build_detector(config.model, config.model_config)
    cfg = det.config_dict() if hasattr(det, "config_dict") else dict(config.model_config)
    card = {
        "name": name, "kind": "detector", "architecture": config.model, "config": cfg, "sample_rate": SAMPLE_RATE,
        "checkpoint": checkpoint.name, "sha256": sha256_file(checkpoint),
        "input_samples": int(det.input_samples),
        "training": {"command": command, "seed": config.seed, "config": config.to_dict(), **data},
        "metrics": {k: v for k, v in metrics.items() if v is not None},
        "calibration": calibration.to_dict(),
    }
    path = out / "card.yaml"
    atomic_write_text(path, yaml.safe_dump(card, sort_keys=False))
    return path
