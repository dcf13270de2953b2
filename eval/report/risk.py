"""The report's voiceprint-risk sections: the project's own ASV under spoofing (EER, spoofs accepted; its scores
also give the detectors' t-DCF when the organisers' are not there) and re-identification of seeded speakers'
probes, original, watermarked and attacked, one cached stage per check and condition."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from voiceguard.audio import SAMPLE_RATE, load_audio, save_audio
from voiceguard.protocols import BONAFIDE, Trial

from .config import ReportConfig, ReportError, slug
from .data import EvalData
from .results import AsvResult, ReidCondition, Results
from .stage import ReportContext, Section, Stage, file_seed, unavailable


def asv_trials(data: EvalData, subset_only: bool) -> list:
    """The ASV trial list; with ``subset_only`` only the trials whose utterance is in the (subset) eval set."""
    from voiceguard.eval.risk import read_asv_trials

    trials = read_asv_trials(data.asv_trials)
    if subset_only:
        keep = {t.utt_id for t in data.trials}
        trials = [t for t in trials if t.utt_id in keep]
        if not trials:
            raise ReportError("no ASV trial is in the eval subset (data.max_trials): raise it or turn risk.asv off",
                              source=data.asv_trials)
    return trials


def own_asv_check(data: EvalData, trials: list, backend: str, out: Path) -> dict:
    """The project's own ASV (speaker embeddings, cosine): EER, spoof acceptance, and its score file."""
    from voiceguard.eval.risk import asv_check, load_embedder, read_asv_enrollment

    enrollment: dict[str, list[str]] = {}
    for p in data.asv_enroll:
        for spk, utts in read_asv_enrollment(p).items():
            enrollment.setdefault(spk, []).extend(utts)
    enrollment = {s: u for s, u in enrollment.items() if s in {t.speaker for t in trials}}
    # cache=False: the shared embedding cache (~/.cache/voiceguard/embeddings) is keyed by weights and file
    # content only, so it may hold embeddings made by other library or decoder versions; this stage is cached
    # itself, under a key that names the environment
    res = asv_check(enrollment, trials, data.audio_dir, load_embedder(backend), ext=data.ext, out=out,
                    overwrite=True, cache=False)
    result = res.to_dict()
    result["score_file"] = f"{out.parent.name}/{out.name}"  # relative to the work folder: results stay comparable
    return {"result": result, "scores": {k: v.tolist() for k, v in res.scores.items()}}


def reid_sets(data: EvalData, n_speakers: int, seed: int) -> tuple[list, list]:
    """(enrolment, probes) as LabeledFiles: the ASV enrolment utterances of ``n_speakers`` seeded eval speakers
    (or, without ASV lists, the first half of each speaker's bona fide trials) and their bona fide trials."""
    from voiceguard.eval.risk import LabeledFile, read_asv_enrollment

    by_spk: dict[str, list[Trial]] = {}
    for t in data.trials:
        if t.label == BONAFIDE and t.speaker != "-":
            by_spk.setdefault(t.speaker, []).append(t)
    enrol_lists: dict[str, list[str]] = {}
    for p in data.asv_enroll:
        for spk, utts in read_asv_enrollment(p).items():
            enrol_lists.setdefault(spk, []).extend(utts)
    if enrol_lists:  # probes never include a speaker's enrolment utterances
        enrolled = {s: set(u) for s, u in enrol_lists.items()}
        by_spk = {s: [t for t in ts if t.utt_id not in enrolled.get(s, ())] for s, ts in by_spk.items()}
        eligible = sorted(s for s, ts in by_spk.items() if len(ts) >= 1 and s in enrol_lists)
    else:
        eligible = sorted(s for s, ts in by_spk.items() if len(ts) >= 4)
    if len(eligible) < 2:
        raise ReportError(f"re-identification needs >= 2 eval speakers with enough bona fide files; found "
                          f"{len(eligible)}", source=data.root)
    chosen = sorted(np.random.default_rng(seed).permutation(eligible)[:n_speakers].tolist())
    enroll, probe = [], []
    for s in chosen:
        ts = by_spk[s]
        if enrol_lists:
            enroll += [LabeledFile(str(data.audio_dir / f"{u}{data.ext}"), s) for u in enrol_lists[s]]
            probe += [LabeledFile(str(data.path(t)), s) for t in ts]
        else:
            half = len(ts) // 2
            enroll += [LabeledFile(str(data.path(t)), s) for t in ts[:half]]
            probe += [LabeledFile(str(data.path(t)), s) for t in ts[half:]]
    return enroll, probe


def reid_condition(enroll: list, probe: list, transform: Callable[[np.ndarray, int], np.ndarray] | None,
                   folder: Path, backend: str, seed: int) -> dict:
    """Re-identification of the probes (processed by ``transform`` first, written under ``folder``)."""
    from voiceguard.eval.risk import LabeledFile, load_embedder, reid_check

    if transform is not None:
        folder.mkdir(parents=True, exist_ok=True)
        processed = []
        for i, f in enumerate(probe):
            x = load_audio(f.path, SAMPLE_RATE, mono=True)[0][0]
            out = folder / f"{i:04d}_{Path(f.path).stem}.flac"
            save_audio(out, np.clip(transform(x, i), -1, 1)[None], SAMPLE_RATE, overwrite=True)
            processed.append(LabeledFile(str(out), f.speaker))
        probe = processed
    res = reid_check(enroll, probe, load_embedder(backend), seed=seed, cache=False)  # see own_asv_check
    ignorant = res.attackers[0]
    return {"result": res.to_dict(), "mated": ignorant.mated.tolist(), "nonmated": ignorant.nonmated.tolist()}


# --------------------------------------------------------------------------- ASV section
def _embedder_fingerprint(backend: str) -> str:
    """The speaker embedder's identity, including its weights' digest (part of the risk stages' keys)."""
    from voiceguard.eval.risk import load_embedder

    return load_embedder(backend).fingerprint


def asv_stage(ctx: ReportContext, trials: list) -> Stage:
    """The own ASV check; keyed by the embedder, the trials and the enrolment lists."""
    backend = ctx.cfg.risk.backend
    return Stage("risk.asv", {"backend": _embedder_fingerprint(backend),
                              "trials": [(t.speaker, t.utt_id, t.source, t.key) for t in trials],
                              "enroll": [p.read_text() for p in ctx.data.asv_enroll]},
                 lambda: own_asv_check(ctx.data, trials, backend, ctx.work / "scores" / "asv.eval.txt"))


NO_ASV_LISTS = ("the data has no ASV enrolment and trial lists (data.asv_enroll, data.asv_trials), so the "
                "ASV-under-spoofing check did not run")


def run_asv(ctx: ReportContext, results: Results) -> Results:
    """The own ASV check when the data has ASV lists; else the reason it was skipped."""
    if not (ctx.data.asv_enroll and ctx.data.asv_trials):
        ctx.log(f"risk.asv: skipped: {NO_ASV_LISTS}")
        return replace(results, asv_skipped=NO_ASV_LISTS)
    trials = asv_trials(ctx.data, subset_only=ctx.cfg.data.max_trials is not None)
    got = ctx.cache.run(asv_stage(ctx, trials))
    return replace(results, asv=AsvResult.from_dict(got["result"], got["scores"]))


def _asv_wanted(cfg: ReportConfig) -> bool:
    return bool(cfg.risk and cfg.risk.asv)


ASV = Section("asv", _asv_wanted, run_asv)


# --------------------------------------------------------------------------- re-identification section
@dataclass(frozen=True)
class ProbeCondition:
    """How the probes are processed before re-identification: ``label`` (the report's row), ``key`` (what
    identifies the processing in the cache key: None for the original audio), ``transform()`` (builds the
    ``(audio, probe index) -> audio`` function when the stage runs; None: the original files), or why the
    condition cannot run here (``unavailable``)."""

    label: str
    key: Any
    transform: Callable[[], Callable[[np.ndarray, int], np.ndarray] | None]
    unavailable: str | None = None


def _original() -> ProbeCondition:
    return ProbeCondition("original", None, lambda: None)


def _watermarked(engine: str, seed: int) -> ProbeCondition:
    """Probes marked by ``engine``; probe i carries the message ``default_rng([seed, i]).integers(0, 2**16)``."""
    from voiceguard.watermark import load_watermarker

    from .watermark import watermarker_identity

    wm = load_watermarker(engine)

    def embed(x: np.ndarray, i: int) -> np.ndarray:
        return wm.embed(x, SAMPLE_RATE, int(np.random.default_rng([seed, i]).integers(0, 2 ** 16)))
    return ProbeCondition(f"watermarked ({engine})", watermarker_identity(wm), lambda: embed)


def _attacked(row, seed: int) -> ProbeCondition:
    """Probes processed by the attack condition ``row`` (probe i seeded with ``file_seed(seed, i)``)."""
    def attack(x: np.ndarray, i: int) -> np.ndarray:
        return np.asarray(row.build(seed=file_seed(seed, i))(x, SAMPLE_RATE), np.float32).ravel()
    return ProbeCondition(row.label, [row.attack, row.params], lambda: attack, unavailable(row))


def probe_conditions(cfg: ReportConfig) -> list[ProbeCondition]:
    """The conditions the config asks for: the original probes, watermarked by the first engine (when the
    watermark section runs and risk.reid.watermark is on), then each attack of risk.reid.attacks."""
    conds = [_original()]
    if cfg.risk.reid_watermark and cfg.watermark:
        conds.append(_watermarked(cfg.watermark.engines[0], cfg.seed))
    if cfg.risk.reid_suite:
        conds += [_attacked(r, cfg.seed) for r in cfg.risk.reid_suite.rows if r.attack != "none"]
    return conds


def reid_stage(ctx: ReportContext, cond: ProbeCondition, enroll: list, probe: list) -> Stage:
    """Re-identification under one condition; keyed by the embedder, the seed, the enrolment and probe files
    (with their speakers) and the condition's processing."""
    backend = ctx.cfg.risk.backend
    return Stage(f"risk.reid.{slug(cond.label)}",
                 {"backend": _embedder_fingerprint(backend), "seed": ctx.cfg.seed,
                  "enroll": [ctx.data.file_key(f.path, f.speaker) for f in enroll],
                  "probe": [ctx.data.file_key(f.path, f.speaker) for f in probe], "condition": cond.key},
                 lambda: reid_condition(enroll, probe, cond.transform(), ctx.work / "reid" / slug(cond.label), backend,
                                        ctx.cfg.seed))


def run_reid(ctx: ReportContext, results: Results) -> Results:
    """Re-identification of ``risk.reid.speakers`` seeded speakers' probes under each condition."""
    enroll, probe = reid_sets(ctx.data, ctx.cfg.risk.reid_speakers, ctx.cfg.seed)
    out = {}
    for cond in probe_conditions(ctx.cfg):
        if cond.unavailable:
            out[cond.label] = ReidCondition(unavailable=cond.unavailable)
            continue
        got = ctx.cache.run(reid_stage(ctx, cond, enroll, probe))
        out[cond.label] = ReidCondition.from_dict(got["result"], got["mated"], got["nonmated"])
    return replace(results, reid=out)


def _reid_wanted(cfg: ReportConfig) -> bool:
    return bool(cfg.risk and cfg.risk.reid_speakers)


REID = Section("reid", _reid_wanted, run_reid)

__all__ = ["ASV", "NO_ASV_LISTS", "ProbeCondition", "REID", "asv_stage", "asv_trials", "own_asv_check",
           "probe_conditions", "reid_condition", "reid_sets", "reid_stage", "run_asv", "run_reid"]
