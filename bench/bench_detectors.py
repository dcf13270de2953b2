"""Detector quality and speed on a built corpus (``voiceguard data build``): the README's results table.

    python bench/bench_detectors.py --corpus corpus \
        --model vg-specnet --model runs/lfcc-gmm/card.yaml \
        --model aasist=../shared/weights/aasist/AASIST.pth [--suites] [--speed] [--update-card] \
        [--max-trials N] [--suite-trials 300]

Per model: pooled eval EER (all eval attacks, and the unseen ones A07-A14 only), per-attack EER,
ASVspoof 5 minDCF, the EER with leading/trailing silence trimmed (shortcut check), and with
``--suites`` the EER under every condition of the ``asvspoof21-la`` and ``asvspoof21-df`` codec suites
(attack applied to every trial of a seeded subset, bona fide and spoof alike, seeded per file).
``--speed``: LFCC-GMM real-time factor, and ``scan`` of 100 files of 10 s with the default model.
Writes ``bench/results/detectors.json`` and prints markdown tables.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from voiceguard.attacks import load_suite
from voiceguard.audio import load_audio, save_audio
from voiceguard.detect.models import DEFAULT_MODEL, load_model
from voiceguard.eval.report.data import EvalData
from voiceguard.eval.report.detection import score_condition
from voiceguard.metrics import cm as M
from voiceguard.files import atomic_write_text
from voiceguard.protocols import read_protocol
from voiceguard.audio import SAMPLE_RATE

UNSEEN = {f"A{i:02d}" for i in range(7, 15)}


def trimmed(x: np.ndarray) -> np.ndarray:
    import librosa

    y, _ = librosa.effects.trim(x, top_db=35)
    return y if y.size >= SAMPLE_RATE // 4 else x


def subset(trials: list, n: int | None, seed: int = 0) -> list:
    """A seeded random subset of ``n`` trials (protocol order kept); all of them when ``n`` is None."""
    if n is None or n >= len(trials):
        return trials
    keep = np.sort(np.random.default_rng(seed).permutation(len(trials))[:n])
    return [trials[i] for i in keep]


class _Trimmed:
    """The silence-trimmed shortcut check as a condition ``score_condition`` applies (like a suite row)."""

    def build(self, seed=None):
        return lambda x, sr: trimmed(x)


def eval_scores(loaded, trials, audio_dir: Path, row=None, seed: int = 0) -> np.ndarray:
    """The calibrated LLR of each trial, scored as the report scores it (``score_condition``: ``row``, a suite
    row, applied to each file first with the evaluations' seeding rule ``file_seed(seed, i)``). The metrics here
    (EER, minDCF) depend on the scores' order only, so the calibration changes none of them."""
    data = EvalData(tuple(trials), audio_dir, ".flac", audio_dir.parent, None, (), None)
    got = score_condition(loaded, data, list(trials), row, seed)
    if got["errors"]:
        raise SystemExit(": ".join(got["errors"][0]))
    return np.asarray(got["score"])


def metrics_of(scores: np.ndarray, trials) -> dict:
    lab = np.array([t.is_bonafide for t in trials])
    attacks = np.array([t.attack for t in trials])
    bona, spoof = scores[lab], scores[~lab]
    unseen = np.isin(attacks, sorted(UNSEEN)) & ~lab
    per = M.eer_breakdown(bona, spoof, attacks[~lab])
    return {"eer": M.eer(bona, spoof)[0], "eer_unseen": M.eer(bona, scores[unseen])[0] if unseen.any() else None,
            "min_dcf": M.min_dcf(bona, spoof)[0], "per_attack": {k: v.eer for k, v in per.items()}}


def suite_metrics(loaded, trials, audio_dir: Path, suite_name: str, seed: int = 0) -> dict:
    suite = load_suite(suite_name)
    out = {}
    for row in suite.rows:
        t0 = time.time()
        s = eval_scores(loaded, trials, audio_dir, row, seed)
        lab = np.array([t.is_bonafide for t in trials])
        out[row.label] = M.eer(s[lab], s[~lab])[0]
        print(f"  {suite_name} {row.label}: EER {out[row.label] * 100:.2f} % [{time.time() - t0:.0f} s]",
              file=sys.stderr)
    return out


def parse_model(spec: str):
    if "=" in spec:
        arch, ckpt = spec.split("=", 1)
        return load_model(arch, ckpt), f"{arch} ({Path(ckpt).name}, published, not retrained)"
    loaded = load_model(spec)
    return loaded, loaded.name


def speed(corpus: Path, trials) -> dict:
    """LFCC-GMM real-time factor and the time of ``scan`` over 100 files of 10 s (default model)."""
    from voiceguard.api import scan
    from voiceguard.detect.gmm import GmmDetector

    rng = np.random.default_rng(0)
    audio = np.concatenate([load_audio(t.audio_path(corpus / "flac"), SAMPLE_RATE, mono=True)[0][0] for t in trials[:40]])
    gmm = GmmDetector("lfcc", n_components=512, max_iter=5).fit([audio[: 60 * SAMPLE_RATE]], [audio[60 * SAMPLE_RATE: 120 * SAMPLE_RATE]])
    x = audio[: 60 * SAMPLE_RATE]
    gmm.score(x[:SAMPLE_RATE])
    t0 = time.perf_counter()
    for _ in range(3):
        gmm.score(x)
    gmm_rtf = 3 * 60.0 / (time.perf_counter() - t0)
    loaded = load_model(DEFAULT_MODEL)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(100):
            start = int(rng.integers(0, audio.size - 10 * SAMPLE_RATE))
            save_audio(Path(tmp) / f"f{i:03d}.flac", audio[start:start + 10 * SAMPLE_RATE][None], SAMPLE_RATE)
        t0 = time.perf_counter()
        rows = list(scan([tmp], model=loaded, watermark=False))
        scan_s = time.perf_counter() - t0
        assert len(rows) == 100 and all(r.status == "ok" for r in rows)
        # `voiceguard scan`'s default also reads the watermark of every file (--no-watermark skips it)
        from voiceguard.watermark import load_watermarker

        wm = load_watermarker("audioseal", need="detect")
        t0 = time.perf_counter()
        rows = list(scan([tmp], model=loaded, watermark=wm))
        scan_wm_s = time.perf_counter() - t0
    assert len(rows) == 100 and all(r.status == "ok" and r.watermark is not None for r in rows)
    return {"lfcc_gmm_512_realtime_factor": gmm_rtf, "scan_100x10s_seconds": scan_s,
            "scan_realtime_factor": 1000.0 / scan_s, "scan_with_watermark_100x10s_seconds": scan_wm_s,
            "scan_with_watermark_realtime_factor": 1000.0 / scan_wm_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path)
    ap.add_argument("--table", action="store_true", help="only print the tables of the stored results")
    ap.add_argument("--model", action="append", default=[], help="card name/file, or ARCH=CHECKPOINT")
    ap.add_argument("--no-trimmed", action="store_true", help="skip the silence-trimmed shortcut check")
    ap.add_argument("--suites", action="store_true", help="also evaluate under the LA/DF codec suites")
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "detectors.json")
    ap.add_argument("--max-trials", type=int, default=None,
                    help="evaluate on a seeded subset of this many eval trials (same subset for every model)")
    ap.add_argument("--suite-trials", type=int, default=300,
                    help="seeded subset of eval trials for each codec-suite condition (codecs run ffmpeg per file)")
    ap.add_argument("--update-card", action="store_true",
                    help="write each card model's eval figures into its model card (metrics.eval)")
    args = ap.parse_args()
    if args.table:
        print(markdown(json.loads(args.out.read_text())))
        return
    if args.corpus is None:
        ap.error("--corpus is required (or --table)")
    import torch

    torch.set_num_threads(2)
    all_trials = read_protocol(args.corpus / "protocols" / "VG.cm.eval.trl.txt")
    trials = subset(all_trials, args.max_trials)
    audio_dir = args.corpus / "flac"
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results.setdefault("models", {})
    if not args.model and not args.speed:
        ap.error("give --model (repeatable) and/or --speed")
    for spec in args.model:
        loaded, label = parse_model(spec)
        print(f"{label}:", file=sys.stderr)
        t0 = time.time()
        row = {"label": label, "corpus": str(args.corpus), "n_trials": len(trials),
               **metrics_of(eval_scores(loaded, trials, audio_dir), trials)}
        if not args.no_trimmed:
            row["eer_trimmed"] = metrics_of(eval_scores(loaded, trials, audio_dir, _Trimmed()), trials)["eer"]
        if args.suites:
            suite_trials = subset(all_trials, args.suite_trials)
            row["suite_trials"] = len(suite_trials)
            row["suites"] = {s: suite_metrics(loaded, suite_trials, audio_dir, s)
                             for s in ("asvspoof21-la", "asvspoof21-df")}
        row["seconds"] = round(time.time() - t0, 1)
        results["models"][label] = row
        if args.update_card and loaded.card is not None:
            update_card(loaded.card.path, row, " ".join(["python", *sys.argv]), args.corpus)
        print(f"  EER {pct(row['eer'])} % (unseen {pct(row['eer_unseen'])} %), trimmed "
              f"{pct(row.get('eer_trimmed'))} %", file=sys.stderr)
    if args.speed:
        results["speed"] = speed(args.corpus, all_trials)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    print(markdown(results))


def update_card(card_path, row: dict, command: str, corpus: Path) -> None:
    """Store eval figures (fractions) in the card's ``metrics.eval``, keeping everything else as it is."""
    import yaml

    path = Path(card_path)
    card = yaml.safe_load(path.read_text())
    built = json.loads((corpus / "corpus.json").read_text()) if (corpus / "corpus.json").is_file() else {}
    keep = ("eer", "eer_unseen", "min_dcf", "eer_trimmed", "per_attack", "suites")
    card.setdefault("metrics", {})["eval"] = {
        "corpus": f"{corpus.name}: voiceguard data build, config {built.get('config', {}).get('name', '?')}, "
                  f"seed {built.get('seed', '?')}", "n_trials": row["n_trials"],
        "suite_trials": row.get("suite_trials"), "command": command,
        **{k: _rounded(row[k]) for k in keep if k in row}}
    atomic_write_text(path, yaml.safe_dump(card, sort_keys=False))


def _rounded(v):
    if isinstance(v, dict):
        return {k: _rounded(x) for k, x in v.items()}
    return None if v is None else round(float(v), 5)


def pct(v) -> str:
    return "-" if v is None else f"{v * 100:.2f}"


def markdown(results: dict) -> str:
    models = results["models"]
    attacks = sorted({a for r in models.values() for a in r["per_attack"]})
    lines = ["| model | trials | EER % (all eval) | EER % (unseen A07-A14) | EER % silence-trimmed | minDCF | "
             + " | ".join(attacks) + " |", "|" + "---|" * (6 + len(attacks))]
    for r in models.values():
        lines.append(f"| {r['label']} | {r.get('n_trials', '-')} | {pct(r['eer'])} | {pct(r['eer_unseen'])} | "
                     f"{pct(r.get('eer_trimmed'))} | {r['min_dcf']:.4f} | "
                     + " | ".join(pct(r["per_attack"].get(a)) for a in attacks) + " |")
    suites = [(lab, r) for lab, r in models.items() if r.get("suites")]
    if suites:
        conds = [c for s in suites[0][1]["suites"].values() for c in s]
        lines += ["", "| model | trials | " + " | ".join(conds) + " | worst |", "|" + "---|" * (len(conds) + 3)]
        for _, r in suites:
            vals = {c: v for s in r["suites"].values() for c, v in s.items()}
            lines.append(f"| {r['label']} | {r.get('suite_trials', '-')} | "
                         + " | ".join(pct(vals.get(c)) for c in conds) + f" | {pct(max(vals.values()))} |")
    if "speed" in results:
        s = results["speed"]
        lines += ["", f"LFCC-GMM (512 components) scores at {s['lfcc_gmm_512_realtime_factor']:.0f}x real time; "
                      f"`scan --no-watermark` of 100 files of 10 s with the default model: "
                      f"{s['scan_100x10s_seconds']:.1f} s ({s['scan_realtime_factor']:.0f}x real time)"
                  + (f"; with the watermark column (the default) {s['scan_with_watermark_100x10s_seconds']:.1f} s "
                     f"({s['scan_with_watermark_realtime_factor']:.0f}x real time)."
                     if "scan_with_watermark_100x10s_seconds" in s else ".")]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
