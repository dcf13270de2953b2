"""The report's watermark section: each engine marks the same seeded bona fide clips (random messages), then its
quality (SI-SNR, PESQ, STOI) and its detection under each attack of a suite (TPR, bit accuracy, FPR) are measured,
one cached stage per engine."""
from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np

from voiceguard.audio import SAMPLE_RATE, load_audio
from voiceguard.metrics.watermark import si_snr
from voiceguard.protocols import BONAFIDE

from .config import ReportConfig, ReportError, slug
from .data import EvalData
from .results import Results, WatermarkResult
from .stage import ReportContext, Section, Stage, file_seed

#: the attack suite of the watermark section when the config names none
DEFAULT_SUITE = "audioseal-paper"


def watermarker_identity(wm) -> dict:
    """What identifies a watermark engine's output: its settings and a digest of its network weights."""
    h = hashlib.sha256()
    for part in ("generator", "detector"):
        module = getattr(wm, part, None)
        if module is not None and hasattr(module, "state_dict"):
            for k, v in sorted(module.state_dict().items()):
                h.update(k.encode())
                h.update(v.detach().cpu().numpy().tobytes())
    return {"engine": wm.name, "model": wm.model, "threshold": wm.threshold, "strength": wm.strength,
            "snr_db": getattr(wm, "snr_db", None), "key": getattr(wm, "key", None), "weights": h.hexdigest()[:20]}


def perceptual_measures() -> bool:
    """PESQ and STOI are installed (the bench extra)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("pesq", "pystoi"))


def quality(clips: list[np.ndarray], marked: list[np.ndarray]) -> dict:
    """Quality of marked clips against the originals (16 kHz mono float32): ``{measure: {mean, min, n}}`` for
    SI-SNR (dB) and, when installed (``perceptual_measures``), wide-band PESQ and STOI; a clip PESQ or STOI cannot
    rate (e.g. no utterance) is left out of that measure."""
    q = {"si_snr": [si_snr(x, y) for x, y in zip(clips, marked)]}
    if perceptual_measures():  # optional (pip install -e .[bench])
        from pesq import pesq
        from pystoi import stoi

        for name, fn in (("pesq", lambda x, y: pesq(SAMPLE_RATE, x, np.clip(y, -1, 1), "wb")),
                         ("stoi", lambda x, y: stoi(x, y, SAMPLE_RATE, extended=False))):
            vals = []
            for x, y in zip(clips, marked):
                try:
                    vals.append(float(fn(x, y)))
                except Exception:  # noqa: BLE001  (e.g. PESQ on a clip with no utterance)
                    pass
            if vals:
                q[name] = vals
    return {k: {"mean": float(np.mean(v)), "min": float(np.min(v)), "n": len(v)} for k, v in q.items()}


def attack_rates(wm, row, clips: list[np.ndarray], marked: list[np.ndarray], messages: list[int], seed: int) -> dict:
    """One attack condition (a suite row) applied alike to each marked clip and to its original (the i-th with
    ``file_seed(seed, i)``): ``{tpr, fpr, bit_acc, n}`` as fractions of the clips, or ``{unavailable: why}``
    when the attack cannot run here or fails (one failing condition is reported, the evaluation goes on)."""
    from voiceguard.attacks import AttackUnavailable

    tp = fp = 0
    acc = []
    try:
        for i, (x, y, m) in enumerate(zip(clips, marked, messages)):
            s = file_seed(seed, i)
            ya = np.asarray(row.build(seed=s)(y, SAMPLE_RATE), np.float32).ravel()
            xa = np.asarray(row.build(seed=s)(x, SAMPLE_RATE), np.float32).ravel()
            r = wm.detect(ya, SAMPLE_RATE, expected=m)
            tp += int(r.detected)
            acc.append(r.bits_matched / len(r.bits))
            fp += int(wm.detect(xa, SAMPLE_RATE).detected)
    except AttackUnavailable as e:
        return {"unavailable": str(e)}
    except Exception as e:  # noqa: BLE001
        return {"unavailable": f"failed: {type(e).__name__}: {e}"}
    n = len(clips)
    return {"tpr": tp / n, "fpr": fp / n, "bit_acc": float(np.mean(acc)), "n": n}


def watermark_robustness(wm, clips: list[np.ndarray], suite, seed: int) -> dict:
    """Mark ``clips`` (16 kHz mono float32) with seeded random messages (``default_rng(seed)``), then measure the
    marks' quality and their detection under each attack of ``suite``: the JSON of a ``WatermarkResult``."""
    rng = np.random.default_rng(seed)
    messages = [int(m) for m in rng.integers(0, 2 ** wm.nbits, len(clips))]
    marked = [wm.embed(x, SAMPLE_RATE, m) for x, m in zip(clips, messages)]
    q = quality(clips, marked)
    rows = {row.label: attack_rates(wm, row, clips, marked, messages, seed) for row in suite.rows}
    return {"engine": wm.name, "model": wm.model, "threshold": wm.threshold, "n_files": len(clips),
            "quality": q, "attacks": rows}


def pick_clips(data: EvalData, n: int, seed: int, min_seconds: float = 0.0) -> list[str]:
    """Paths of ``n`` seeded bona fide clips, skipping those shorter than ``min_seconds`` (the engines' minimum):
    the seeded order is walked until ``n`` clips fit, so when the first ``n`` all fit the pick is the one made
    without the condition. Raises ReportError when none fits."""
    from voiceguard.audio import audio_info

    def fits(t) -> bool:  # a header that does not state its length (-1 frames) is kept: embed then says why
        i = audio_info(data.path(t))
        return min_seconds <= 0 or i.frames < 0 or i.frames >= min_seconds * i.sample_rate

    bona = [t for t in data.trials if t.label == BONAFIDE]
    pick = []
    for i in np.random.default_rng(seed).permutation(len(bona)).tolist():
        if len(pick) == n:
            break
        if fits(bona[i]):
            pick.append(i)
    if not pick:
        raise ReportError(f"no bona fide clip is long enough to watermark (minimum {min_seconds:g} s)",
                          source=data.root)
    return [str(data.path(bona[i])) for i in sorted(pick)]


def load_clips(paths: list[str]) -> list[np.ndarray]:
    """The files at 16 kHz mono, float32 ``[n]`` each."""
    return [load_audio(p, SAMPLE_RATE, mono=True)[0][0] for p in paths]


def engine_stage(ctx: ReportContext, engine: str, wm, paths: list[str], suite) -> Stage:
    """One engine over the picked clips and the suite; keyed by the engine's identity (settings, weights), the
    seed, the files, whether PESQ / STOI are installed and the suite's rows."""
    return Stage(f"watermark.{slug(engine)}",
                 {"engine": watermarker_identity(wm), "seed": ctx.cfg.seed,
                  "files": [ctx.data.file_key(p) for p in paths], "pesq_stoi": perceptual_measures(),
                  "suite": [[r.label, r.attack, r.params] for r in suite.rows]},
                 lambda: watermark_robustness(wm, load_clips(paths), suite, ctx.cfg.seed))


def run_watermark(ctx: ReportContext, results: Results) -> Results:
    """Every engine of the config on the same clips, under the config's suite (default ``DEFAULT_SUITE``)."""
    from voiceguard.attacks import load_suite
    from voiceguard.watermark import load_watermarker

    w = ctx.cfg.watermark
    suite = w.suite or load_suite(DEFAULT_SUITE)
    wms = {engine: load_watermarker(engine) for engine in w.engines}
    paths = pick_clips(ctx.data, w.files, ctx.cfg.seed,
                       max(float(getattr(wm, "min_seconds", 0.0) or 0.0) for wm in wms.values()))
    got = {engine: WatermarkResult.from_dict(ctx.cache.run(engine_stage(ctx, engine, wm, paths, suite)))
           for engine, wm in wms.items()}
    return replace(results, watermark=got, watermark_suite=suite.name)


def _wanted(cfg: ReportConfig) -> bool:
    return cfg.watermark is not None


WATERMARK = Section("watermark", _wanted, run_watermark)

__all__ = ["DEFAULT_SUITE", "WATERMARK", "attack_rates", "engine_stage", "load_clips", "perceptual_measures",
           "pick_clips", "quality", "run_watermark", "watermark_robustness", "watermarker_identity"]
