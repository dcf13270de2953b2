"""Voiceprint-risk figures: the README's speaker-verification, re-identification, watermark-identity and
ASV-under-spoofing tables.

    python bench/bench_risk.py --speech ../shared/data/speech/librispeech \
        [--corpus corpus --cm-scores runs/cm_eval.txt] [--update-card]

- ``test-other``: 10 readers x 10 utterances, every pair of utterances scored (cosine): ASV EER with a
  bootstrap 95 % interval;
- ``train-clean halves``: the 251 train-clean-100 readers, each utterance cut into a first half (enrolment)
  and a second half (probe): EER over 251 target / 62,750 non-target trials, rank-1 / rank-5
  identification, D_sys. ``--update-card`` writes this EER threshold into the backend's card as its
  calibrated same-speaker threshold (used by ``risk compare`` and the demo);
- speed: 500 of those half-utterances (written as files) embedded and all pairs scored with a cold cache,
  then the same again from the cache (ratio of the two runs in one process);
- watermark identity: ``risk watermark`` on test-other with each engine;
- re-identification under processing: test-other utterances 0-4 of each reader enrol, utterances 5-9 are
  probes, as-is / watermarked / pitch-shifted +4 semitones / MP3 32k; ignorant and lazy-informed attackers;
- ``--corpus``: ``risk asv`` on the corpus eval split, and with ``--cm-scores`` the min t-DCF through the same
  code as ``voiceguard eval eer``.
Writes ``bench/results/risk.json`` and prints markdown tables.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from voiceguard.attacks import get_attack
from voiceguard.audio import load_audio, save_audio
from voiceguard.metrics.cm import bootstrap_eer, compute_eer
from voiceguard.eval.risk import (asv_check, corpus_asv_paths, embed_files, load_embedder, labels_from_folder,
                                  read_asv_enrollment, read_asv_trials, reid_check, watermark_check)
from voiceguard.eval.risk.labels import LabeledFile
from voiceguard.metrics.asv import linkability, pair_scores, rank_k_rates
from voiceguard.files import atomic_write_text
from voiceguard.watermark import load_watermarker
from voiceguard.audio import SAMPLE_RATE

OUT = Path(__file__).parent / "results" / "risk.json"


def pairs_eer(emb: np.ndarray, speakers: list[str], n_boot: int = 1000) -> dict:
    tgt, non = pair_scores(emb, emb, speakers, symmetric=True)
    eer, thr = compute_eer(tgt, non)
    return {"eer": eer, "threshold": thr, "eer_ci95": bootstrap_eer(tgt, non, n_boot, seed=0),
            "n_target": int(tgt.size), "n_nontarget": int(non.size)}


def halves(train: Path, out: Path) -> tuple[list[str], list[str], list[str]]:
    """Write each train-clean utterance's first and second half as files; returns (first, second, speaker)."""
    first, second, spk = [], [], []
    for f in sorted(train.glob("*.flac")):
        x, _ = load_audio(f, SAMPLE_RATE, mono=True)
        n = x.shape[1] // 2
        a, b = out / f"{f.stem}_a.flac", out / f"{f.stem}_b.flac"
        save_audio(a, x[:, :n], SAMPLE_RATE)
        save_audio(b, x[:, n:], SAMPLE_RATE)
        first.append(str(a))
        second.append(str(b))
        spk.append(f.stem.split("-")[0])
    return first, second, spk


def processed_copies(files: list[LabeledFile], root: Path, name: str, fn) -> list[LabeledFile]:
    out = []
    for i, f in enumerate(files):
        x, _ = load_audio(f.path, SAMPLE_RATE, mono=True)
        dest = root / name / f.speaker / f"{Path(f.path).stem}.flac"
        dest.parent.mkdir(parents=True, exist_ok=True)
        save_audio(dest, np.asarray(fn(x[0], i), dtype=np.float32)[None], SAMPLE_RATE)
        out.append(LabeledFile(str(dest), f.speaker))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--speech", type=Path, required=True, help="folder with train-clean-100/ and test-other/")
    ap.add_argument("--backend", default="resemblyzer")
    ap.add_argument("--corpus", type=Path, default=None)
    ap.add_argument("--cm-scores", type=Path, default=None, help="CM score file of the corpus eval split")
    ap.add_argument("--update-card", action="store_true")
    ap.add_argument("--tables", action="store_true", help="only print the markdown tables of the last results")
    args = ap.parse_args()
    if args.tables:
        print(tables(json.loads(OUT.read_text())))
        return 0

    t_all = time.time()
    emb = load_embedder(args.backend)
    res: dict = {"backend": emb.info(), "machine": {"cpu_threads": os.cpu_count(), "python": sys.version.split()[0],
                                                   "platform": platform.platform()}}
    test_other = args.speech / "test-other"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["VOICEGUARD_CACHE"] = str(tmp / "cache")  # every figure from a cold cache

        # --- test-other pairs
        files = labels_from_folder(test_other)
        e = embed_files([f.path for f in files], emb)
        res["test_other"] = pairs_eer(e.embeddings, [f.speaker for f in files])
        print(f"test-other pairs: EER {res['test_other']['eer'] * 100:.2f} %", flush=True)

        # --- train-clean halves + speed (cold, then cached)
        hdir = tmp / "halves"
        hdir.mkdir()
        first, second, spk = halves(args.speech / "train-clean-100", hdir)
        ea = embed_files(first, emb)
        eb = embed_files(second, emb)
        assert ea.paths == tuple(first) and eb.paths == tuple(second), (ea.problems, eb.problems)
        s = ea.embeddings @ eb.embeddings.T
        n = len(first)
        tgt, non = s[np.eye(n, dtype=bool)], s[~np.eye(n, dtype=bool)]
        eer, thr = compute_eer(tgt, non)
        rank = rank_k_rates(s.T, np.arange(n))
        res["train_clean_halves"] = {
            "eer": eer, "threshold": thr, "eer_ci95": bootstrap_eer(tgt, non, 1000, seed=0),
            "rank1": rank[1], "rank5": rank[5], "d_sys": linkability(tgt, non)[0], "n_speakers": n,
            "n_target": int(tgt.size), "n_nontarget": int(non.size)}
        # the calibrated threshold applied to the other (held-out) set
        tgt_o, non_o = pair_scores(e.embeddings, e.embeddings, [f.speaker for f in files], symmetric=True)
        res["train_clean_halves"]["test_other_at_this_threshold"] = {
            "p_miss": float(np.mean(tgt_o < thr)), "p_fa": float(np.mean(non_o >= thr))}
        print(f"train-clean halves: EER {eer * 100:.2f} %, rank-1 {rank[1] * 100:.1f} %", flush=True)

        speed_files = (first + second)[:500]
        audio_s = sum(load_audio(f)[0].shape[1] for f in speed_files) / SAMPLE_RATE
        os.environ["VOICEGUARD_CACHE"] = str(tmp / "speed-cache")
        runs = []
        for _ in range(2):
            t0 = time.time()
            es = embed_files(speed_files, emb)
            sc = es.embeddings @ es.embeddings.T
            runs.append({"seconds": time.time() - t0, "cached": es.cached, "scores": int(sc.size)})
        res["speed"] = {"files": len(speed_files), "audio_seconds": audio_s, "cold": runs[0], "cached": runs[1],
                        "cached_speedup": runs[0]["seconds"] / runs[1]["seconds"]}
        print(f"speed: 500 files cold {runs[0]['seconds']:.1f} s, cached {runs[1]['seconds']:.2f} s", flush=True)

        # --- watermark identity
        res["watermark"] = {}
        for engine in ("audioseal", "spread-spectrum"):
            w = watermark_check(files, load_watermarker(engine), embedder=emb)
            res["watermark"][engine] = {k: v for k, v in w.to_dict().items() if k not in ("per_file", "backend")}
            print(f"watermark {engine}: cosine {w.cosine_mean:.4f}, EER {w.eer_before} -> {w.eer_after}", flush=True)

        # --- re-identification under processing
        by: dict[str, list[LabeledFile]] = {}
        for f in files:
            by.setdefault(f.speaker, []).append(f)
        enroll = [f for v in by.values() for f in sorted(v, key=lambda x: x.path)[:5]]
        probe = [f for v in by.values() for f in sorted(v, key=lambda x: x.path)[5:]]
        wm = load_watermarker("audioseal")
        shift = get_attack("pitch_shift", semitones=4.0)
        mp3 = get_attack("mp3", bitrate="32k")
        conditions = {
            "original": None,
            "watermarked (audioseal)": lambda x, i: wm.embed(x, SAMPLE_RATE, 0xBEEF),
            "pitch +4 semitones": lambda x, i: shift(x, SAMPLE_RATE),
            "mp3 32k": lambda x, i: mp3(x, SAMPLE_RATE),
        }
        res["reid"] = {}
        for name, fn in conditions.items():
            p = probe if fn is None else processed_copies(probe, tmp / "reid", f"probe-{len(res['reid'])}", fn)
            lazy = None if fn is None else processed_copies(enroll, tmp / "reid", f"enroll-{len(res['reid'])}", fn)
            r = reid_check(enroll, p, emb, lazy_enroll=lazy, n_boot=200, seed=0)
            res["reid"][name] = {"risk": r.risk, "explanation": r.explanation,
                                 "attackers": [a.to_dict() for a in r.attackers]}
            print(f"reid {name}: {r.explanation}", flush=True)

    # --- ASV under spoofing on the corpus
    if args.corpus:
        os.environ.pop("VOICEGUARD_CACHE")  # the temporary caches are gone: use the user's
        en, trl, audio, _ = corpus_asv_paths(args.corpus, "eval")
        out = args.corpus / "asv_scores.eval.txt"
        a = asv_check(read_asv_enrollment(en), read_asv_trials(trl), audio, emb, out=out, overwrite=True)
        res["corpus_asv"] = {k: v for k, v in a.to_dict().items() if k != "backend"}
        if args.cm_scores:
            from voiceguard.metrics.scores import evaluate_score_file

            m = evaluate_score_file(args.cm_scores, None, out)
            res["corpus_asv"]["cm"] = {"scores": str(args.cm_scores), "eer": m.eer.eer,
                                       "min_tdcf_2019": m.min_tdcf_2019, "min_tdcf_2021": m.min_tdcf_2021}
        print(f"corpus ASV: EER {a.metrics.eer * 100:.2f} %, spoof FA {a.metrics.p_fa_spoof * 100:.1f} %", flush=True)

    res["wall_seconds"] = time.time() - t_all
    OUT.parent.mkdir(exist_ok=True)
    atomic_write_text(OUT, json.dumps(res, indent=1, default=float) + "\n")
    if args.update_card:
        update_card(emb, res["train_clean_halves"])
    print(f"wrote {OUT} ({res['wall_seconds']:.0f} s)\n")
    print(tables(json.loads(OUT.read_text())))
    return 0


def pct(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x * 100:.{digits}f}"


def tables(r: dict) -> str:
    """The README's markdown tables from ``bench/results/risk.json``."""
    t, h, sp = r["test_other"], r["train_clean_halves"], r["speed"]
    lines = [
        f"Backend `{r['backend']['backend']}` ({r['backend']['fingerprint']}), cosine scoring, no normalisation.",
        "",
        "| set | trials (target / non-target) | EER % (95 % CI) | rank-1 % | rank-5 % | D_sys | target |",
        "|---|---|---|---|---|---|---|",
        f"| test-other, 10 readers x 10 utterances, all pairs | {t['n_target']} / {t['n_nontarget']} | "
        f"{pct(t['eer'])} ({pct(t['eer_ci95'][0])}-{pct(t['eer_ci95'][1])}) | - | - | - | EER <= 1 % |",
        f"| train-clean-100, 251 readers, first vs second half | {h['n_target']} / {h['n_nontarget']} | "
        f"{pct(h['eer'])} ({pct(h['eer_ci95'][0])}-{pct(h['eer_ci95'][1])}) | {pct(h['rank1'], 1)} | "
        f"{pct(h['rank5'], 1)} | {h['d_sys']:.3f} | EER <= 2.5 %, rank-1 >= 95 % |",
        "",
        f"Same-speaker threshold (cosine at the train-clean EER point, written to the card): {h['threshold']:.4f}; "
        f"on test-other it misses {pct(h['test_other_at_this_threshold']['p_miss'])} % of same-speaker pairs and "
        f"accepts {pct(h['test_other_at_this_threshold']['p_fa'])} % of different-speaker pairs.",
        "",
        f"Speed ({r['machine']['cpu_threads']} CPU threads): {sp['files']} files ({sp['audio_seconds'] / 60:.1f} min of "
        f"audio) embedded and all pairs scored in {sp['cold']['seconds']:.1f} s with a cold cache (target <= 120 s); "
        f"again from the cache in {sp['cached']['seconds']:.2f} s ({sp['cached_speedup']:.0f}x faster; target << 10 s).",
        "",
        "Watermark and identity (`risk watermark`, test-other, 100 files; EER over all pairs, after = test side "
        "watermarked, enrolment side original):",
        "",
        "| engine | cosine mean | min | 5th pct | EER before % | EER after % | goal met (mean >= 0.98, EER + <= 1 pt) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, w in r["watermark"].items():
        lines.append(f"| {name} | {w['cosine_mean']:.4f} | {w['cosine_min']:.4f} | {w['cosine_p05']:.4f} | "
                     f"{pct(w['eer_before'])} | {pct(w['eer_after'])} | {'yes' if w['passed'] else 'no'} |")
    lines += ["", "Re-identification (`risk reid`): test-other utterances 0-4 of each reader enrol, 5-9 are "
              "probes (50 probes, 10 speakers, chance rank-1 10 %); ignorant = enrolment on originals, lazy-informed "
              "= enrolment processed like the probes (leave-one-out within the probes for the original row):", "",
              "| probes | attacker | EER % (95 % CI) | D_sys | minCllr | rank-1 % | risk |", "|---|---|---|---|---|---|---|"]
    for name, c in r["reid"].items():
        for a in c["attackers"]:
            link = a["link"]
            ci = link["eer_ci"]
            lines.append(f"| {name} | {a['scenario']} | {pct(link['eer'], 1)} ({pct(ci[0], 1)}-{pct(ci[1], 1)}) | "
                         f"{link['d_sys']:.2f} | {link['min_cllr']:.3f} | {pct(a['rank']['rank1'], 1)} | {c['risk']} |")
    if "corpus_asv" in r:
        c = r["corpus_asv"]
        m = c["metrics"]
        lines += ["", f"ASV under spoofing (`risk asv --corpus`, default corpus eval split, {m['n_target']} target / "
                  f"{m['n_nontarget']} non-target / {m['n_spoof']} spoof trials): ASV EER {pct(m['eer'])} %, at its "
                  f"threshold P_miss {pct(m['p_miss'])} %, P_fa non-target {pct(m['p_fa_nontarget'])} %, "
                  f"P_fa spoof {pct(m['p_fa_spoof'])} %; SPF-EER {pct(m['spf_eer'])} %, SASV-EER {pct(m['sasv_eer'])} %."]
        if "cm" in c:
            lines += ["", f"With the shipped detector's scores on the same eval split (EER {pct(c['cm']['eer'])} %): "
                      f"min t-DCF {c['cm']['min_tdcf_2019']:.4f} (2019 legacy), {c['cm']['min_tdcf_2021']:.4f} "
                      "(2021 revised)."]
        lines += ["", "| attack | spoofs | accepted by the ASV % | mean cosine | fools the ASV (>= 50 %) |",
                  "|---|---|---|---|---|"]
        for a in c["per_attack"]:
            lines.append(f"| {a['attack']} | {a['n']} | {pct(a['accepted'], 1)} | {a['mean_score']:.3f} | "
                         f"{'yes' if a['fools_asv'] else 'no'} |")
    return "\n".join(lines)


def update_card(emb, halves_res: dict) -> None:
    """Write the calibrated same-speaker threshold and the measured figures into the backend's card."""
    import yaml

    path = emb.card.path
    card = yaml.safe_load(path.read_text())
    card["metrics"] = {
        "same_speaker_threshold": round(float(halves_res["threshold"]), 6),
        "threshold_from": "EER point on 251 LibriSpeech train-clean-100 readers, first vs second half of one "
                          "utterance each (bench/bench_risk.py)",
        "eer_train_clean_halves": round(float(halves_res["eer"]), 6),
        "rank1_train_clean_halves": round(float(halves_res["rank1"]), 6),
    }
    text = path.read_text().split("metrics:")[0] + yaml.safe_dump({"metrics": card["metrics"]}, sort_keys=False)
    atomic_write_text(path, text)
    print(f"updated {path}")


if __name__ == "__main__":
    sys.exit(main())
