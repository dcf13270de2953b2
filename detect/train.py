"""Training detectors on ASVspoof-style protocols: seeded, class-weighted, augmented with the attack
library, early stopping on dev EER, checkpoint + resume, then calibration and a model card.

Layout written to ``out``: ``model.pt`` (best weights, state_dict), ``card.yaml``, ``last.pt`` (resume
state with the per-epoch history).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from voiceguard.attacks import ATTACKS, get_attack
from voiceguard.audio import SAMPLE_RATE, audio_info, load_audio
from voiceguard.cards import load_verified, save_card, save_verified, sha256_file
from voiceguard.errors import VoiceguardError, preview
from voiceguard.protocols import Trial, check_audio_files, read_protocol

from .base import Detector, FittedDetector, NetworkDetector
from .batch import MIN_SECONDS, _prefetched, score_files
from .models import build_detector
from .scoring import Calibration, fit_calibration, fit_window, window_starts

#: the shipped operating point's target: at most this share of dev bona fide files in every channel condition
#: called spoof (``Calibration.operating_point``)
BONAFIDE_FA = 0.01
#: ``partial-spoof`` needs a flagged stretch of this many windows' length (``Calibration.window``)
MIN_FLAGGED_WINDOWS = 1.5

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
    views: int = 1  # features training: crops (each augmented with augment_prob) cached per training file
    feature_cache: str | None = None  # features training: folder of cached features (default: OUT/features)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["augment"] = list(self.augment)
        return d


@dataclass(frozen=True)
class TrainData:
    """The trials of a run: the training protocol, and a dev protocol for early stopping + calibration.

    Audio files are ``audio_dir/<utt><ext>`` (``dev_audio_dir`` defaults to ``audio_dir``);
    ``protocol_format`` (both protocols): ``auto`` (sniffed) or a ``voiceguard.protocols.READERS`` name."""

    protocol: str | os.PathLike
    audio_dir: str | os.PathLike | None = None
    dev_protocol: str | os.PathLike | None = None
    dev_audio_dir: str | os.PathLike | None = None
    ext: str = ".flac"
    protocol_format: str = "auto"

    @property
    def dev_dir(self) -> str | os.PathLike | None:
        return self.dev_audio_dir if self.dev_audio_dir is not None else self.audio_dir


@dataclass(frozen=True)
class EpochLog:
    """One epoch: mean training loss, dev EER (a fraction; the loss without dev data), wall seconds, learning
    rate.  A fitted detector has one entry, epoch 0, with loss NaN."""

    epoch: int
    loss: float
    dev_eer: float
    seconds: float
    lr: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TrainResult:
    """What ``train_detector`` wrote (paths as strings) and how the kept model did (best epoch from 0)."""

    out_dir: str
    checkpoint: str
    card: str
    best_epoch: int
    best_dev_eer: float
    history: tuple[EpochLog, ...]
    calibration: Calibration

    def to_dict(self) -> dict:
        """Plain JSON data; NaN (no training loss for a fitted detector, no dev EER without dev data) -> None."""
        def finite(d: dict) -> dict:
            return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in d.items()}

        return finite({"out_dir": self.out_dir, "checkpoint": self.checkpoint, "card": self.card,
                       "best_epoch": self.best_epoch, "best_dev_eer": self.best_dev_eer,
                       "history": [finite(h.to_dict()) for h in self.history],
                       "calibration": self.calibration.to_dict()})


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
            params[k] = parse_value(v)
        out.append([(name, params)])
    return out


def parse_value(v: str) -> Any:
    """A ``key=value`` option's value: an int, else a float, else the string (``"3"`` -> 3, ``"1e-3"`` -> 0.001)."""
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

        x = training_crop(self.trials[i], self.audio_dir, self.ext, self.win, self.augment, self.seed, self.epoch, i)
        return torch.from_numpy(x), int(self.trials[i].is_bonafide)


def training_crop(trial: Trial, audio_dir, ext: str, win: int, augment: "Augmenter", seed: int, round_: int,
                  index: int) -> np.ndarray:
    """Training example ``index`` of round ``round_`` (an epoch, or a cached feature view): a seeded random crop of
    ``win`` samples, augmented, repeat-padded when short; float32 ``[win]``; seed = (seed, round, index)."""
    item_seed = ((seed * 1_000_003 + round_) * 1_000_003 + index) % (2 ** 31)
    rng = np.random.default_rng(item_seed)
    x = _read(trial, audio_dir, ext)
    if x.size > win:
        start = int(rng.integers(0, x.size - win + 1))
        x = x[start:start + win]
    return np.ascontiguousarray(fit_window(augment(x, item_seed + 1), win), dtype=np.float32)


def _seeded_subset(trials: list[Trial], n: int | None, seed: int) -> list[Trial]:
    if n is None or n >= len(trials):
        return trials
    idx = np.random.default_rng(seed).permutation(len(trials))[:n]
    return [trials[i] for i in sorted(idx)]


# --------------------------------------------------------------------------------------------- a run
@dataclass
class _Run:
    """One training run, its inputs resolved and checked: what a trainer needs besides the detector."""

    config: TrainConfig
    data: TrainData
    train: list[Trial]
    dev: list[Trial] | None
    out: Path
    augment: Augmenter
    device: str
    resume: bool
    progress: bool
    name: str | None
    command: str | None

    @property
    def checkpoint(self) -> Path:
        return self.out / "model.pt"

    @property
    def last(self) -> Path:
        return self.out / "last.pt"


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _prepare_out(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse a resume without state and an ``out`` that already holds a model; then create ``out``."""
    last = out / "last.pt"
    if resume and not last.is_file():
        raise TrainError("nothing to resume: no last.pt here (check --out)", source=out)
    existing = [p.name for p in (out / "model.pt", last, out / "card.yaml") if p.exists()]
    if existing and not resume and not overwrite:
        raise TrainError(f"already holds a trained model ({', '.join(existing)}); use --resume to continue it, "
                         "--overwrite to replace it, or another --out", source=out)
    out.mkdir(parents=True, exist_ok=True)


def _load_data(config: TrainConfig, data: TrainData) -> tuple[list[Trial], list[Trial] | None]:
    """The training trials (the seeded ``max_train`` subset) and the dev trials (None without a dev protocol),
    every audio file checked."""
    train = _seeded_subset(load_trials(data.protocol, data.audio_dir, data.ext, data.protocol_format),
                           config.max_train, config.seed)
    _check_two_classes(train, f"{data.protocol} (--max-train {config.max_train} subset)")
    dev = load_trials(data.dev_protocol, data.dev_dir, data.ext, data.protocol_format) if data.dev_protocol \
        else None
    return train, dev


def dev_scores(detector: Detector, trials: list[Trial], audio_dir, ext: str) -> np.ndarray:
    """Each trial's file score (mean window score) exactly as ``scan`` and ``detect score`` compute it.
    A network must be in eval mode (``NeuralDetector`` is, unless a trainer switched it)."""
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


def _calibrate(scores: np.ndarray, run: _Run, *, window_scores: np.ndarray | None = None,
               window_counts: np.ndarray | None = None, window_s: float = 4.0) -> Calibration:
    """The dev-set calibration of ``scores`` (one per dev trial), with the operating point at
    ``BONAFIDE_FA`` bona fide false alarms in every dev channel condition; with the dev ``window_scores``
    (``window_counts`` per trial) also the window rule for ``partial-spoof`` (``fit_window_rule``)."""
    from .scoring import fit_window_rule

    lab = np.array([t.is_bonafide for t in run.dev])
    conditions = [t.condition or "clean" for t in run.dev]
    cal = fit_calibration(scores[lab], scores[~lab], fitted_on=str(run.data.dev_protocol),
                          bonafide_conditions=[c for c, b in zip(conditions, lab) if b], bonafide_fa=BONAFIDE_FA)
    if window_scores is None:
        return cal
    wlab = np.repeat(lab, window_counts)
    wcond = np.repeat(np.array(conditions), window_counts)
    rule = fit_window_rule(window_scores[wlab], window_scores[~wlab], wcond[wlab], bonafide_fa=BONAFIDE_FA,
                           min_flagged_s=MIN_FLAGGED_WINDOWS * window_s)
    return dataclasses.replace(cal, window=rule)


def train_detector(config: TrainConfig, data: TrainData, out_dir: str | os.PathLike, *, resume: bool = False,
                   overwrite: bool = False, name: str | None = None, command: str | None = None,
                   progress: bool = True) -> TrainResult:
    """Train ``config.model`` on ``data``, keep the best dev-EER epoch, calibrate on dev, write ``model.pt`` +
    ``card.yaml`` (and ``last.pt`` for networks) to ``out_dir``.

    The trainer is the detector's ``training`` kind: ``fit`` (one pass, ``FittedDetector.fit``), ``epochs`` (the
    epoch loop over a ``NetworkDetector``'s module) or ``features`` (the epoch loop over the head of a module with a
    frozen, cached front-end; ``views`` / ``feature_cache``).  ``name``: the card's model name;
    ``command``: the command line recorded in the card.  Raises ``TrainError`` (bad start, bad data, corrupt
    resume state), ``UnknownNameError`` (unknown model) or ``ModelCardError`` (bad model config)."""
    import torch

    out = Path(out_dir)
    _prepare_out(out, resume, overwrite)
    train, dev = _load_data(config, data)
    run = _Run(config, data, train, dev, out, Augmenter(parse_augment(config.augment), config.augment_prob),
               _device(config.device), resume, progress, name, command)
    torch.manual_seed(config.seed)
    det = build_detector(config.model, config.model_config)
    return TRAINERS[det.training](det, run)


# --------------------------------------------------------------------------------------------- fit once
def _fit_once(det: FittedDetector, run: _Run) -> TrainResult:
    """GMM baselines: one EM fit (no epochs); augmentation applies once per training file."""
    config, data = run.config, run.data
    if "seed" not in config.model_config:
        det.seed = config.seed
    audio = [run.augment(_read(t, data.audio_dir, data.ext), config.seed + i) for i, t in enumerate(run.train)]
    t0 = time.time()
    det.fit([a for a, t in zip(audio, run.train) if t.is_bonafide],
            [a for a, t in zip(audio, run.train) if not t.is_bonafide])
    _save(det.state_dict(), run.checkpoint)
    calibration, dev_eer = Calibration(), math.nan
    if run.dev is not None:
        s = dev_scores(det, run.dev, data.dev_dir, data.ext)
        dev_eer = _eer(s, run.dev)
        calibration = _calibrate(s, run)
    log = EpochLog(0, math.nan, dev_eer, round(time.time() - t0, 1), 0.0)
    card = write_card(run.out, run.name or config.model, config, run.checkpoint, calibration,
                      {"dev_eer": None if math.isnan(dev_eer) else dev_eer},
                      data={"n_train": len(run.train)}, command=run.command)
    return TrainResult(str(run.out), str(run.checkpoint), str(card), 0, dev_eer, (log,), calibration)


# --------------------------------------------------------------------------------------------- epochs
@dataclass
class _Progress:
    """Where the epoch loop stands (restored from ``last.pt`` on resume)."""

    start_epoch: int = 0
    best: float = math.inf
    best_epoch: int = -1
    history: list[EpochLog] = field(default_factory=list)

    @property
    def bad_epochs(self) -> int:
        return sum(1 for h in self.history if h.epoch > self.best_epoch)


def _balanced_loss(is_bonafide: Sequence[bool], device: str):
    """Cross-entropy with class weights such that each class weighs half (one flag per training example)."""
    import torch

    n, n_bona = len(is_bonafide), int(sum(bool(b) for b in is_bonafide))
    weights = torch.tensor([n / (2 * (n - n_bona)), n / (2 * n_bona)], dtype=torch.float32, device=device)
    return torch.nn.CrossEntropyLoss(weight=weights)


def _resume(run: _Run, module, opt) -> _Progress:
    """Restore weights, optimizer and progress from ``last.pt``; refuse a file written with another config."""
    try:
        state = load_verified(run.last, map_location=run.device)
        same = state.get("config") == _resume_key(run.config)
        if same:
            module.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
    except Exception as e:  # noqa: BLE001 - a corrupt or foreign file: one clear message
        raise TrainError(f"cannot resume from this file ({type(e).__name__}: {str(e)[:200]})",
                         source=run.last) from None
    if not same:
        raise TrainError("resume state was written with a different training config (only --epochs, "
                         "--patience, --workers and --device may change)", source=run.last)
    return _Progress(state["epoch"] + 1, state["best"], state["best_epoch"],
                     [EpochLog(**h) for h in state["history"]])


def _train_one_epoch(module, opt, loss_fn, dataset: _TrainSet, epoch: int, run: _Run) -> float:
    """One pass over the (re-cropped, re-augmented) training set; returns the mean training loss."""
    import torch
    from tqdm import tqdm

    config = run.config
    dataset.epoch = epoch
    torch.manual_seed(config.seed * 1000 + epoch)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=config.batch_size, shuffle=True, drop_last=len(run.train) > config.batch_size,
        num_workers=config.workers, generator=torch.Generator().manual_seed(config.seed * 1000 + epoch),
        persistent_workers=False)
    module.train()
    total, count = 0.0, 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", file=sys.stderr, disable=not run.progress,
               leave=False)
    for x, y in bar:
        x, y = x.to(run.device), y.to(run.device)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(module(x), y)
        loss.backward()
        opt.step()
        total, count = total + loss.item() * len(y), count + len(y)
        bar.set_postfix(loss=f"{total / count:.4f}")
    module.eval()
    return total / max(count, 1)


def _train_epochs(det: NetworkDetector, run: _Run) -> TrainResult:
    """Networks: AdamW with a cosine learning rate, dev EER after each epoch (the training loss without a dev
    set), early stopping after ``patience`` epochs without improvement; best weights in ``model.pt``, resume
    state in ``last.pt``."""
    import torch

    config, data = run.config, run.data
    det.to(run.device)
    module = det.module
    loss_fn = _balanced_loss([t.is_bonafide for t in run.train], run.device)
    opt = torch.optim.AdamW(module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    state = _resume(run, module, opt) if run.resume else _Progress()
    dataset = _TrainSet(run.train, data.audio_dir, data.ext, int(module.input_samples), run.augment, config.seed)
    dev_eer = (lambda: _eer(dev_scores(det, run.dev, data.dev_dir, data.ext), run.dev)) if run.dev is not None \
        else None
    state = _epoch_loop(run, module, opt, state,
                        lambda epoch: _train_one_epoch(module, opt, loss_fn, dataset, epoch, run), dev_eer)
    calibration = Calibration()
    if run.dev is not None:
        calibration = _calibrate(dev_scores(det, run.dev, data.dev_dir, data.ext), run)
    return _finish(run, state, calibration)


def _epoch_loop(run: _Run, module, opt, state: _Progress, train_epoch: Callable[[int], float],
                dev_eer: Callable[[], float] | None) -> _Progress:
    """The epoch loop every network trainer shares: cosine learning rate, ``train_epoch(epoch)`` (-> mean training
    loss), the dev EER (``dev_eer()``; the training loss without dev data) picks the best epoch (its weights in
    ``model.pt``), early stopping after ``patience`` epochs without improvement, resume state in ``last.pt`` after
    every epoch.  Returns the progress with the best weights loaded into ``module``."""
    import torch

    config = run.config
    bad_epochs = state.bad_epochs
    for epoch in range(state.start_epoch, config.epochs):
        if bad_epochs >= config.patience:
            break
        t0 = time.time()
        lr = cosine_lr(config.lr, epoch, config.epochs)
        for group in opt.param_groups:
            group["lr"] = lr
        loss_avg = train_epoch(epoch)
        eer = dev_eer() if dev_eer is not None else loss_avg  # without dev data, the training loss picks the epoch
        state.history.append(EpochLog(epoch, round(loss_avg, 6), round(eer, 6), round(time.time() - t0, 1), lr))
        if eer < state.best:
            state.best, state.best_epoch, bad_epochs = eer, epoch, 0
            _save(module.state_dict(), run.checkpoint)
        else:
            bad_epochs += 1
        _save({"model": module.state_dict(), "optimizer": opt.state_dict(),
               "epoch": epoch, "best": state.best, "best_epoch": state.best_epoch,
               "history": [h.to_dict() for h in state.history],
               "config": _resume_key(config)}, run.last)
        if run.progress:
            print(f"epoch {epoch + 1}: loss {loss_avg:.4f}, dev EER {eer * 100:.2f} %"
                  f"{' (best)' if state.best_epoch == epoch else ''} [{state.history[-1].seconds:.1f} s]",
                  file=sys.stderr)
    if state.best_epoch < 0:
        raise TrainError("no epoch was trained (already finished? remove --resume or raise --epochs)",
                         source=run.out)
    module.load_state_dict(torch.load(run.checkpoint, map_location=run.device, weights_only=True))
    return state


def _finish(run: _Run, state: _Progress, calibration: Calibration, **metrics: Any) -> TrainResult:
    """Write the card of a network run (best epoch, dev EER, ``metrics``) and return its result."""
    config, data = run.config, run.data
    card = write_card(run.out, run.name or f"{config.model}-{Path(data.protocol).stem}", config, run.checkpoint,
                      calibration,
                      {"best_epoch": state.best_epoch, "dev_eer": state.best if run.dev is not None else None,
                       **metrics},
                      data={"train_protocol": str(data.protocol), "n_train": len(run.train),
                            "dev_protocol": str(data.dev_protocol) if data.dev_protocol else None},
                      command=run.command)
    return TrainResult(str(run.out), str(run.checkpoint), str(card), state.best_epoch, state.best,
                       tuple(state.history), calibration)


def cosine_lr(base: float, epoch: int, epochs: int) -> float:
    """Cosine annealing from ``base`` (epoch 0) towards 0 (closed form: a resumed run continues exactly)."""
    return base * 0.5 * (1 + math.cos(math.pi * epoch / max(1, epochs)))


def _resume_key(config: TrainConfig) -> str:
    """The part of the config a resumed run must share (more epochs or another device are fine)."""
    d = {k: v for k, v in config.to_dict().items()
         if k not in ("epochs", "patience", "workers", "device", "feature_cache")
         and not (k == "views" and v == 1)}  # (the default left out: older resume states stay resumable)
    return json.dumps(d, sort_keys=True)


# --------------------------------------------------------------------------------------------- cached features
def _cache_key(module, what: dict) -> str:
    import hashlib

    text = json.dumps({"frontend": module.frontend_key(), **what}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _file_stamp(trials: list[Trial], audio_dir, ext: str) -> list:
    """(id, size, mtime in ns) of every file: a changed file invalidates a feature cache."""
    out = []
    for t in trials:
        st = os.stat(t.audio_path(audio_dir, ext))
        out.append((t.utt_id, st.st_size, st.st_mtime_ns))
    return out


def _extract(module, windows: Callable[[], Iterable[np.ndarray]], n: int, device: str, desc: str,
             progress: bool, batch: int = 16):
    """Run ``module.features`` over ``n`` windows (yielded by ``windows()``) in batches; returns the stacked
    float16 tensors ``(hidden [n, ...], spec [n, S] or None)`` on the CPU."""
    import torch
    from tqdm import tqdm

    hs, ss, buf = [], [], []

    def run_batch():
        h, sp = module.features(torch.from_numpy(np.stack(buf)).to(device))
        hs.append(h.half().cpu())
        if sp is not None:
            ss.append(sp.half().cpu())
        buf.clear()

    for x in tqdm(windows(), total=n, desc=desc, unit="win", file=sys.stderr, disable=not progress, leave=False):
        buf.append(x)
        if len(buf) == batch:
            run_batch()
    if buf:
        run_batch()
    return torch.cat(hs), (torch.cat(ss) if ss else None)


def _cached(path: Path, rows: Callable[[dict], int | None], make: Callable[[], dict]) -> dict:
    """``make()``'s tensors, saved to / loaded from ``path`` (torch weights-only, memory-mapped; written atomically
    under a unique temporary name, so runs sharing a cache folder never collide).  A file that does not load, or
    whose ``rows(obj)`` (the number of feature rows it should hold, None when its shape is inconsistent) differs
    from its row count, is rebuilt, with a note."""
    import tempfile

    import torch

    if path.is_file():
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            expected = rows(obj)
            if len(obj["hidden"]) == expected:
                return obj
            reason = f"{len(obj['hidden'])} rows, expected {expected}"
        except Exception as e:  # noqa: BLE001 - a broken cache file is rebuilt, with a note
            reason = type(e).__name__
        print(f"voiceguard: rebuilding feature cache {path} ({reason})", file=sys.stderr)
    obj = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem + ".", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return obj


def _train_features(det: NetworkDetector, run: _Run) -> TrainResult:
    """Networks with a frozen front-end (``module.features``) and a trained ``head``: the front-end's output is
    computed once per training view (``views`` seeded crops per file, each augmented with ``augment_prob``) and
    per dev window (the windows ``scan`` scores), cached in ``feature_cache`` (default ``OUT/features``; keyed by
    the front-end, the files and the augmentation), then the head trains like ``_train_epochs`` (AdamW, cosine
    learning rate, dev EER per epoch, early stopping, ``last.pt`` resume state).  The dev scores are the mean
    window scores, equal to what ``scan`` computes for the same file."""
    import torch

    from .batch import decode

    config, data = run.config, run.data
    det.to(run.device)
    module = det.module
    win = int(module.input_samples)
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=config.lr,
                            weight_decay=config.weight_decay)
    state = _resume(run, module, opt) if run.resume else _Progress()  # a foreign last.pt fails before extraction
    cache_dir = Path(config.feature_cache) if config.feature_cache else run.out / "features"
    t_start = time.time()
    workers = max(1, config.workers)
    train_key = _cache_key(module, {"files": _file_stamp(run.train, data.audio_dir, data.ext), "seed": config.seed,
                                    "views": config.views, "augment": list(config.augment),
                                    "augment_prob": config.augment_prob})

    def train_windows():  # decoded + augmented in a bounded thread pool while the encoder runs
        jobs = [(i, v) for v in range(config.views) for i in range(len(run.train))]
        crop = lambda j: training_crop(run.train[j[0]], data.audio_dir, data.ext, win, run.augment,  # noqa: E731
                                       config.seed, j[1], j[0])
        for _, x in _prefetched(jobs, crop, workers):
            yield x

    def make_train() -> dict:
        h, sp = _extract(module, train_windows, len(run.train) * config.views, run.device, "train features",
                         run.progress)
        return {"hidden": h, "spec": sp}

    train_feats = _cached(cache_dir / f"train-{train_key}.pt", lambda _: len(run.train) * config.views, make_train)
    labels = torch.tensor([int(t.is_bonafide) for t in run.train] * config.views)
    dev_feats = None
    if run.dev is not None:
        dev_key = _cache_key(module, {"files": _file_stamp(run.dev, data.dev_dir, data.ext), "hop": win // 2})

        def make_dev() -> dict:
            counts: list[int] = []

            def dev_windows():
                for t in run.dev:
                    audio, _ = decode(t.audio_path(data.dev_dir, data.ext))
                    audio = np.asarray(audio, dtype=np.float32).ravel()
                    starts = window_starts(audio.size, win, win // 2)
                    counts.append(len(starts))
                    for s in starts:
                        yield fit_window(audio[s:s + win], win)

            h, sp = _extract(module, dev_windows, n_dev, run.device, "dev features", run.progress)
            return {"hidden": h, "spec": sp, "counts": torch.tensor(counts)}

        def dev_rows(obj: dict) -> int | None:
            counts = obj["counts"]
            return int(counts.sum()) if len(counts) == len(run.dev) else None

        n_dev = sum(_n_windows(t.audio_path(data.dev_dir, data.ext), win) for t in run.dev)  # for the progress bar
        dev_feats = _cached(cache_dir / f"dev-{dev_key}.pt", dev_rows, make_dev)
    feature_s = round(time.time() - t_start, 1)
    if run.progress:
        print(f"features: {len(labels)} training views, "
              f"{0 if dev_feats is None else int(dev_feats['counts'].sum())} dev windows [{feature_s:.0f} s]",
              file=sys.stderr)

    def head_scores(feats: dict) -> np.ndarray:
        """Window scores (logit bona fide - logit spoof) of cached features, in batches, eval mode."""
        module.eval()
        out = []
        with torch.inference_mode():
            for i in range(0, len(feats["hidden"]), 64):
                sp = feats["spec"][i:i + 64].to(run.device) if feats["spec"] is not None else None
                logits = module.head(feats["hidden"][i:i + 64].to(run.device), sp).float()
                out.append((logits[:, 1] - logits[:, 0]).cpu().numpy())
        return np.concatenate(out)

    def dev_file_scores() -> np.ndarray:
        w = head_scores(dev_feats)
        ends = np.cumsum(dev_feats["counts"].numpy())
        return np.array([w[a:b].mean() for a, b in zip(np.r_[0, ends[:-1]], ends)])

    loss_fn = _balanced_loss(labels.tolist(), run.device)

    def train_epoch(epoch: int) -> float:
        torch.manual_seed(config.seed * 1000 + epoch)
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(config.seed * 1000 + epoch))
        module.train()
        total = 0.0
        for i in range(0, len(order), config.batch_size):
            idx = order[i:i + config.batch_size]
            if len(idx) < 2:
                continue  # batch norm needs two examples
            sp = train_feats["spec"][idx].to(run.device) if train_feats["spec"] is not None else None
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(module.head(train_feats["hidden"][idx].to(run.device), sp), labels[idx].to(run.device))
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        module.eval()
        return total / len(labels)

    dev_eer = (lambda: _eer(dev_file_scores(), run.dev)) if run.dev is not None else None
    state = _epoch_loop(run, module, opt, state, train_epoch, dev_eer)
    calibration = Calibration()
    if run.dev is not None:
        calibration = _calibrate(dev_file_scores(), run, window_scores=head_scores(dev_feats),
                                 window_counts=dev_feats["counts"].numpy(), window_s=win / SAMPLE_RATE)
    return _finish(run, state, calibration, feature_seconds=feature_s)


def _n_windows(path, win: int) -> int:
    info = audio_info(path)
    n = int(round(info.frames * SAMPLE_RATE / info.sample_rate)) if info.frames else win
    return len(window_starts(n, win, win // 2))


#: ``Detector.training`` -> the trainer that runs it
TRAINERS: dict[str, Callable[[Any, _Run], TrainResult]] = {"fit": _fit_once, "epochs": _train_epochs,
                                                           "features": _train_features}


# --------------------------------------------------------------------------------------------- output
def _save(obj: Any, path: Path) -> None:
    save_verified(obj, path)


def write_card(out: Path, name: str, config: TrainConfig, checkpoint: Path, calibration: Calibration,
               metrics: dict, *, data: dict, command: str | None) -> Path:
    """Write ``out/card.yaml``, the model card of a trained model: architecture config (of ``config.model``
    built from ``config.model_config``), checkpoint file name + sha256, training record, ``metrics`` (None
    values left out) and the calibration.  Returns the card's path."""
    det = build_detector(config.model, config.model_config)
    card = {
        "name": name, "kind": "detector", "architecture": config.model, "config": det.config_dict(),
        "sample_rate": SAMPLE_RATE, "checkpoint": checkpoint.name, "sha256": sha256_file(checkpoint),
        "input_samples": int(det.input_samples),
        "training": {"command": command, "seed": config.seed, "config": config.to_dict(), **data},
        "metrics": {k: v for k, v in metrics.items() if v is not None},
        "calibration": calibration.to_dict(),
    }
    return save_card(out / "card.yaml", card)
