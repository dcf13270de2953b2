"""The report's detection section: every detector on the clean eval set (all CM metrics, with the t-DCF's ASV
scores) and under each attack condition (EER), one cached stage per detector and condition."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from voiceguard.audio import SAMPLE_RATE
from voiceguard.protocols import BONAFIDE, Trial

from .config import ReportConfig, slug
from .data import EvalData, subset
from .results import ConditionResult, DetectorIdentity, DetectorMetrics, DetectorResult, Results
from .stage import ReportContext, Section, Stage, file_seed, unavailable


@dataclass(frozen=True)
class LoadedDetector:
    """A detector of the config, loaded (``loaded``: ``voiceguard.detect.models.load_model``'s result) with what
    identifies its scores."""

    identity: DetectorIdentity
    loaded: Any


def load_detector(det) -> LoadedDetector:
    """Load one ``DetectorConfig``'s model; its identity is the model and the digest of its weights. Raises what
    ``load_model`` raises for a missing or mismatched model (before any stage runs)."""
    from voiceguard.cards import sha256_file
    from voiceguard.detect.models import load_model

    loaded = load_model(det.model, det.checkpoint)
    card = loaded.card
    sha = card.sha256 if card is not None and card.sha256 else sha256_file(loaded.checkpoint)
    return LoadedDetector(DetectorIdentity(
        model=det.model, name=loaded.name, version=loaded.version, sha256=sha, calibrated=loaded.calibrated,
        calibration=loaded.calibration.to_dict(), config=card.config if card is not None else None,
        architecture=card.architecture if card is not None else det.model), loaded)


def _attack_decode(row, seed: int, index: dict[str, int]):
    """A decode hook for ``score_files``: the file at 16 kHz mono, then the attack seeded by the file's index."""
    from voiceguard.detect.batch import decode

    def dec(path):
        x, info = decode(path)
        if row is None:
            return x, info
        y = row.build(seed=file_seed(seed, index[str(path)]))(x, SAMPLE_RATE)
        return np.asarray(y, dtype=np.float32).ravel(), info
    return dec


def score_condition(loaded, data: EvalData, trials: list[Trial], row, seed: int, progress: bool = False,
                    executor=None) -> dict:
    """Calibrated LLRs of ``trials`` (each file attacked by ``row`` first, seeded by ``file_seed(seed, i)`` for the
    i-th trial, when ``row`` is not None): ``{"utt": [ids], "score": [LLRs], "errors": [[file, why]]}``; files that
    fail are listed, not scored.  ``executor``: where the files are scored (``voiceguard.executors``; the config's
    ``executor``): the value is in trial order either way, and each file's attack seed follows its trial index."""
    from voiceguard.detect.batch import ScoreJob, score_many

    paths = [str(data.path(t)) for t in trials]
    index = {p: i for i, p in enumerate(paths)}
    out: dict[str, list] = {"utt": [], "score": [], "errors": []}
    job = ScoreJob(loaded.detector, loaded.calibration, decode=_attack_decode(row, seed, index))
    for t, s in zip(trials, score_many(job, paths, executor, progress)):
        if s.result is None:
            out["errors"].append([s.source, s.error or "unreadable"])
        else:
            out["utt"].append(t.utt_id)
            out["score"].append(float(s.result.llr))
    return out


def scored_trials(trials, scored: dict) -> list:
    """``score_condition``'s value as ``ScoredTrial`` rows (label, attack, condition and source from the protocol)."""
    from voiceguard.metrics.scores import ScoredTrial

    by = {t.utt_id: t for t in trials}
    return [ScoredTrial(u, s, by[u].label, by[u].attack, by[u].condition, by[u].source)
            for u, s in zip(scored["utt"], scored["score"])]


def class_scores(rows) -> tuple[np.ndarray, np.ndarray]:
    """(bona fide, spoof) scores of ``ScoredTrial`` rows, float64 arrays."""
    return (np.array([x.score for x in rows if x.label == BONAFIDE]),
            np.array([x.score for x in rows if x.label != BONAFIDE]))


# --------------------------------------------------------------------------- stages
def clean_stage(ctx: ReportContext, label: str, det: LoadedDetector, data_key: list) -> Stage:
    """The detector's scores of every eval trial; keyed by its identity and the eval files."""
    return Stage(f"detect.{slug(label)}.clean", {"det": det.identity.to_dict(), "data": data_key},
                 lambda: score_condition(det.loaded, ctx.data, list(ctx.data.trials), None, ctx.cfg.seed, ctx.progress,
                                         ctx.cfg.executor))


def condition_stage(ctx: ReportContext, label: str, det: LoadedDetector, suite, row, attacked: list[Trial],
                    data_key: list) -> Stage:
    """The detector's scores of the attacked subset under one attack condition; keyed by its identity, the
    files, the attack and the seed (each file's parameters follow ``file_seed``)."""
    return Stage(f"detect.{slug(label)}.{slug(suite.name)}.{slug(row.label)}",
                 {"det": det.identity.to_dict(), "data": data_key, "attack": [row.attack, row.params],
                  "seed": ctx.cfg.seed},
                 lambda: score_condition(det.loaded, ctx.data, attacked, row, ctx.cfg.seed, ctx.progress,
                                         ctx.cfg.executor))


# --------------------------------------------------------------------------- section
def _condition(ctx: ReportContext, label: str, det: LoadedDetector, suite, row, attacked: list[Trial],
               data_key: list) -> ConditionResult:
    """EER of one attack condition (or why it is unavailable)."""
    from voiceguard.metrics.cm import eer

    why = unavailable(row)
    if why:
        return ConditionResult(unavailable=why)
    got = ctx.cache.run(condition_stage(ctx, label, det, suite, row, attacked, data_key))
    bona, spoof = class_scores(scored_trials(ctx.data.trials, got))
    if bona.size < 2 or spoof.size < 2:
        return ConditionResult(unavailable=f"too few files scored ({len(got['errors'])} failed)")
    return ConditionResult(eer(bona, spoof)[0], int(bona.size), int(spoof.size), len(got["errors"]))


def _detector(ctx: ReportContext, label: str, det: LoadedDetector, asv_arrays, attacked: list[Trial],
              keys: tuple[list, list]) -> DetectorResult:
    """One detector: its clean scores (and official-format score file), metrics and attack conditions."""
    from voiceguard.metrics.scores import evaluate_cm, write_cm_scores

    clean = ctx.cache.run(clean_stage(ctx, label, det, keys[0]))
    rows = scored_trials(ctx.data.trials, clean)
    write_cm_scores(ctx.work / "scores" / f"{slug(label)}.eval.txt", rows)
    # bona fide false alarms at the detector's shipped threshold (`scan`'s default: the card's operating point)
    metrics = DetectorMetrics.from_dict(evaluate_cm(
        rows, asv_arrays, decision_threshold=det.loaded.calibration.default_threshold()).to_dict())
    conditions = {f"{suite.name}/{row.label}": _condition(ctx, label, det, suite, row, attacked, keys[1])
                  for suite in ctx.cfg.attack_suites for row in suite.rows}
    bona, spoof = class_scores(rows)
    return DetectorResult(det.identity, metrics, tuple(tuple(e) for e in clean["errors"]), conditions, len(attacked),
                          bona, spoof)


def tdcf_asv_scores(ctx: ReportContext, results: Results) -> tuple[tuple | None, str | None]:
    """The ASV scores for the t-DCF (target, non-target, spoof) and where they come from: the organisers' when the
    data has them, else the report's own ASV check; (None, None) without either."""
    from voiceguard.metrics.scores import read_asv_scores

    if ctx.data.asv_scores is not None:
        return read_asv_scores(ctx.data.asv_scores), f"organisers' ASV scores ({ctx.data.asv_scores.name})"
    if results.asv is not None:
        return (tuple(np.asarray(results.asv.scores[k]) for k in ("target", "nontarget", "spoof")),
                f"voiceguard's own ASV ({ctx.cfg.risk.backend}, cosine to the enrolment mean)")
    return None, None


def run_detection(ctx: ReportContext, results: Results) -> Results:
    """Every detector of the config, on the clean eval set and on a seeded subset under each attack."""
    asv_arrays, source = tdcf_asv_scores(ctx, results)
    attacked = subset(list(ctx.data.trials), ctx.cfg.attack_trials, ctx.cfg.seed + 1)
    keys = (ctx.data.fingerprint(), ctx.data.fingerprint(attacked))
    detection = {d.label: _detector(ctx, d.label, ctx.detectors[d.label], asv_arrays, attacked, keys)
                 for d in ctx.cfg.detectors}
    return replace(results, tdcf_asv=source, detection=detection)


def _always(cfg: ReportConfig) -> bool:
    return True


DETECTION = Section("detection", _always, run_detection)

__all__ = ["DETECTION", "LoadedDetector", "class_scores", "clean_stage", "condition_stage", "load_detector",
           "run_detection", "score_condition", "scored_trials", "tdcf_asv_scores"]
