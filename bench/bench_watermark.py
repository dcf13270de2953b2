"""Watermark benchmark (issue #20): integrity, robustness, quality, localisation, speed, memory, scan cost.

    pip install -e .[bench]          # pesq, pystoi
    python bench/bench_watermark.py --speech ../shared/data/speech/librispeech/test-other \
        [--engine spread-spectrum --engine audioseal] [--clips 100] [--nonspeech 20] [--speed] [--memory] \
        [--scan] [--update-readme README.md]
    python bench/bench_watermark.py --speech ... --table [--update-readme README.md]   # table from the JSON

Clips: ``--clips`` held-out speech clips of 5 s (LibriSpeech test-other: speakers never seen in training)
plus ``--nonspeech`` music-like / noise clips of 5 s, each with a seeded random 16-bit message.
- robustness (``CONDITIONS``: the issue's list, trims, concatenation, codecs, resampling, filters, noise,
  reverb, speed / tempo / pitch, stereo 48 kHz, 8-bit, four cascades): detection TPR at the engine's
  calibrated threshold, exact-message rate, wrong-message rate, payload bit accuracy;
- clean FPR on the same clips unmarked, next to the engine's calibration record (>= 10,000 clean clips);
- quality: SI-SNR, PESQ (wide band) and STOI of the marked speech clips;
- localisation: 10 s clips with only 1 s marked (spliced into the original), IoU of frames with presence
  > 0.5 against the marked second;
- ``--speed``: embed / detect real-time factors on a 10 s clip; ``--memory``: peak RSS of ``voiceguard
  watermark embed`` / ``detect`` on a 1-hour 16 kHz file (subprocesses); ``--scan``: ``voiceguard.scan``
  time on 20 files of 10 s with and without the default watermark check.
Writes ``bench/results/watermark.json`` (other engines' figures from a run on the same clips are kept) and
prints the markdown table that ``--update-readme`` puts between the README's bench-watermark markers.
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

from voiceguard.audio import find_audio_files, load_audio, save_audio
from voiceguard.eval.report.watermark import perceptual_measures, quality as report_quality
from voiceguard.files import atomic_write_text
from voiceguard.watermark import load_watermarker, message_bits
from voiceguard.audio import SAMPLE_RATE

def clips_from(paths: list[str], n: int, seconds: float, seed: int = 0) -> list[np.ndarray]:
    """``n`` clips of ``seconds`` (16 kHz mono), one per file in a seeded order; a file shorter than
    ``seconds`` is continued with the next files of that order (LibriSpeech test-other has 100 files, 37 of
    them under 5 s).  Raises SystemExit when the files hold fewer than ``n`` starting points."""
    files, _ = find_audio_files(paths)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(files))
    need = int(seconds * SAMPLE_RATE)
    audio = {}

    def get(i):
        if i not in audio:
            audio[i] = load_audio(files[i], SAMPLE_RATE, mono=True)[0][0]
        return audio[i]

    out = []
    for k, f in enumerate(order[:n]):
        x, j = get(f), k
        while len(x) < need:  # continue with the following files (wrapping around)
            j += 1
            x = np.concatenate([x, get(order[j % len(order)])])
        s = int(rng.integers(0, len(x) - need + 1))
        out.append(x[s:s + need])
    if len(out) < n:
        raise SystemExit(f"only {len(out)} speech files under {paths}; {n} clips asked")
    return out


#: version of ``clips_from``'s rule: results measured on other clips are not merged
CLIP_RULE = 2


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


def nonspeech_clips(n: int, seconds: float, seed: int = 0) -> list[np.ndarray]:
    """``n`` non-speech clips (half music-like note sequences with percussion, half white / pink / brown
    noise), at -20 dBFS RMS, seeded; from the calibration's clean-signal generator."""
    from voiceguard.watermark.calibrate import _colored, _music

    rng = np.random.default_rng(seed)
    length = int(seconds * SAMPLE_RATE)
    out = []
    for i in range(n):
        x = _music(length, rng) if i % 2 == 0 else _colored(length, rng, float(i // 2 % 3))
        out.append((x / (np.sqrt(np.mean(x ** 2)) + 1e-12) * 0.1).astype(np.float32))
    return out


def _attack(name: str, **params):
    from voiceguard.attacks import get_attack

    def fn(y, sr, seed):
        return get_attack(name, seed=seed, **params)(y, sr), sr
    return fn


def _trim(samples: int):
    return lambda y, sr, seed: (y[samples:], sr)


def _stereo48k(y, sr, seed):
    from voiceguard.audio import resample

    z = resample(y, sr, 48000)
    return np.stack([z, z]), 48000


def _chain(*fns):
    def fn(y, sr, seed):
        for k, f in enumerate(fns):
            y, sr = f(y, sr, seed * 7 + k)
        return y, sr
    return fn


#: (label, target group, transform(marked, sr, seed) -> (audio, sr)).  Target groups (issue #20): "exact":
#: exact-message rate >= 0.99 and no wrong message; "tpr": detection TPR >= 0.95; "-": reported only.
#: "concat second half" is handled in ``robustness`` (unmarked audio, then the marked clip).
CONDITIONS = [
    ("none", "exact", lambda y, sr, seed: (y, sr)),
    ("trim 1 sample", "exact", _trim(1)), ("trim 16 samples", "exact", _trim(16)),
    ("trim 80 samples", "exact", _trim(80)), ("trim 160 samples", "exact", _trim(160)),
    ("trim 4000 samples", "exact", _trim(4000)), ("trim 0.5 s", "exact", _trim(SAMPLE_RATE // 2)),
    ("concat: mark in 2nd half", "exact", None),
    ("mp3 32k", "tpr", _attack("mp3", bitrate="32k")), ("mp3 64k", "exact", _attack("mp3", bitrate="64k")),
    ("mp3 128k", "exact", _attack("mp3", bitrate="128k")), ("aac 64k", "exact", _attack("aac", bitrate="64k")),
    ("opus 16k", "tpr", _attack("opus", bitrate="16k")), ("opus 32k", "exact", _attack("opus", bitrate="32k")),
    ("vorbis 64k (~q1)", "tpr", _attack("vorbis", bitrate="64k")),
    ("resample 8 kHz", "exact", _attack("resample", rate_hz=8000)),
    ("resample 22.05 kHz", "exact", _attack("resample", rate_hz=22050)),
    ("resample 44.1 kHz", "exact", _attack("resample", rate_hz=44100)),
    ("lowpass 4 kHz", "exact", _attack("lowpass", cutoff_hz=4000)),
    ("highpass 1.5 kHz", "exact", _attack("highpass", cutoff_hz=1500)),
    ("telephone 300-3400 Hz", "exact", _attack("bandpass", low_hz=300, high_hz=3400)),
    ("white noise 20 dB", "exact", _attack("white_noise", snr_db=20)),
    ("white noise 10 dB", "tpr", _attack("white_noise", snr_db=10)),
    ("pink noise 20 dB", "tpr", _attack("pink_noise", snr_db=20)),
    ("reverb (RT60 0.5 s)", "tpr", _attack("reverb")),
    ("speed 0.95", "exact", _attack("speed", factor=0.95)), ("speed 1.05", "exact", _attack("speed", factor=1.05)),
    ("tempo 1.1", "tpr", _attack("time_stretch", rate=1.1)),
    ("pitch +100 cents", "tpr", _attack("pitch_shift", semitones=1.0)),
    ("stereo 48 kHz", "tpr", _stereo48k), ("8-bit requantisation", "tpr", _attack("requantize", bits=8)),
    ("mp3 64k + noise 20 dB", "tpr", _chain(_attack("mp3", bitrate="64k"), _attack("white_noise", snr_db=20))),
    ("resample 8 kHz + mp3 64k", "tpr", _chain(_attack("resample", rate_hz=8000), _attack("mp3", bitrate="64k"))),
    ("trim 80 + opus 32k", "tpr", _chain(_trim(80), _attack("opus", bitrate="32k"))),
    ("telephone + aac 64k", "tpr", _chain(_attack("bandpass", low_hz=300, high_hz=3400), _attack("aac", bitrate="64k"))),
]


#: the conditions the speed-search variant is measured on
SEARCH_CONDITIONS = ["speed 0.95", "speed 1.05"]


def robustness(wm, clips, messages, seed: int = 0, conditions=None, n_speech: int | None = None) -> dict:
    """Per condition: detection TPR (at the engine's calibrated threshold), exact-message rate (the verified
    message equals the embedded one), wrong-message rate (a verified message that is not it), and bit
    accuracy of the payload bits (hard decisions, detected or not); clip ``i`` attacked with seed
    ``seed * 1000 + i``.  ``n_speech``: the first clips are speech; their exact-message rate is also given
    alone (``exact_speech``)."""
    marked = [wm.embed(x, SAMPLE_RATE, m) for x, m in zip(clips, messages)]
    out = {}
    for label, group, fn in CONDITIONS:
        if conditions and label not in conditions:
            continue
        det = exact = wrong = 0
        acc, hits = [], []
        t0 = time.perf_counter()
        try:
            for i, (x, y, m) in enumerate(zip(clips, marked, messages)):
                if fn is None:  # the clip's own unmarked audio, then the marked clip
                    z, sr = np.concatenate([x, y]), SAMPLE_RATE
                else:
                    z, sr = fn(y, SAMPLE_RATE, seed * 1000 + i)
                r = wm.detect(z, sr)
                det += r.detected
                exact += r.message == m
                hits.append(r.message == m)
                wrong += r.message is not None and r.message != m
                acc.append(float(np.mean(np.array(r.bits) == message_bits(m, wm.nbits))))
        except Exception as e:  # noqa: BLE001 - e.g. a codec missing from this ffmpeg: say so, go on
            out[label] = {"group": group, "unavailable": f"{type(e).__name__}: {e}"}
            print(f"  {label:>28}: unavailable: {e}", file=sys.stderr)
            continue
        n = len(clips)
        out[label] = a = {"group": group, "tpr": det / n, "exact": exact / n, "wrong": wrong / n,
                          "bit_acc": float(np.mean(acc)), "n": n}
        if n_speech:
            a["exact_speech"] = float(np.mean(hits[:n_speech]))
            a["exact_nonspeech"] = float(np.mean(hits[n_speech:])) if n > n_speech else None
        print(f"  {label:>28}: TPR {a['tpr']:.3f}  exact {a['exact']:.3f}  wrong {a['wrong']:.3f}  "
              f"bit acc {a['bit_acc']:.3f}  ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    return out


def quality(wm, clips, messages) -> dict:
    """SI-SNR, PESQ and STOI of the marked clips, measured as the report measures them
    (``voiceguard.eval.report.watermark.quality``)."""
    if not perceptual_measures():
        raise SystemExit("PESQ and STOI are not installed: pip install -e .[bench]")
    q = report_quality(clips, [wm.embed(x, SAMPLE_RATE, m) for x, m in zip(clips, messages)])
    return {"si_snr": q["si_snr"]["mean"], "pesq": q["pesq"]["mean"], "stoi": q["stoi"]["mean"],
            "si_snr_min": q["si_snr"]["min"], "n": q["si_snr"]["n"]}


def clean_fpr(wm, clips) -> dict:
    """False positives and wrong messages on the clips left unmarked."""
    rs = [wm.detect(x, SAMPLE_RATE) for x in clips]
    return {"fpr": float(np.mean([r.detected for r in rs])), "messages": int(sum(r.message is not None for r in rs)),
            "n": len(rs)}


def scan_overhead(paths: list[str], repeats: int = 2) -> dict:
    """Wall time of ``voiceguard.scan`` over ``paths`` with and without the default watermark check
    (the same process, shipped default detector; best of ``repeats``)."""
    import voiceguard

    def run(watermark) -> float:
        best = np.inf
        for _ in range(repeats):
            t = time.perf_counter()
            rows = list(voiceguard.scan(paths, watermark=watermark, workers=1))
            best = min(best, time.perf_counter() - t)
            assert all(r.status == "ok" for r in rows), [r.error for r in rows if r.status != "ok"]
        return best

    run(True)  # warm both models
    without, with_ = run(False), run(True)
    return {"files": len(paths), "seconds_without": without, "seconds_with": with_,
            "overhead": with_ / without - 1}


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


#: the AudioSeal paper's own quality figures (San Roman et al., 2024, "Proactive Detection of Voice Cloning
#: with Localized Watermarking", Table 2, full AudioSeal model): cited for context, not measured here
PAPER = {"si_snr": "26.00 (cited)", "pesq": "4.47 (cited)", "stoi": "-", "localisation": "-"}



def _met(a: dict) -> str:
    if "unavailable" in a:
        return "n/a"
    if a["group"] == "exact":
        return "met" if a["exact"] >= 0.99 and a["wrong"] == 0 else f"**miss** (exact {a['exact']:.2f})"
    if a["group"] == "tpr":
        return "met" if a["tpr"] >= 0.95 else f"**miss** (TPR {a['tpr']:.2f})"
    return ""


def table(results: dict) -> str:
    engines = list(results["engines"])
    lines = [f"{results['clips']} speech clips of 5 s (LibriSpeech test-other, speakers never seen in training) + "
             f"{results['nonspeech']} non-speech clips (music-like, noise), a seeded random 16-bit message each. "
             "exact: the verified message is the embedded one; wrong: a verified message that is not; "
             "bit acc: payload bits, hard decisions, detected or not. Target for the default engine: "
             "*exact* rows exact >= 0.99 and wrong = 0, *tpr* rows TPR >= 0.95.\n"]
    head = "| condition | target |" + "".join(f" {e}: TPR / exact / wrong / bit acc |" for e in engines)
    head += " default engine: exact on speech / non-speech |"
    lines += [head, "|---|---|" + "---|" * (len(engines) + 1)]
    labels = [c[0] for c in CONDITIONS if any(c[0] in r["robustness"] for r in results["engines"].values())]
    default = results.get("default")
    for label in labels:
        cells = []
        group = ""
        for e in engines:
            a = results["engines"][e]["robustness"].get(label)
            if a is None or "unavailable" in a:
                cells.append(" - |")
                continue
            group = a["group"]
            mark = f" ({_met(a)})" if e == default else ""
            cells.append(f" {a['tpr']:.2f} / {a['exact']:.2f} / {a['wrong']:.3f} / {a['bit_acc']:.3f}{mark} |")
        d = results["engines"].get(default, {}).get("robustness", {}).get(label, {})
        split = (f" {d['exact_speech']:.2f} / {d['exact_nonspeech']:.2f} |" if d.get("exact_nonspeech") is not None
                 else " - |")
        lines.append(f"| {label} | {group} |" + "".join(cells) + split)
    lines.append("")
    lines.append("| measure | " + " | ".join(engines) + " | AudioSeal paper |")
    lines.append("|---|" + "---|" * (len(engines) + 1))

    def row(name, fn, paper=""):
        vals = []
        for e in engines:
            try:
                vals.append(fn(results["engines"][e]))
            except (KeyError, TypeError):
                vals.append("-")
        lines.append(f"| {name} | " + " | ".join(vals) + f" | {paper} |")

    row("threshold (calibrated)", lambda r: f"{r['threshold']:.4f}")
    row("FPR, calibration (held-out clean clips)", lambda r: (
        f"{r['calibration']['false_positives']} / {r['calibration']['n_heldout']} "
        f"({r['calibration']['seconds'][0]:g}-{r['calibration']['seconds'][1]:g} s clips)"
        if "seconds" in r["calibration"] else
        f"{r['calibration']['false_positives']} / {r['calibration']['n_heldout']} (1 s windows)"))
    row("FPR, this bench's unmarked clips", lambda r: f"{r['fpr']['fpr']:.3f} ({r['fpr']['messages']} messages)")
    row("wrong-message bound per file", lambda r: r.get("wrong_bound") or (
        "none (no check value)" if "detector" in r["model"] else "as spread-spectrum (same code)"))
    row("SI-SNR (dB)", lambda r: f"{r['quality']['si_snr']:.1f} (min {r['quality']['si_snr_min']:.1f})", PAPER["si_snr"])
    row("PESQ (wb)", lambda r: f"{r['quality']['pesq']:.2f}", PAPER["pesq"])
    row("STOI", lambda r: f"{r['quality']['stoi']:.3f}", PAPER["stoi"])
    row("localisation IoU (1 s in 10 s)", lambda r: f"{r['localisation']['iou']:.2f}", PAPER["localisation"])
    row("embed (x real time, 10 s clip)", lambda r: f"{r['speed']['embed_rtf']:.0f}x")
    row("detect (x real time, 10 s clip)", lambda r: f"{r['speed']['detect_rtf']:.0f}x")
    row("1-hour file: peak RSS embed / detect", lambda r: (
        f"{r['memory']['embed']['peak_rss_mb']:.0f} / {r['memory']['detect']['peak_rss_mb']:.0f} MB"))
    for e in engines:
        if results["engines"][e].get("clip_note"):
            lines.append(f"\n{e} was measured on other clips than the rest: {results['engines'][e]['clip_note']}.")
    if "scan" in results:
        sc = results["scan"]
        lines.append(f"\n`scan` with the default watermark check vs without, {sc['files']} files of 10 s, same process: "
                     f"{sc['seconds_with']:.2f} s vs {sc['seconds_without']:.2f} s (**+{sc['overhead'] * 100:.0f} %**).")
    return "\n".join(lines) + "\n"


def update_readme(path: str, text: str) -> None:
    """Replace the README's ``bench-watermark`` block with ``text`` (atomically; exactly one marker pair needed)."""
    from voiceguard.files import replace_marked_block

    replace_marked_block(path, "bench-watermark", text)


def main() -> None:
    import torch

    from voiceguard.watermark import DEFAULT_ENGINE, WATERMARKERS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--speech", action="append", required=True, help="held-out speech files/folders")
    ap.add_argument("--engine", action="append", choices=sorted(WATERMARKERS))
    ap.add_argument("--clips", type=int, default=100, help="speech clips (5 s)")
    ap.add_argument("--nonspeech", type=int, default=20, help="non-speech clips (5 s): music-like, noise")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--condition", action="append", help="only these conditions (labels)")
    ap.add_argument("--speed", action="store_true", help="embed / detect real-time factors")
    ap.add_argument("--memory", action="store_true", help="peak RSS on a 1-hour file (subprocesses)")
    ap.add_argument("--scan", action="store_true", help="scan time with vs without the watermark check")
    ap.add_argument("--search-variant", action="store_true",
                    help=f"also the default engine with speed_search=True, on {', '.join(SEARCH_CONDITIONS)}")
    ap.add_argument("--table", action="store_true", help="only print the table from --out")
    ap.add_argument("--merge", action="append", default=[], metavar="JSON",
                    help="with --table: first copy the engines of these result files (same clips) into --out "
                         "(engines --out already has are kept)")
    ap.add_argument("--allow-other-clips", action="store_true",
                    help="--merge results measured on other clips too (noted under the table)")
    ap.add_argument("--update-readme", metavar="README", help="write the table into this README's block")
    ap.add_argument("--out", default="bench/results/watermark.json")
    args = ap.parse_args()
    if args.table:
        results = json.loads(Path(args.out).read_text())
        for other in args.merge:  # engines measured by another process on the same clips
            more = json.loads(Path(other).read_text())
            key = ("speech", "clips", "nonspeech", "seed", "clip_rule")
            if [more.get(k) for k in key] != [results.get(k) for k in key]:
                if not args.allow_other_clips:
                    raise SystemExit(f"{other} was measured on other clips than {args.out} (--allow-other-clips "
                                     "merges it with a note under the table)")
                for r in more["engines"].values():  # say which clips these figures are from
                    n = next(iter(r["robustness"].values())).get("n")
                    r["clip_note"] = (f"{n} clips: the speech files of at least 5 s, one clip each, plus "
                                      f"{more['nonspeech']} non-speech (clip rule {more.get('clip_rule', 1)})")
            for name, r in more["engines"].items():  # engines --out measured itself are kept
                results["engines"].setdefault(name, r)
            results.update({k: more[k] for k in ("scan",) if k in more and k not in results})
        if args.merge:
            atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
        text = table(results)
        print(text)
        if args.update_readme:
            update_readme(args.update_readme, text)
        return
    engines = args.engine or [DEFAULT_ENGINE, "audioseal"]
    clips = clips_from(args.speech, args.clips, 5.0, args.seed) + nonspeech_clips(args.nonspeech, 5.0, args.seed)
    rng = np.random.default_rng(args.seed)
    messages = [int(m) for m in rng.integers(0, 2 ** 16, len(clips))]
    ten = long_clips(args.speech, 20, 10.0, args.seed + 1)
    results = {"speech": args.speech, "clips": args.clips, "nonspeech": args.nonspeech, "seed": args.seed,
               "clip_rule": CLIP_RULE,
               "threads": torch.get_num_threads(), "default": DEFAULT_ENGINE, "engines": {}}
    if Path(args.out).is_file():  # keep other engines' figures from earlier runs with the same clips
        old = json.loads(Path(args.out).read_text())
        if (old.get("speech"), old.get("clips"), old.get("nonspeech"), old.get("seed"), old.get("clip_rule")) == (
                args.speech, args.clips, args.nonspeech, args.seed, CLIP_RULE):
            results["engines"] = old.get("engines", {})
            if "scan" in old:
                results["scan"] = old["scan"]
    for name in engines:
        wm = load_watermarker(name)
        print(f"{name}: {wm.model}", file=sys.stderr)
        previous = results["engines"].get(name, {})
        r = {"model": wm.model, "threshold": wm.threshold, "calibration": wm.calibration}
        if wm.code is not None:
            r["wrong_bound"] = (f"{max(wm.code.false_accept_bound(), max(wm.code.wrong_message_bound(p) for p in np.linspace(0.01, 0.5, 50))):.1e}"
                                f" (d_min {wm.code.min_distance()}, radius {wm.code.radius})")
        r["quality"] = quality(wm, clips[:args.clips], messages[:args.clips])
        r["robustness"] = robustness(wm, clips, messages, args.seed, args.condition, n_speech=args.clips)
        if args.condition:  # a partial run: keep the other conditions' earlier figures
            r["robustness"] = {**previous.get("robustness", {}), **r["robustness"]}
        r["fpr"] = clean_fpr(wm, clips)
        r["localisation"] = localisation(wm, ten, args.seed)
        if args.speed:
            r["speed"] = speed(wm, ten[0])
        if args.memory:
            r["memory"] = memory(name, ten[0])
        for key in ("speed", "memory"):  # not measured this run: keep the same model's earlier figures
            if key not in r and key in previous and previous.get("model") == wm.model:
                r[key] = previous[key]
        results["engines"][name] = r
        atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    if args.search_variant:
        wm = load_watermarker(DEFAULT_ENGINE, speed_search=True)
        name = f"{DEFAULT_ENGINE} --speed-search"
        print(name, file=sys.stderr)
        r = {"model": wm.model, "threshold": wm.threshold, "calibration": wm.calibration,
             "wrong_bound": results["engines"].get(DEFAULT_ENGINE, {}).get("wrong_bound"),
             "robustness": robustness(wm, clips, messages, args.seed, SEARCH_CONDITIONS, n_speech=args.clips),
             # every unmarked clip runs the whole search (about 3 s each): the first 20 speech + the
             # 20 non-speech clips
             "fpr": clean_fpr(wm, clips[:20] + clips[args.clips:])}
        results["engines"][name] = r
        atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    if args.scan:
        with tempfile.TemporaryDirectory() as d:
            paths = []
            for i, x in enumerate(ten[:20]):
                paths.append(str(Path(d) / f"{i:02d}.wav"))
                save_audio(paths[-1], x, SAMPLE_RATE)
            results["scan"] = scan_overhead(paths)
    atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    text = table(results)
    print(text)
    if args.update_readme:
        update_readme(args.update_readme, text)


if __name__ == "__main__":
    main()
