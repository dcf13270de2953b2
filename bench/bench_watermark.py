"""Watermark quality, robustness, localisation and speed: the README's watermark tables.

    pip install -e .[bench]          # pesq, pystoi
    python bench/bench_watermark.py --speech ../shared/data/speech/librispeech/test-other \
        [--engine audioseal --engine spread-spectrum] [--clips 60] [--speed] [--memory] [--update-card]

Held-out speech (speakers never seen in training: the shipped model trains on train-clean-100) is cut
into 5 s clips; each clip gets a seeded random 16-bit message.
- quality: SI-SNR, PESQ (wide band) and STOI of watermarked vs original;
- robustness: every attack of the ``audioseal-paper`` suite plus speed 1.1, MP3 32k, AAC 64k and lowpass
  5 kHz: TPR at the engine's calibrated threshold, and bit accuracy (decoded vs embedded bits); the false
  positive rate on the same clips left unmarked (and attacked) is reported next to it;
- localisation: 10 s clips with only 1 s marked (the marked segment spliced into the original): IoU of
  frames with presence > 0.5 against the marked second;
- ``--speed``: embed real-time factor on 10 s clips and its overhead over calling the bare generator on
  the same audio; detect real-time factor;
- ``--memory``: peak RSS of ``voiceguard watermark embed`` and ``detect`` on a 1-hour 16 kHz file
  (subprocesses, ru_maxrss).
Writes ``bench/results/watermark.json`` and prints markdown tables.
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

from voiceguard.attacks import load_suite, suite_from_rows
from voiceguard.audio import find_audio_files, load_audio, save_audio
from voiceguard.eval.report.watermark import attack_rates, perceptual_measures, quality as report_quality
from voiceguard.files import atomic_write_text
from voiceguard.watermark import load_watermarker, message_bits
from voiceguard.audio import SAMPLE_RATE

EXTRA_ATTACKS = [("speed 1.1", "speed", {"factor": 1.1}), ("mp3 32k", "mp3", {"bitrate": "32k"}),
                 ("aac 64k", "aac", {"bitrate": "64k"}), ("lowpass 5k", "lowpass", {"cutoff_hz": 5000})]


def clips_from(paths: list[str], n: int, seconds: float, seed: int = 0) -> list[np.ndarray]:
    """``n`` clips of ``seconds`` (16 kHz mono) from different files, seeded."""
    files, _ = find_audio_files(paths)
    rng = np.random.default_rng(seed)
    out = []
    for f in rng.permutation(len(files)):
        x = load_audio(files[f], SAMPLE_RATE, mono=True)[0][0]
        if len(x) >= seconds * SAMPLE_RATE:
            s = int(rng.integers(0, len(x) - int(seconds * SAMPLE_RATE) + 1))
            out.append(x[s:s + int(seconds * SAMPLE_RATE)])
        if len(out) == n:
            break
    return out


def long_clips(paths: list[str], n: int, seconds: float, seed: int = 1) -> list[np.ndarray]:
    """Clips of ``seconds`` made by concatenating files (LibriSpeech utterances are often shorter)."""
    files, _ = find_audio_files(paths)
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        parts, total = [], 0
        while total < seconds * SAMPLE_RATE:
            x = load_audio(files[int(rng.integers(len(files)))], SAMPLE_RATE, mono=True)[0][0]
            parts.append(x)
            total += len(x)
        out.append(np.concatenate(parts)[:int(seconds * SAMPLE_RATE)])
    return out


def attack_rows() -> list:
    """The ``audioseal-paper`` suite's conditions plus ``EXTRA_ATTACKS``, as suite rows (the report's form)."""
    extra = suite_from_rows("extra", "", [{"label": label, name: params} for label, name, params in EXTRA_ATTACKS])
    return list(load_suite("audioseal-paper").rows) + list(extra.rows)


def quality(wm, clips, messages) -> dict:
    """SI-SNR, PESQ and STOI of the marked clips, measured as the report measures them
    (``voiceguard.eval.report.watermark.quality``)."""
    if not perceptual_measures():
        raise SystemExit("PESQ and STOI are not installed: pip install -e .[bench]")
    q = report_quality(clips, [wm.embed(x, SAMPLE_RATE, m) for x, m in zip(clips, messages)])
    return {"si_snr": q["si_snr"]["mean"], "pesq": q["pesq"]["mean"], "stoi": q["stoi"]["mean"],
            "si_snr_min": q["si_snr"]["min"], "n": q["si_snr"]["n"]}


def robustness(wm, clips, messages, seed: int = 0) -> dict:
    """TPR / bit accuracy / FPR per condition, measured as the report measures them
    (``voiceguard.eval.report.watermark.attack_rates``: the i-th clip's attack seeded with ``file_seed(seed, i)``,
    the marked clip and its original attacked alike)."""
    marked = [wm.embed(x, SAMPLE_RATE, m) for x, m in zip(clips, messages)]
    out = {}
    for row in attack_rows():
        out[row.label] = a = attack_rates(wm, row, clips, marked, messages, seed)
        if "unavailable" in a:
            print(f"  {row.label:>12}: unavailable: {a['unavailable']}", file=sys.stderr)
            continue
        print(f"  {row.label:>12}: TPR {a['tpr']:.3f}  bit acc {a['bit_acc']:.3f}  FPR {a['fpr']:.3f}", file=sys.stderr)
    return out


def localisation(wm, clips, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    ious = []
    for x in clips:
        y = wm.embed(x, SAMPLE_RATE, int(rng.integers(0, 2 ** 16)))
        s = int(rng.integers(0, len(x) - SAMPLE_RATE))
        z = x.copy()
        z[s:s + SAMPLE_RATE] = y[s:s + SAMPLE_RATE]
        r = wm.detect(z, SAMPLE_RATE)
        truth = np.zeros(len(r.presence), bool)
        truth[s // 320:(s + SAMPLE_RATE) // 320] = True
        pred = r.presence > 0.5
        ious.append((truth & pred).sum() / max(1, (truth | pred).sum()))
    return {"iou": float(np.mean(ious)), "iou_min": float(np.min(ious)), "n": len(ious)}


def speed(wm, clip10: np.ndarray, repeats: int = 5) -> dict:
    import torch

    from voiceguard.watermark.models import eager

    wm.embed(clip10, SAMPLE_RATE, 1)
    t = time.perf_counter()
    for _ in range(repeats):
        wm.embed(clip10, SAMPLE_RATE, 1)
    t_embed = (time.perf_counter() - t) / repeats
    out = {"embed_rtf": len(clip10) / SAMPLE_RATE / t_embed}
    if getattr(wm, "generator", None) is not None:  # the bare model on the same 10 s, one call
        xt = torch.from_numpy(clip10)[None, None]
        msg = torch.from_numpy(message_bits(1))[None]
        with torch.inference_mode(), eager():
            wm.generator(xt, message=msg)
            t = time.perf_counter()
            for _ in range(repeats):
                wm.generator(xt, message=msg)
            t_bare = (time.perf_counter() - t) / repeats
        out["bare_rtf"] = len(clip10) / SAMPLE_RATE / t_bare
        out["overhead"] = t_embed / t_bare - 1
    wm.detect(clip10, SAMPLE_RATE)
    t = time.perf_counter()
    for _ in range(repeats):
        wm.detect(clip10, SAMPLE_RATE)
    out["detect_rtf"] = len(clip10) / SAMPLE_RATE / ((time.perf_counter() - t) / repeats)
    return out


def memory(engine: str, clip: np.ndarray) -> dict:
    """Peak RSS of the CLI embedding and detecting a 1-hour 16 kHz mono file (fresh subprocesses)."""
    exe = Path(sys.executable).with_name("voiceguard")
    with tempfile.TemporaryDirectory() as d:
        hour = np.tile(clip, int(np.ceil(3600 * SAMPLE_RATE / len(clip))))[:3600 * SAMPLE_RATE]
        save_audio(Path(d) / "hour.wav", hour, SAMPLE_RATE)
        out = {}
        for step, args in (("embed", ["embed", f"{d}/hour.wav", f"{d}/marked.wav", "--message", "0xBEEF"]),
                           ("detect", ["detect", f"{d}/marked.wav", "--format", "json"])):
            t = time.perf_counter()
            code = (f"import resource, subprocess, sys; r = subprocess.run({[str(exe), 'watermark', *args, '--engine', engine]!r}, "
                    "capture_output=True, text=True); "
                    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode); "
                    "sys.stderr.write(r.stderr[-500:])")
            res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            rss_kb, rc = res.stdout.split()
            out[step] = {"peak_rss_mb": int(rss_kb) / 1024, "seconds": time.perf_counter() - t, "exit": int(rc)}
            if step == "detect":
                out[step]["found"] = int(rc) == 1  # detect exits 1 when it finds a watermark
        return out


def table(results: dict) -> str:
    lines = []
    for engine, r in results["engines"].items():
        q = r.get("quality", {})
        lines.append(f"\n**{engine}** ({r['model']}; threshold {r['threshold']:.4f})\n")
        if q:
            lines.append(f"Quality on {q['n']} held-out clips of 5 s: SI-SNR {q['si_snr']:.1f} dB "
                         f"(min {q['si_snr_min']:.1f}), PESQ {q['pesq']:.2f}, STOI {q['stoi']:.3f}\n")
        lines.append("| attack | TPR | bit acc | FPR (unmarked) |\n|---|---|---|---|")
        for label, a in r["robustness"].items():
            if "unavailable" in a:
                lines.append(f"| {label} | - | - | - |")
                continue
            lines.append(f"| {label} | {a['tpr']:.3f} | {a['bit_acc']:.3f} | {a['fpr']:.3f} |")
        if "localisation" in r:
            loc = r["localisation"]
            lines.append(f"\nLocalisation (1 s marked in 10 s, {loc['n']} clips): IoU {loc['iou']:.3f} "
                         f"(min {loc['iou_min']:.3f})")
        if "speed" in r:
            s = r["speed"]
            extra = (f", bare generator {s['bare_rtf']:.1f}x, overhead {s['overhead'] * 100:.1f} %"
                     if "bare_rtf" in s else "")
            lines.append(f"\nSpeed (10 s clip, {results['threads']} torch threads): embed {s['embed_rtf']:.1f}x "
                         f"real time{extra}; detect {s['detect_rtf']:.1f}x real time")
        if "memory" in r:
            m = r["memory"]
            lines.append(f"\n1-hour file: embed peak RSS {m['embed']['peak_rss_mb']:.0f} MB "
                         f"({m['embed']['seconds']:.0f} s), detect {m['detect']['peak_rss_mb']:.0f} MB "
                         f"({m['detect']['seconds']:.0f} s)")
    return "\n".join(lines) + "\n"


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--speech", action="append", required=True, help="held-out speech files/folders")
    ap.add_argument("--engine", action="append", choices=["audioseal", "spread-spectrum"])
    ap.add_argument("--clips", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--memory", action="store_true")
    ap.add_argument("--update-card", action="store_true", help="store the audioseal figures in its cards")
    ap.add_argument("--out", default="bench/results/watermark.json")
    args = ap.parse_args()
    engines = args.engine or ["audioseal", "spread-spectrum"]
    clips = clips_from(args.speech, args.clips, 5.0, args.seed)
    rng = np.random.default_rng(args.seed)
    messages = [int(m) for m in rng.integers(0, 2 ** 16, len(clips))]
    ten = long_clips(args.speech, max(10, args.clips // 3), 10.0, args.seed + 1)
    results = {"speech": args.speech, "clips": len(clips), "seed": args.seed, "threads": torch.get_num_threads(),
               "engines": {}}
    if Path(args.out).is_file():  # keep other engines' figures from earlier runs with the same clips
        old = json.loads(Path(args.out).read_text())
        if (old.get("speech"), old.get("clips"), old.get("seed")) == (args.speech, len(clips), args.seed):
            results["engines"] = old.get("engines", {})
    for name in engines:
        wm = load_watermarker(name)
        print(f"{name}: {wm.model}", file=sys.stderr)
        r = {"model": wm.model, "threshold": wm.threshold, "calibration": wm.calibration}
        r["quality"] = quality(wm, clips, messages)
        r["robustness"] = robustness(wm, clips, messages, args.seed)
        r["localisation"] = localisation(wm, ten, args.seed)
        if args.speed:
            r["speed"] = speed(wm, ten[0])
        if args.memory:
            r["memory"] = memory(name, ten[0])
        previous = results["engines"].get(name, {})
        for key in ("speed", "memory"):  # not measured this run: keep the same model's earlier figures
            if key not in r and key in previous and previous.get("model") == wm.model:
                r[key] = previous[key]
        results["engines"][name] = r
    atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    print(table(results))
    if args.update_card and "audioseal" in results["engines"]:
        from voiceguard.watermark.models import DEFAULT_GENERATOR, update_card

        r = results["engines"]["audioseal"]
        summary = {"quality": r["quality"], "robustness": r["robustness"], "localisation": r["localisation"],
                   "speech": args.speech, "command": "python " + " ".join(sys.argv)}
        update_card(DEFAULT_GENERATOR, metrics=summary)


if __name__ == "__main__":
    main()
