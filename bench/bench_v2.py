"""The default detector's benchmark (issue #19): every model side by side on corpus v2, the shared neural demo set,
long genuine recordings, and speed.  One table in the README, produced by this script:

    python bench/bench_v2.py --corpus reports/corpus-v2 --neural ../shared/data/neural \\
        --model vg-whisper --model vg-specnet \\
        [--model aasist=../shared/weights/aasist/AASIST.pth --published-trials 300] \\
        [--speed | --speed-only] [--update-readme README.md]
    python bench/bench_v2.py --table                      # print the stored results again

Per model (each scored through ``voiceguard eval report``, so the figures are the report's; configs written to
``reports/bench-v2/``):

- corpus v2 eval (``voiceguard data build --config v2``): pooled EER, EER on the systems unseen in training only
  (A07-A14, N03-N06), EER per system and per channel condition, min t-DCF 2021 with the project's own ASV
  (resemblyzer), bona fide false alarms per channel condition at the model's shipped threshold (``scan``'s
  default), and the EER under every condition of the ASVspoof 2021 LA and DF codec suites (a seeded subset);
- the shared neural demo set (never used for training or model choice): pooled and per-system EER, bona fide false
  alarms per source corpus at the shipped threshold;
- long genuine recordings: 30-60 s concatenations of the eval speakers' original LibriSpeech utterances (speakers
  never seen in training), the share that ``scan`` calls ``spoof`` or ``partial-spoof``;
- ``--speed`` (the first model): ``scan --no-watermark`` of 100 files of 10 s (real-time factor on this machine
  and CPU seconds per audio second), and the peak RSS of ``voiceguard scan`` on a 1-hour file (a subprocess).

Published checkpoints (``arch=path``) are scored as released, on a seeded subset of ``--published-trials`` eval
trials (they are slow on a CPU), without the codec suites.  Writes ``bench/results/v2.json``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "v2.json"
UNSEEN = {f"A{i:02d}" for i in range(7, 15)} | {"N03", "N04", "N05", "N06"}
README_BLOCK = "bench-v2"


def parse_model(spec: str) -> dict:
    """``vg-whisper`` / ``runs/x/card.yaml`` / ``aasist=path.pth`` -> a report detector entry."""
    if "=" in spec:
        arch, ckpt = spec.split("=", 1)
        return {"model": arch, "checkpoint": ckpt, "label": f"{arch} (published)"}
    return {"model": spec, "label": Path(spec).parent.name if spec.endswith(".yaml") else spec}


def run_report(name: str, data: dict, detectors: list[dict], out: Path, *, suites: bool, asv: bool,
               reuse: bool = False) -> dict:
    """Run ``voiceguard eval report`` on one config; returns ``report.json``'s results (``reuse``: the stored
    ``report.json`` of an earlier run with the same config, when there is one)."""
    from voiceguard.eval.report.config import parse_config
    from voiceguard.eval.report.run import run_report as report

    cfg = {"name": name, "seed": 0, "data": data, "detectors": detectors}
    if suites:
        cfg["attacks"] = {"suites": ["asvspoof21-la", "asvspoof21-df"], "max_trials": 300}
    if asv:
        cfg["risk"] = {"backend": "resemblyzer", "asv": True}
    if reuse and (out / "report.json").is_file() and (out / "config.json").is_file() \
            and json.loads((out / "config.json").read_text()) == cfg:
        print(f"[{name}] reusing {out / 'report.json'}", file=sys.stderr)
        return json.loads((out / "report.json").read_text())["results"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    t0 = time.time()
    report(parse_config(cfg, str(out / "config.json")), out, progress=False)
    print(f"[{name}] {time.time() - t0:.0f} s", file=sys.stderr)
    return json.loads((out / "report.json").read_text())["results"]


def read_scores(path: Path) -> dict[str, float]:
    return {p[0]: float(p[-1]) for p in (ln.split() for ln in path.read_text().splitlines()) if p}


def shipped_thresholds(models: list[dict]) -> dict[str, float]:
    """label -> the model's shipped decision threshold (LLR; ``scan``'s default)."""
    from voiceguard.detect.models import load_model

    return {m["label"]: load_model(m["model"], m.get("checkpoint")).calibration.default_threshold() for m in models}


def false_alarms(scores: dict[str, float], trials, group, threshold: float) -> dict[str, float]:
    """Share of bona fide trials with an LLR below ``threshold``, per ``group(trial)``."""
    out: dict[str, list[bool]] = {}
    for t in trials:
        if t.is_bonafide and t.utt_id in scores:
            out.setdefault(group(t), []).append(scores[t.utt_id] < threshold)
    return {k: float(np.mean(v)) for k, v in sorted(out.items())}


def caught(scores: dict[str, float], trials, threshold: float) -> float:
    """Share of the scored spoof trials called spoof (LLR below ``threshold``)."""
    return float(np.mean([scores[t.utt_id] < threshold for t in trials if not t.is_bonafide and t.utt_id in scores]))


def v2_rows(results: dict, work: Path, protocol: Path, thresholds: dict[str, float]) -> dict:
    """Per detector: the corpus v2 figures of one report (false alarms at the model's shipped threshold, from the
    report's score file of calibrated LLRs)."""
    from voiceguard.metrics.cm import eer
    from voiceguard.protocols import read_protocol
    from voiceguard.eval.report.config import slug

    trials = read_protocol(protocol)
    out = {}
    for label, d in results["detection"].items():
        m = d["metrics"]
        scores = read_scores(work / "scores" / f"{slug(label)}.eval.txt")
        got = [t for t in trials if t.utt_id in scores]
        bona = np.array([scores[t.utt_id] for t in got if t.is_bonafide])
        unseen = np.array([scores[t.utt_id] for t in got if not t.is_bonafide and t.attack in UNSEEN])
        out[label] = {
            "n_trials": len(got), "eer": m["eer"], "eer_unseen": eer(bona, unseen)[0] if unseen.size else None,
            "min_tdcf_2021": m.get("min_tdcf_2021"), "per_system": m["per_attack"],
            "per_condition": m.get("per_condition", {}),
            "threshold_llr": thresholds[label], "spoof_caught": caught(scores, got, thresholds[label]),
            "bonafide_fa_per_condition": false_alarms(scores, got, lambda t: t.condition, thresholds[label]),
            "suites": {k: v["eer"] for k, v in d.get("conditions", {}).items()},
        }
    return out


def demo_rows(results: dict, work: Path, protocol: Path, thresholds: dict[str, float]) -> dict:
    from voiceguard.eval.report.config import slug
    from voiceguard.protocols import read_protocol

    trials = read_protocol(protocol, "csv")
    out = {}
    for label, d in results["detection"].items():
        m = d["metrics"]
        scores = read_scores(work / "scores" / f"{slug(label)}.eval.txt")
        out[label] = {"n_trials": m["n_bonafide"] + m["n_spoof"], "eer": m["eer"], "per_system": m["per_attack"],
                      "threshold_llr": thresholds[label], "spoof_caught": caught(scores, trials, thresholds[label]),
                      "bonafide_fa_per_corpus": false_alarms(scores, trials, lambda t: t.source, thresholds[label])}
    return out


def long_recordings(corpus: Path, speech: Path, n: int = 24, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """``n`` genuine recordings of 30-60 s: original LibriSpeech utterances of the corpus's eval speakers (never in
    training) concatenated with 0.3 s pauses, each utterance used once; seeded."""
    from voiceguard.audio import SAMPLE_RATE, load_audio

    card = json.loads((corpus / "corpus.json").read_text())
    eval_speakers = {card["speaker_map"][s] for s in card["splits"]["eval"]}
    files = sorted(p for p in speech.rglob("*.flac") if p.name.split("-")[0] in eval_speakers)
    order = np.random.default_rng(seed).permutation(len(files))
    out, cur, cur_s, i = [], [], 0.0, 0
    target = 30.0 + 30.0 * np.random.default_rng(seed + 1).random(n)
    pause = np.zeros(int(0.3 * SAMPLE_RATE), np.float32)
    for k in order:
        x = load_audio(files[k], SAMPLE_RATE, mono=True)[0][0]
        cur += [x, pause]
        cur_s += x.size / SAMPLE_RATE + 0.3
        if cur_s >= target[i]:
            audio = np.concatenate(cur)[: int(60 * SAMPLE_RATE)]
            out.append((f"long{i:02d}", audio))
            cur, cur_s, i = [], 0.0, i + 1
            if i == n:
                break
    return out


def long_rows(models: list[dict], recordings: list[tuple[str, np.ndarray]]) -> dict:
    from voiceguard.api import scan
    from voiceguard.audio import SAMPLE_RATE, save_audio
    from voiceguard.detect.models import load_model

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, audio in recordings:
            save_audio(Path(tmp) / f"{name}.flac", audio[None], SAMPLE_RATE)
        for m in models:
            loaded = load_model(m["model"], m.get("checkpoint"))
            rows = list(scan([tmp], model=loaded, watermark=False))
            verdicts = [r.verdict for r in rows]
            out[m["label"]] = {"n": len(rows), "seconds": [round(r.duration_s, 1) for r in rows],
                               "spoof": verdicts.count("spoof"), "partial_spoof": verdicts.count("partial-spoof"),
                               "errors": sum(r.status != "ok" for r in rows)}
    return out


def speed(model: str, corpus: Path) -> dict:
    """``scan --no-watermark`` of 100 files of 10 s (wall and CPU seconds of this process), and the peak RSS of a
    ``voiceguard scan`` subprocess on a 1-hour file."""
    from voiceguard.api import scan
    from voiceguard.audio import SAMPLE_RATE, load_audio, save_audio
    from voiceguard.detect.models import load_model
    from voiceguard.protocols import read_protocol

    trials = read_protocol(corpus / "protocols" / "VG.cm.eval.trl.txt")[:200]
    audio = np.concatenate([load_audio(t.audio_path(corpus / "flac"), SAMPLE_RATE, mono=True)[0][0] for t in trials])
    rng = np.random.default_rng(0)
    loaded = load_model(model)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(100):
            start = int(rng.integers(0, audio.size - 10 * SAMPLE_RATE))
            save_audio(Path(tmp) / f"f{i:03d}.flac", audio[start:start + 10 * SAMPLE_RATE][None], SAMPLE_RATE)
        list(scan([Path(tmp) / "f000.flac"], model=loaded, watermark=False))  # warm-up: model + VAD loaded
        c0, t0 = time.process_time(), time.perf_counter()
        rows = list(scan([tmp], model=loaded, watermark=False))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        assert len(rows) == 100 and all(r.status == "ok" for r in rows), [r.error for r in rows if r.error]
        hour = np.tile(audio, int(np.ceil(3600 * SAMPLE_RATE / audio.size)))[: 3600 * SAMPLE_RATE]
        save_audio(Path(tmp) / "hour.flac", hour[None], SAMPLE_RATE)
        # a fresh interpreter whose only child is the scan: its RUSAGE_CHILDREN peak is the scan's peak RSS
        probe = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
                 "p = subprocess.run(sys.argv[1:], capture_output=True); "
                 "print(p.returncode, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        proc = subprocess.run([sys.executable, "-c", probe, str(Path(sys.executable).parent / "voiceguard"), "scan",
                               str(Path(tmp) / "hour.flac"), "--model", model, "--no-watermark", "--no-progress",
                               "--format", "json"], capture_output=True, text=True, check=True)
        code, hour_s, rss = proc.stdout.split()
        hour_s, rss = float(hour_s), int(rss)
    if int(code) not in (0, 1):
        raise SystemExit(f"scan of the 1-hour file failed with exit code {code}")
    return {"model": model, "torch_threads": _threads(), "scan_100x10s_seconds": wall,
            "scan_realtime_factor": 1000 / wall,
            "cpu_seconds_per_audio_second": cpu / 1000, "hour_scan_seconds": hour_s,
            "hour_realtime_factor": 3600 / hour_s,
            "hour_peak_rss_mib": rss / 1024}


def _threads() -> int:
    import torch

    return torch.get_num_threads()


# --------------------------------------------------------------------------- tables
def pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def markdown(res: dict) -> str:
    v2, demo, long_, sp = res.get("v2", {}), res.get("demo", {}), res.get("long", {}), res.get("speed")
    labels = list(dict.fromkeys(list(v2) + list(demo)))
    lines = ["| model | v2 trials | v2 EER % | v2 unseen EER % | min t-DCF 2021 | worst v2 channel EER % | "
             "worst codec-suite EER % | v2 spoofs caught at the shipped threshold % | max v2 channel bona fide FA % | "
             "demo EER % | worst demo system EER % | demo spoofs caught % | max demo bona fide FA % | "
             "long recordings flagged |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for lab in labels:
        a, b, c = v2.get(lab, {}), demo.get(lab, {}), long_.get(lab)
        worst_ch = max(a.get("per_condition", {}).items(), key=lambda kv: kv[1], default=None)
        worst_suite = max(a.get("suites", {}).items(), key=lambda kv: kv[1], default=None)
        worst_sys = max(b.get("per_system", {}).items(), key=lambda kv: kv[1], default=None)
        worst_fa = max(b.get("bonafide_fa_per_corpus", {}).items(), key=lambda kv: kv[1], default=None)
        worst_ch_fa = max(a.get("bonafide_fa_per_condition", {}).items(), key=lambda kv: kv[1], default=None)
        lines.append("| " + " | ".join([
            lab, str(a.get("n_trials", "-")), pct(a.get("eer")), pct(a.get("eer_unseen")),
            "-" if a.get("min_tdcf_2021") is None else f"{a['min_tdcf_2021']:.4f}",
            "-" if worst_ch is None else f"{pct(worst_ch[1])} ({worst_ch[0]})",
            "-" if worst_suite is None else f"{pct(worst_suite[1])} ({worst_suite[0].split('/')[-1]})",
            pct(a.get("spoof_caught")), "-" if worst_ch_fa is None else f"{pct(worst_ch_fa[1])} ({worst_ch_fa[0]})",
            pct(b.get("eer")), "-" if worst_sys is None else f"{pct(worst_sys[1])} ({worst_sys[0]})",
            pct(b.get("spoof_caught")),
            "-" if worst_fa is None else f"{pct(worst_fa[1])} ({worst_fa[0]})",
            "-" if c is None else f"{c['spoof'] + c['partial_spoof']} of {c['n']}"]) + " |")
    out = ["\n".join(lines)]
    for title, key, src in (("EER % per corpus v2 system", "per_system", v2),
                            ("EER % per corpus v2 channel condition", "per_condition", v2),
                            ("bona fide false alarms % per corpus v2 channel condition at the shipped threshold",
                             "bonafide_fa_per_condition", v2),
                            ("EER % under the ASVspoof 2021 LA / DF codec suites (300 eval trials)", "suites", v2),
                            ("EER % per neural demo-set system", "per_system", demo),
                            ("bona fide false alarms % per demo-set corpus at the shipped threshold",
                             "bonafide_fa_per_corpus", demo)):
        rows = {lab: d[key] for lab, d in src.items() if d.get(key)}
        if not rows:
            continue
        cols = list(dict.fromkeys(k for r in rows.values() for k in r))
        out.append(f"{title}:\n\n| model | " + " | ".join(c.split("/")[-1] for c in cols) + " |\n|---|"
                   + "---|" * len(cols) + "\n" + "\n".join(
                       f"| {lab} | " + " | ".join(pct(r.get(c)) for c in cols) + " |" for lab, r in rows.items()))
    if sp:
        out.append(f"Speed ({sp['model']}, {sp['torch_threads']} torch threads, this machine): "
                   f"`scan --no-watermark` of "
                   f"100 files of 10 s in {sp['scan_100x10s_seconds']:.1f} s = **{sp['scan_realtime_factor']:.0f}x "
                   f"real time**, {sp['cpu_seconds_per_audio_second']:.4f} CPU-s per audio-s; a 1-hour file in "
                   f"{sp['hour_scan_seconds']:.0f} s ({sp['hour_realtime_factor']:.0f}x), peak RSS "
                   f"**{sp['hour_peak_rss_mib']:.0f} MiB**.")
    return "\n\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, help="corpus v2 folder (voiceguard data build --config v2)")
    ap.add_argument("--neural", type=Path, help="the neural demo set folder (holds protocol.csv)")
    ap.add_argument("--speech", type=Path, default=ROOT.parent / "shared" / "data" / "speech" / "librispeech",
                    help="the speech the corpus was built from (long genuine recordings)")
    ap.add_argument("--model", action="append", default=[], help="card name / file, or ARCH=CHECKPOINT")
    ap.add_argument("--published-trials", type=int, default=300)
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--speed-only", action="store_true", help="only the speed figures (no reports, no long recordings)")
    ap.add_argument("--work", type=Path, default=ROOT / "reports" / "bench-v2")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--update-readme", type=Path)
    ap.add_argument("--table", action="store_true", help="print the stored results' tables")
    ap.add_argument("--reuse-reports", action="store_true",
                    help="use the reports of an earlier run with the same configs (under --work) instead of "
                         "running them again; the tables are recomputed from their score files")
    args = ap.parse_args()
    from voiceguard.files import atomic_write_text, replace_marked_block

    res = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if not args.table:
        models = [parse_model(m) for m in args.model]
        own = [m for m in models if "checkpoint" not in m]
        thresholds = shipped_thresholds(models)
        published = [m for m in models if "checkpoint" in m]
        if args.corpus and not args.speed_only:
            data = {"layout": "corpus", "path": str(args.corpus.resolve())}
            protocol = args.corpus / "protocols" / "VG.cm.eval.trl.txt"
            v2 = res.setdefault("v2", {})
            if own:
                r = run_report("v2", data, own, args.work / "v2", suites=True, asv=True, reuse=args.reuse_reports)
                v2.update(v2_rows(r, args.work / "v2" / "work", protocol, thresholds))
            if published:
                r = run_report("v2-published", {**data, "max_trials": args.published_trials}, published,
                               args.work / "v2-published", suites=False, asv=True, reuse=args.reuse_reports)
                v2.update(v2_rows(r, args.work / "v2-published" / "work", protocol, thresholds))
            res.setdefault("long", {}).update(long_rows(models, long_recordings(args.corpus, args.speech)))
        if args.neural and not args.speed_only:
            r = run_report("demo", {"layout": "protocol", "path": str(args.neural.resolve()),
                                    "protocol": "protocol.csv", "protocol_format": "csv", "audio_dir": ".",
                                    "ext": ""}, models, args.work / "demo", suites=False, asv=False,
                           reuse=args.reuse_reports)
            res.setdefault("demo", {}).update(demo_rows(r, args.work / "demo" / "work",
                                                        args.neural / "protocol.csv", thresholds))
        if args.speed or args.speed_only:
            if not own or not args.corpus:
                raise SystemExit("--speed needs --corpus and a shipped or trained model (not only ARCH=CHECKPOINT)")
            res["speed"] = speed(own[0]["model"], args.corpus)
        res.setdefault("commands", [])
        cmd = "python bench/bench_v2.py " + " ".join(sys.argv[1:])
        res["commands"] = [c for c in res["commands"] if c != cmd] + [cmd]
        atomic_write_text(args.out, json.dumps(res, indent=2, sort_keys=True) + "\n")
    table = markdown(res)
    print(table)
    if args.update_readme:
        replace_marked_block(args.update_readme, README_BLOCK, table)


if __name__ == "__main__":
    main()
