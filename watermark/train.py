"""Joint training of an AudioSeal generator + detector on speech (``voiceguard watermark train``).

Each step: random 1 s crops, a random 16-bit message, the watermark added only on random segments
(so the detector learns localisation), one differentiable attack from the attack library on the whole
batch, then

    loss = detection BCE (per sample, against the mask) + msg_weight * message BCE (bits pooled over
           marked samples) + percept_weight * ramp * (multi-scale mel loss + loudness masking loss)

The watermark's level is not left to the generator: it is scaled to ``snr_db`` below the host (the
engine does the same per 1 s block), annealed from ``start_snr_db`` to ``target_snr_db``.  Left to
itself, the generator shrinks the watermark under the perceptual/level losses and drops the
message-dependent part before the detector learns to read it (bits stay at chance), so for the first
``freeze_generator_steps`` only the detector learns, on the random generator's marks.  The perceptual
terms ramp in after ``warmup_steps``; attacks after ``attack_start``.  Checkpoints are in audioseal's
format and resumable.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voiceguard.cards import load_verified, save_verified
from voiceguard.errors import VoiceguardError

from .models import build_detector, build_generator, eager, save_checkpoint, scale_to_snr, seanet_config
from voiceguard.audio import SAMPLE_RATE



class WatermarkTrainError(VoiceguardError):
    """Training cannot start or resume."""


# attack name -> parameters drawn per batch; all have torch twins (codecs: straight-through)
TRAIN_ATTACKS: dict[str, dict[str, Any]] = {
    "none": {},
    "white_noise": {"sigma": [0.001, 0.02]},
    "pink_noise": {"sigma": [0.001, 0.03]},
    "lowpass": {"cutoff_hz": [2000.0, 6000.0]},
    "highpass": {"cutoff_hz": [100.0, 1800.0]},
    "bandpass": {"low_hz": [300.0, 600.0], "high_hz": [3500.0, 6000.0]},
    "resample": {"rate_hz": 8000},
    "speed": {"factor": 1.1},  # factor drawn from SPEED_FACTORS (fast rational resampling)
    "echo": {"delay_s": [0.05, 0.5], "volume": [0.1, 0.5]},
    "smooth": {"window": 20},
    "gain": {"factor": [0.5, 1.5]},
    "requantize": {"bits": 8},
    "mp3": {"bitrate": "32k"},
    "aac": {"bitrate": "64k"},
}
CODEC_ATTACKS = ("mp3", "aac")
SPEED_FACTORS = (0.8, 0.85, 0.9, 0.95, 1.05, 1.1, 1.15, 1.2, 1.25)


@dataclass(frozen=True)
class WatermarkTrainConfig:
    data: tuple[str, ...]
    out: str
    steps: int = 3000
    batch_size: int = 8
    segment_seconds: float = 1.0
    lr: float = 1e-3
    seed: int = 0
    n_filters: int = 12
    dimension: int = 48
    lstm: int = 1
    warmup_steps: int = 1500  # perceptual losses start here and ramp in over ramp_steps
    ramp_steps: int = 1000
    target_snr_db: float = 28.0  # the watermark's level below the host, reached after snr_steps
    start_snr_db: float = 18.0
    snr_steps: int = 3000
    attack_start: int = 600  # clean batches before attacks begin (they ramp in over ramp_steps)
    partial_start: int = 400  # whole-clip marks only before this step, then half the clips partly marked
    codec_prob: float = 0.05
    attack_prob: float = 0.8
    checkpoint_every: int = 200
    msg_weight: float = 2.0
    freeze_generator_steps: int = 400  # the detector first learns to read a fixed (random) generator's marks
    percept_weight: float = 0.3
    threads: int = 0
    device: str = "auto"  # auto: the GPU when there is one
    attacks: tuple[str, ...] = field(default_factory=lambda: tuple(TRAIN_ATTACKS))
    #: the detector sees the (attacked) batch advanced by a random 0..shift_max-1 samples (issue #20: the
    #: shipped model, trained without it, reads wrong messages after sub-frame trims); 0 = off
    shift_max: int = 320

    def to_dict(self) -> dict:
        return asdict(self)

    def resume_key(self) -> dict:
        """What a resumed run must share with the original (the step budget and the hardware may change)."""
        return {k: v for k, v in self.to_dict().items() if k not in ("steps", "threads", "device")}


def load_training_audio(paths: list[str], *, min_seconds: float = 1.0) -> list[np.ndarray]:
    """Every audio file under ``paths`` as 16 kHz mono float32; unreadable files are skipped with a warning,
    files shorter than ``min_seconds`` are dropped."""
    import sys

    from voiceguard.audio import find_audio_files, load_audio
    from voiceguard.errors import AudioError

    files, problems = find_audio_files(list(paths))
    skipped = [f"{p.path}: {p.reason}" for p in problems]
    clips = []
    for f in files:
        try:
            x = load_audio(f, SAMPLE_RATE, mono=True)[0][0]
        except AudioError as e:
            skipped.append(str(e))
            continue
        if len(x) >= min_seconds * SAMPLE_RATE:
            clips.append(np.ascontiguousarray(x, dtype=np.float32))
    for line in skipped[:10]:
        print(f"voiceguard: warning: skipped {line}", file=sys.stderr)
    if len(skipped) > 10:
        print(f"voiceguard: warning: ... and {len(skipped) - 10} more unusable inputs", file=sys.stderr)
    if not clips:
        raise WatermarkTrainError(f"no usable audio of at least {min_seconds} s under {', '.join(map(str, paths))}")
    return clips


def random_mask(batch: int, n: int, rng: np.random.Generator, partial: float = 0.5) -> np.ndarray:
    """Per item: fully marked or unmarked (half each of ``1 - partial``), else 1-3 marked intervals."""
    mask = np.zeros((batch, n), dtype=np.float32)
    for i in range(batch):
        u = rng.random()
        if u < (1 - partial) / 2:
            mask[i] = 1
        elif u < 1 - partial:
            continue
        else:
            for _ in range(int(rng.integers(1, 4))):
                length = int(rng.uniform(0.15, 0.6) * n)
                start = int(rng.integers(0, n - length + 1))
                mask[i, start:start + length] = 1
    return mask


class _Losses:
    """Perceptual losses: multi-scale mel distance and a loudness masking loss (AudioSeal section 3.3)."""

    def __init__(self, sample_rate: int = SAMPLE_RATE, device: str = "cpu"):
        import torchaudio

        self.mels = [torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=n, hop_length=n // 4, n_mels=m,
                                                          power=1.0).to(device)
                     for n, m in ((256, 32), (512, 64), (1024, 64), (2048, 64))]

    def mel(self, x, y):
        import torch

        loss = 0.0
        for m in self.mels:
            a, b = m(x), m(y)
            loss = loss + (a - b).abs().mean() + (torch.log(a + 1e-5) - torch.log(b + 1e-5)).abs().mean()
        return loss / len(self.mels)

    @staticmethod
    def loudness(x, w, bands: int = 8, frame: int = 512):
        """Softplus of (watermark - host) energy in dB per band and frame: watermark hides under speech."""
        import torch
        import torch.nn.functional as F

        def band_energy(s):
            spec = torch.stft(s.reshape(-1, s.shape[-1]), frame, frame // 2, window=torch.hann_window(frame, device=s.device),
                              return_complex=True).abs().pow(2)
            f = spec.shape[1] // bands * bands
            return spec[:, :f].reshape(spec.shape[0], bands, -1, spec.shape[-1]).sum(2)

        ex, ew = band_energy(x), band_energy(w)
        diff = 10 * torch.log10(ew + 1e-10) - 10 * torch.log10(ex + 1e-10)
        weights = F.softmax(diff.flatten(1), dim=-1).detach()
        return (F.softplus(diff.flatten(1) + 20) * weights).sum(-1).mean()


def init_weights(model) -> None:
    """He-normal convolutions, zero biases.  With PyTorch's default init the SEANet's output barely depends
    on its (quiet, |x| ~ 0.1) input and the detector sits at 0.5 for thousands of steps."""
    import torch

    for m in model.modules():
        if isinstance(m, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
            mode = "fan_out" if isinstance(m, torch.nn.ConvTranspose1d) else "fan_in"
            torch.nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity="relu")
            if m.bias is not None:
                torch.nn.init.zeros_(m.bias)


def _snr_db(x, w):
    import torch

    return 10 * torch.log10(x.pow(2).sum(-1) / w.pow(2).sum(-1).clamp_min(1e-12)).clamp(max=80)


def random_shift(wav, mask, shift_max: int, rng: np.random.Generator):
    """Drop the first ``s`` samples of ``wav`` / ``mask`` ([B, 1, T] tensors), ``s`` drawn from
    [0, shift_max), and pad ``s`` zeros (unmarked) at the end: the mark no longer starts on the generator's
    frame grid, so the detector must learn every sub-frame offset.  ``shift_max`` <= 1: unchanged."""
    import torch.nn.functional as F

    if shift_max <= 1:
        return wav, mask
    s = int(rng.integers(0, shift_max))
    if s == 0:
        return wav, mask
    return F.pad(wav[..., s:], (0, s)), F.pad(mask[..., s:], (0, s))


def _attack(name: str, spec: dict, wav, mask, rng: np.random.Generator):
    """Apply one attack (torch twin) to ``wav`` [B, 1, T]; returns (attacked, mask aligned to it)."""
    import torch
    import torch.nn.functional as F

    from voiceguard.attacks import get_attack

    if name == "speed":
        spec = {"factor": float(rng.choice(SPEED_FACTORS))}
    attack = get_attack(name, seed=int(rng.integers(2**31 - 1)), **spec)
    params = attack.randomize_parameters(np.zeros((1, wav.shape[-1]), np.float32), SAMPLE_RATE)
    if name in CODEC_ATTACKS:  # ffmpeg takes at most 2 channels: code items one by one
        out = torch.stack([attack.apply_torch(wav[i], SAMPLE_RATE, params) for i in range(wav.shape[0])])
    else:
        out = attack.apply_torch(wav, SAMPLE_RATE, params)
    if out.shape[-1] != wav.shape[-1]:  # speed: the marked region moves with the audio
        mask = F.interpolate(mask, size=out.shape[-1], mode="nearest")
    return out, mask


def _start_run(config: WatermarkTrainConfig, resume: bool) -> Path:
    """The run folder, checked (a non-empty one only with ``resume``) and created; torch threads set; the
    training attacks checked."""
    import torch

    out = Path(config.out)
    if out.exists() and any(out.iterdir()) and not resume:
        raise WatermarkTrainError(f"{out} is not empty; pass --resume to continue it or choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    unknown = set(config.attacks) - set(TRAIN_ATTACKS)
    if unknown:
        raise WatermarkTrainError(f"unknown training attack(s) {sorted(unknown)}; known: {', '.join(TRAIN_ATTACKS)}")
    return out


def _build_models(config: WatermarkTrainConfig, model_cfg: dict, device):
    """(generator, detector, optimizer): He-initialised, the generator's output layer scaled so the watermark
    starts quiet (about -30 dB), on ``device``."""
    import torch

    gen, det = build_generator(model_cfg), build_detector(model_cfg)
    init_weights(gen)
    init_weights(det)
    with torch.no_grad():  # start the watermark quiet (about -30 dB), not as loud as the speech
        last = [m for m in gen.decoder.modules() if isinstance(m, torch.nn.Conv1d)][-1]
        last.weight.mul_(0.03)
    gen.to(device)
    det.to(device)
    opt = torch.optim.Adam(list(gen.parameters()) + list(det.parameters()), lr=config.lr)
    return gen, det, opt


def _resume_state(out: Path, config: WatermarkTrainConfig, gen, det, opt, device) -> int:
    """Load ``state.pt`` into the models and optimizer; returns the step it was saved at."""
    from voiceguard.errors import ModelCardError

    state_path = out / "state.pt"
    try:
        st = load_verified(state_path, map_location=device)
    except (ModelCardError, RuntimeError, OSError) as e:
        raise WatermarkTrainError(f"cannot resume from {state_path}: {e}") from None
    if st["config"] != config.resume_key():
        raise WatermarkTrainError(f"{out} was trained with another config; resume needs the same options")
    gen.load_state_dict(st["generator"])
    det.load_state_dict(st["detector"])
    opt.load_state_dict(st["optim"])
    return st["step"]


def _open_log(out: Path, step: int):
    """``log.jsonl`` for appending, cut back to the step resumed from (later steps are trained again)."""
    log_path = out / "log.jsonl"
    if log_path.is_file():
        from voiceguard.files import atomic_write_text

        kept = [ln for ln in log_path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
        atomic_write_text(log_path, "".join(ln + "\n" for ln in kept))
    return open(log_path, "a")


def _draw_batch(config: WatermarkTrainConfig, clips: list[np.ndarray], n: int, step: int,
                rng: np.random.Generator, device):
    """(x [B, 1, n], msg [B, 16], mask [B, 1, n]): random crops at random levels, messages, marked regions."""
    import torch

    batch = []
    for _ in range(config.batch_size):
        c = clips[int(rng.integers(len(clips)))]
        s = int(rng.integers(0, len(c) - n + 1))
        seg = c[s:s + n] * float(10 ** (rng.uniform(-10, 6) / 20))
        batch.append(seg / max(1.0, float(np.abs(seg).max()) / 0.99))
    x = torch.from_numpy(np.stack(batch))[:, None, :].to(device)
    msg = torch.from_numpy(rng.integers(0, 2, (config.batch_size, 16))).to(device)
    mask = torch.from_numpy(random_mask(config.batch_size, n, rng,
                                        partial=0.5 if step >= config.partial_start else 0.0))[:, None, :]
    return x, msg, mask.to(device)


def train_watermark(config: WatermarkTrainConfig, *, resume: bool = False, progress: bool = True,
                    command: str | None = None) -> dict:
    """Train; write ``generator.pth``/``detector.pth`` (audioseal format), ``state.pt``, ``log.jsonl``.

    Returns ``{"step", "running" (smoothed metrics by name), "out"}``.  Raises ``WatermarkTrainError``: a
    non-empty ``out`` without ``resume``, an unknown attack, a run that cannot be resumed, no usable audio.
    """
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    out = _start_run(config, resume)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model_cfg = seanet_config(n_filters=config.n_filters, dimension=config.dimension, lstm=config.lstm)
    device = torch.device("cuda" if config.device == "auto" and torch.cuda.is_available()
                          else "cpu" if config.device == "auto" else config.device)
    gen, det, opt = _build_models(config, model_cfg, device)
    step = 0
    if resume and (out / "state.pt").is_file():
        step = _resume_state(out, config, gen, det, opt, device)
        rng = np.random.default_rng([config.seed, step])
        torch.manual_seed(config.seed + step)

    clips = load_training_audio(list(config.data), min_seconds=config.segment_seconds)
    n = int(config.segment_seconds * SAMPLE_RATE)
    losses = _Losses(device=str(device))
    attacks = [a for a in config.attacks if a not in CODEC_ATTACKS]
    codecs = [a for a in config.attacks if a in CODEC_ATTACKS]
    log = _open_log(out, step)
    bar = tqdm(total=config.steps, initial=step, disable=not progress, desc="watermark train", unit="step")
    running: dict[str, float] = {}
    info_path = out / "train.json"
    t0 = time.time() - (json.loads(info_path.read_text()).get("seconds", 0.0) if resume and info_path.is_file() else 0)
    gen.train()
    det.train()
    with eager():
        while step < config.steps:
            x, msg, mask = _draw_batch(config, clips, n, step, rng, device)
            ramp = min(1.0, max(0.0, (step - config.warmup_steps) / max(1, config.ramp_steps)))
            attack_ramp = min(1.0, max(0.0, (step - config.attack_start) / max(1, config.ramp_steps)))
            snr_target = config.start_snr_db + (config.target_snr_db - config.start_snr_db) * min(
                1.0, step / max(1, config.snr_steps))
            with torch.set_grad_enabled(step >= config.freeze_generator_steps):
                w = scale_to_snr(gen.get_watermark(x, message=msg), x, snr_target)
            y = x + w * mask
            if rng.random() < config.attack_prob * attack_ramp:
                name = (str(rng.choice(codecs)) if codecs and rng.random() < config.codec_prob
                        else str(rng.choice(attacks)))
                z, zmask = _attack(name, TRAIN_ATTACKS[name], y, mask, rng)
            else:
                name, z, zmask = "none", y, mask
            z, zmask = random_shift(z, zmask, config.shift_max, rng)
            logits = det.detector(z)  # [B, 2 + nbits, T']
            det_logit = logits[:, 1] - logits[:, 0]
            det_loss = F.binary_cross_entropy_with_logits(det_logit, zmask[:, 0])
            marked = zmask[:, 0].sum(-1)
            has = marked > 0
            bit_logits = (logits[:, 2:] * zmask).sum(-1) / marked.clamp_min(1)[:, None]
            msg_loss = (F.binary_cross_entropy_with_logits(bit_logits[has], msg[has].float())
                        if has.any() else det_loss * 0)
            snr = _snr_db(x[:, 0], w[:, 0])
            loss = det_loss + config.msg_weight * msg_loss
            percept = 0.0
            if ramp > 0:  # weight 0 before warmup_steps: not computed
                percept = losses.mel(x[:, 0], (x + w)[:, 0]) + 0.1 * losses.loudness(x[:, 0], w[:, 0])
                loss = loss + config.percept_weight * ramp * percept
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(gen.parameters()) + list(det.parameters()), 5.0)
            opt.step()
            step += 1

            with torch.no_grad():
                acc = ((det_logit > 0).float() == zmask[:, 0]).float().mean().item()
                bits = ((bit_logits[has] > 0).long() == msg[has]).float().mean().item() if has.any() else 0.0
            cur = {"loss": loss.item(), "det": det_loss.item(), "msg": msg_loss.item(), "acc": acc, "bits": bits,
                   "snr": snr.mean().item(), "percept": float(percept)}
            for k, v in cur.items():
                running[k] = 0.98 * running.get(k, v) + 0.02 * v
            bar.set_postfix({k: f"{running[k]:.3f}" for k in ("det", "acc", "bits", "snr")})
            bar.update(1)
            log.write(json.dumps({"step": step, "attack": name, "ramp": ramp, **cur}) + "\n")
            if step % config.checkpoint_every == 0 or step == config.steps:
                log.flush()
                _save(out, gen, det, opt, step, config, model_cfg, running, time.time() - t0, command)
    bar.close()
    log.close()
    return {"step": step, "running": running, "out": str(out)}


def _save(out: Path, gen, det, opt, step: int, config: WatermarkTrainConfig, model_cfg: dict,
          running: dict, seconds: float, command: str | None = None) -> None:
    import torch

    from voiceguard.files import atomic_write_text

    save_checkpoint(out / "generator.pth", gen, {**model_cfg, "snr_db": config.target_snr_db})
    save_checkpoint(out / "detector.pth", det, model_cfg)
    save_verified({"generator": gen.state_dict(), "detector": det.state_dict(), "optim": opt.state_dict(),
                   "step": step, "config": config.resume_key()}, out / "state.pt")
    info = {"config": config.to_dict(), "step": step, "running": running, "seconds": round(seconds, 1),
            "torch_threads": torch.get_num_threads(), "seed": config.seed,
            "device": str(next(gen.parameters()).device), "command": command}
    atomic_write_text(out / "train.json", json.dumps(info, indent=2))
