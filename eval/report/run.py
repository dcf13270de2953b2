"""``voiceguard eval report`` as a function: run (or reuse) every stage, then write the figures and the report."""
from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from voiceguard.attacks import AttackUnavailable
from voiceguard.audio import load_audio
from voiceguard.protocols import BONAFIDE
from voiceguard.watermark import load_watermarker

from .config import ReportConfig, slug
from .stages import (SR, TORCH_THREADS, ReportError, StageCache, _log, asv_stage, asv_trials, detector_identity,
                     environment, environment_key, fixed_torch_threads, perceptual_measures, reid_condition,
                     reid_sets, resolve_data, score_condition, subset, watermark_stage, watermarker_identity)

REPORT_FORMAT = 1


def _available(row) -> str | None:
    try:
        row.build(seed=0)
    except AttackUnavailable as e:
        return str(e)
    return None


def _rows(trials, cond: dict) -> list:
    from voiceguard.metrics.scores import ScoredTrial

    by = {t.utt_id: t for t in trials}
    return [ScoredTrial(u, s, by[u].label, by[u].attack, by[u].condition) for u, s in zip(cond["utt"], cond["score"])]


def _detection(cfg: ReportConfig, data, cache: StageCache, timings: dict, asv_arrays, work: Path, progress: bool,
               arrays: dict, detectors: dict) -> dict:
    """Every detector on the clean eval set (all metrics) and under each attack condition (EER)."""
    from voiceguard.metrics.cm import eer
    from voiceguard.metrics.scores import evaluate_cm, write_cm_scores

    attacked = subset(list(data.trials), cfg.attack_trials, cfg.seed + 1)
    fp_all, fp_att = data.fingerprint(), data.fingerprint(attacked)
    out = {}
    for det in cfg.detectors:
        ident = dict(detectors[det.label])
        loaded = ident.pop("loaded")
        key = slug(det.label)
        clean = cache.run(f"detect.{key}.clean", {"det": ident["id"], "data": fp_all},
                          lambda: score_condition(loaded, data, list(data.trials), None, cfg.seed, progress), timings)
        rows = _rows(data.trials, clean)
        write_cm_scores(work / "scores" / f"{key}.eval.txt", rows)
        m = evaluate_cm(rows, asv_arrays)
        conditions: dict[str, dict] = {}
        for suite in cfg.attack_suites:
            for row in suite.rows:
                name = f"{suite.name}/{row.label}"
                why = _available(row)
                if why:
                    conditions[name] = {"unavailable": why}
                    continue
                got = cache.run(f"detect.{key}.{slug(suite.name)}.{slug(row.label)}",
                                {"det": ident["id"], "data": fp_att, "attack": [row.attack, row.params],
                                 "seed": cfg.seed},
                                lambda row=row: score_condition(loaded, data, attacked, row, cfg.seed, progress),
                                timings)
                r = _rows(data.trials, got)
                bona = np.array([x.score for x in r if x.label == BONAFIDE])
                spoof = np.array([x.score for x in r if x.label != BONAFIDE])
                if bona.size < 2 or spoof.size < 2:
                    conditions[name] = {"unavailable": f"too few files scored ({len(got['errors'])} failed)"}
                    continue
                conditions[name] = {"eer": eer(bona, spoof)[0], "n_bonafide": int(bona.size),
                                    "n_spoof": int(spoof.size), "errors": len(got["errors"])}
        out[det.label] = {**ident["id"], "metrics": m.to_dict(), "errors": clean["errors"],
                          "conditions": conditions, "n_attacked_trials": len(attacked)}
        arrays[det.label] = (np.array([x.score for x in rows if x.label == BONAFIDE]),
                             np.array([x.score for x in rows if x.label != BONAFIDE]))
    return out


def _clips(data, n: int, seed: int, min_seconds: float = 0.0) -> tuple[list[str], list[np.ndarray]]:
    """``n`` seeded bona fide clips at 16 kHz, skipping those shorter than ``min_seconds`` (the watermark
    engines' minimum): the seeded order is walked until ``n`` clips fit, so when the first ``n`` all fit the
    pick is the one made without the condition."""
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
    paths = [str(data.path(bona[i])) for i in sorted(pick)]
    return paths, [load_audio(p, SR, mono=True)[0][0] for p in paths]


def run_report(cfg: ReportConfig, out: str | Path, work: str | Path | None = None, *, force: bool = False,
               progress: bool = False, log: Callable[[str], None] = _log) -> dict:
    """Run every stage the config names (cached under ``work``, default ``out/work``) and return the report
    data (also written as ``out/report.json`` with the figures, ``report.md`` and ``report.html``).
    torch runs with ``TORCH_THREADS`` threads meanwhile; the report's ``environment`` block states what else
    the figures depend on (package, ffmpeg and codec library versions, CPU kernels, the corpus's tools)."""
    with fixed_torch_threads(TORCH_THREADS):  # the same thread count on every machine (see TORCH_THREADS)
        return _run_report(cfg, out, work, force, progress, log)


def _run_report(cfg: ReportConfig, out: str | Path, work: str | Path | None, force: bool, progress: bool,
                log: Callable[[str], None]) -> dict:
    from voiceguard.metrics.scores import read_asv_scores

    from .figures import make_figures
    from .render import write_report

    t_start = time.perf_counter()
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = Path(out)
    work = Path(work) if work is not None else out / "work"
    env = environment()
    cache = StageCache(work / "cache", force, log, environment_key(env))
    timings: dict[str, dict] = {}
    detectors = {d.label: detector_identity(d) for d in cfg.detectors}  # a missing model fails before any stage
    t0 = time.perf_counter()
    data = resolve_data(cfg, progress=progress, log=log)
    if cfg.data.layout == "corpus":  # the tools that made the corpus's audio (it may have just been built)
        env.update({k: v for k, v in environment(data.root, codecs=False).items() if k == "corpus_tools"})
    timings["data"] = {"seconds": round(time.perf_counter() - t0, 2), "cached": False}
    n_bona = sum(t.label == BONAFIDE for t in data.trials)
    attacks = sorted({t.attack for t in data.trials if t.label != BONAFIDE})
    results: dict = {"data": {"layout": cfg.data.layout, "path": str(data.root), "protocol": cfg.data.protocol,
                              "n_trials": len(data.trials), "n_bonafide": n_bona,
                              "n_spoof": len(data.trials) - n_bona, "attacks": attacks,
                              "max_trials": cfg.data.max_trials}}

    # ASV first: its scores give the detectors' t-DCF when the organisers' are not there
    asv = None
    embedder_id = None
    if cfg.risk:
        from voiceguard.eval.risk import get_embedder

        embedder_id = get_embedder(cfg.risk.backend).fingerprint  # includes the weights' digest
    if cfg.risk and cfg.risk.asv and data.asv_enroll and data.asv_trials:
        trials = asv_trials(data, subset_only=cfg.data.max_trials is not None)
        asv = cache.run("risk.asv", {"backend": embedder_id, "trials": [(t.speaker, t.utt_id, t.source, t.key)
                                                                        for t in trials],
                                     "enroll": [p.read_text() for p in data.asv_enroll]},
                        lambda: asv_stage(data, trials, cfg.risk.backend, work / "scores" / "asv.eval.txt"), timings)
        results["asv"] = asv["result"]
    elif cfg.risk and cfg.risk.asv:
        results["asv_skipped"] = ("the data has no ASV enrolment and trial lists (data.asv_enroll, data.asv_trials), "
                                  "so the ASV-under-spoofing check did not run")
        log(f"risk.asv: skipped: {results['asv_skipped']}")
    asv_arrays, tdcf_source = None, None
    if data.asv_scores is not None:
        asv_arrays, tdcf_source = read_asv_scores(data.asv_scores), f"organisers' ASV scores ({data.asv_scores.name})"
    elif asv is not None:
        asv_arrays = tuple(np.asarray(asv["scores"][k]) for k in ("target", "nontarget", "spoof"))
        tdcf_source = f"voiceguard's own ASV ({cfg.risk.backend}, cosine to the enrolment mean)"
    results["tdcf_asv"] = tdcf_source
    arrays: dict = {"detection": {}, "asv": asv["scores"] if asv else None, "reid": {}}
    results["detection"] = _detection(cfg, data, cache, timings, asv_arrays, work, progress, arrays["detection"],
                                      detectors)

    if cfg.watermark:
        from voiceguard.attacks import load_suite

        suite = cfg.watermark.suite or load_suite("audioseal-paper")
        wms = {engine: load_watermarker(engine) for engine in cfg.watermark.engines}
        paths, clips = _clips(data, cfg.watermark.files, cfg.seed,
                              max(float(getattr(w, "min_seconds", 0.0) or 0.0) for w in wms.values()))
        results["watermark"] = {}
        for engine in cfg.watermark.engines:
            wm = wms[engine]
            results["watermark"][engine] = cache.run(
                f"watermark.{slug(engine)}", {"engine": watermarker_identity(wm), "seed": cfg.seed,
                                              "files": [(data.relative(p), Path(p).stat().st_size) for p in paths],
                                              "pesq_stoi": perceptual_measures(),
                                              "suite": [[r.label, r.attack, r.params] for r in suite.rows]},
                lambda wm=wm: watermark_stage(wm, clips, suite, cfg.seed), timings)
        results["watermark_suite"] = suite.name

    if cfg.risk and cfg.risk.reid_speakers:
        enroll, probe = reid_sets(data, cfg.risk.reid_speakers, cfg.seed)
        conds: list[tuple[str, object]] = [("original", None)]
        if cfg.risk.reid_watermark and cfg.watermark:
            engine = cfg.watermark.engines[0]
            conds.append((f"watermarked ({engine})", ("watermark", engine)))
        if cfg.risk.reid_suite:
            conds += [(r.label, r) for r in cfg.risk.reid_suite.rows if r.attack != "none"]
        results["reid"] = {}
        base = {"backend": embedder_id, "seed": cfg.seed,
                "enroll": [(data.relative(f.path), Path(f.path).stat().st_size, f.speaker) for f in enroll],
                "probe": [(data.relative(f.path), Path(f.path).stat().st_size, f.speaker) for f in probe]}
        for label, how in conds:
            if how is not None and not isinstance(how, tuple) and _available(how):
                results["reid"][label] = {"unavailable": _available(how)}
                continue

            def transform_for(how=how):
                if how is None:
                    return None
                if isinstance(how, tuple):
                    wm = load_watermarker(how[1])
                    return lambda x, i: wm.embed(x, SR, int(np.random.default_rng([cfg.seed, i]).integers(0, 2 ** 16)))
                return lambda x, i: np.asarray(how.build(seed=cfg.seed * 100_003 + i)(x, SR), np.float32).ravel()

            what = (how if how is None else watermarker_identity(load_watermarker(how[1])) if isinstance(how, tuple)
                    else [how.attack, how.params])
            got = cache.run(
                f"risk.reid.{slug(label)}", {**base, "condition": what},
                lambda label=label, transform_for=transform_for: reid_condition(
                    enroll, probe, transform_for(), work / "reid" / slug(label), cfg.risk.backend, cfg.seed), timings)
            results["reid"][label] = got["result"]
            arrays["reid"][label] = (np.asarray(got["mated"]), np.asarray(got["nonmated"]))

    report = {"format": REPORT_FORMAT, "name": cfg.name, "seed": cfg.seed, "config": cfg.to_dict(),
              "results": results, "environment": env, "timings": timings, "started": started}
    report["figures"] = make_figures(results, arrays, out / "figures")
    report["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    write_report(report, out)
    return report


__all__ = ["REPORT_FORMAT", "ReportError", "run_report"]
