"""Throughput of ``scan`` on the local executor and on Ray (1 and 2 workers), the driver's cost per row, and a
paper estimate for N nodes.

    python bench/bench_executors.py --speech ../shared/data/speech/librispeech [--files 1000] [--seconds 10] \
        [--runs local,ray1,ray2] [--out bench/results/executors.json] [--update-readme README.md]

Inputs: ``--files`` FLAC files of ``--seconds`` (16 kHz mono), each made by concatenating LibriSpeech utterances
in a seeded order (the same files for every run).  Each run scans the folder with the shipped default model and
the default watermark check (what ``voiceguard scan DIR --format jsonl -o rows.jsonl`` does) and writes its rows
through the command's own writer (``RowSink``, JSON lines, flushed per row), all in this one process:

- ``local``: the local executor (2 torch threads, 2 decoding threads: the command's defaults);
- ``ray1`` / ``ray2``: a private Ray instance on this machine with 1 or 2 actors of 1 CPU each (one torch thread
  and one decoding thread per actor), files in batches of 8.

Measured per run: wall time (Ray: from the first row asked for, so actor start-up and model hand-over are in;
connecting the instance is reported apart), files/s and x real time, the actors' time inside the scan
(``compute_s``), the driver's CPU time (``time.process_time`` of this process: Ray's client threads, result
deserialisation, writing the rows; per row counted from the first row on, the fixed start-up apart).  Derived: Ray overhead per file (wall of ``ray1`` after start-up, per file,
minus the actor's compute per file), the driver's share (driver CPU per row / the actor's compute per file), the
2-worker speed-up, and the estimate ``throughput(N nodes of k workers) = min(N k r, 1 / c)`` with ``r`` the
per-worker rate and ``c`` the driver's CPU per row (the driver writes every row, so it caps the cluster at
``1 / c`` rows/s).  The Ray rows are checked against the local rows (every file once, verdicts equal, largest LLR
difference).  Do not run it beside other CPU-heavy work: the figures are ratios in one process, but 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RUNS = {"local": None, "ray1": 1, "ray2": 2}


def make_files(speech: list[str], folder: Path, n: int, seconds: float, seed: int = 0) -> list[Path]:
    """``n`` FLAC files of ``seconds`` each (16 kHz mono), utterances concatenated in a seeded order."""
    import soundfile as sf

    from voiceguard.audio import SAMPLE_RATE, find_audio_files, load_audio

    files, _ = find_audio_files(speech)
    if not files:
        raise SystemExit(f"no speech files under {speech}")
    order = np.random.default_rng(seed).permutation(len(files))
    cache: dict[int, np.ndarray] = {}

    def get(j: int) -> np.ndarray:
        if j not in cache:
            cache[j] = load_audio(files[order[j % len(order)]], SAMPLE_RATE)[0].mean(axis=0)
        return cache[j]

    folder.mkdir(parents=True, exist_ok=True)
    out, j, need = [], 0, int(seconds * SAMPLE_RATE)
    for i in range(n):
        parts, total = [], 0
        while total < need:
            parts.append(get(j))
            total += parts[-1].size
            j += 1
        path = folder / f"clip{i:05d}.flac"
        if not path.exists():
            sf.write(path, np.concatenate(parts)[:need], SAMPLE_RATE, subtype="PCM_16")
        out.append(path)
    return out


def run(folder: Path, loaded, workers: int | None, rows_file: Path) -> dict:
    """One scan of ``folder``: its timings and rows (path -> verdict, llr, watermark)."""
    import voiceguard
    from voiceguard.cli.scan import ALL_COLUMNS
    from voiceguard.executors import ExecutorSpec, session
    from voiceguard.writers import RowSink

    spec = ExecutorSpec("local") if workers is None else ExecutorSpec("ray", workers=workers)
    t = time.perf_counter()
    with session(spec):
        connect_s = time.perf_counter() - t
        sink = RowSink("jsonl", ALL_COLUMNS, output=rows_file, overwrite=True)
        rows: dict[str, list] = {}
        c0, t0 = time.process_time(), time.perf_counter()
        c1 = None
        for r in voiceguard.scan([folder], model=loaded, executor=spec):
            sink.write(r.to_dict())
            rows[r.path] = [r.status, r.verdict, r.llr, r.watermark]
            if c1 is None:  # after the first row: the fixed costs (actors, the model handed over) are behind
                c1 = time.process_time()
        sink.close()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        steady_cpu = time.process_time() - c1
    out = {"executor": spec.kind, "workers": workers, "wall_s": round(wall, 2), "driver_cpu_s": round(cpu, 2),
           "driver_cpu_after_first_row_s": round(steady_cpu, 3),
           "connect_s": round(connect_s, 2), "files": len(rows),
           "errors": sum(v[0] != "ok" for v in rows.values())}
    if workers is not None:
        st = spec.stats
        out.update(startup_s=round(st["startup_s"], 2), compute_s=round(st["compute_s"], 2), tasks=st["tasks"],
                   failures=st["failures"])
    return out, rows


def summarise(res: dict, n: int, seconds: float) -> dict:
    """Rates, the Ray overhead, the driver's share and the N-node estimate from the runs in ``res``."""
    s: dict = {}
    for name, r in res.items():
        r["files_per_s"] = round(n / r["wall_s"], 3)
        r["x_real_time"] = round(n * seconds / r["wall_s"], 1)
        if "startup_s" in r:
            r["steady_files_per_s"] = round(n / (r["wall_s"] - r["startup_s"]), 3)
    if "ray1" in res:
        r1 = res["ray1"]
        per_file = r1["compute_s"] / n  # one actor's time inside the scan, per file
        s["worker_s_per_file"] = round(per_file, 4)
        s["ray_overhead_s_per_file"] = round((r1["wall_s"] - r1["startup_s"]) / n - per_file, 4)
        # the driver's CPU per row once the run is going (the fixed start-up costs are in startup_s)
        row_cpu = r1["driver_cpu_after_first_row_s"] / (n - 1)
        s["driver_cpu_s_per_row"] = round(row_cpu, 5)
        s["driver_cpu_fixed_s"] = round(r1["driver_cpu_s"] - r1["driver_cpu_after_first_row_s"], 2)
        s["driver_share"] = round(row_cpu / per_file, 4)
        rate = 1 / per_file
        cap = 1 / row_cpu  # rows/s the driver can take
        s["driver_cap_rows_per_s"] = round(cap, 1)
        s["estimate"] = [{"nodes": nodes, "workers_per_node": k, "files_per_s": round(min(nodes * k * rate, cap), 1),
                          "bound": "workers" if nodes * k * rate < cap else "driver"}
                         for k in (2, 16, 64) for nodes in (1, 4, 16, 64)]
        s["driver_bound_at_workers"] = round(cap / rate, 0)
    if "ray1" in res and "ray2" in res:
        s["speedup_2_vs_1"] = round(res["ray1"]["wall_s"] / res["ray2"]["wall_s"], 3)
        s["speedup_2_vs_1_steady"] = round(res["ray2"]["steady_files_per_s"] / res["ray1"]["steady_files_per_s"], 3)
    return s


def table(results: dict) -> str:
    n, sec = results["files"], results["seconds"]
    lines = [f"Executors (`python bench/bench_executors.py`, {results['date']}): `scan` of {n} files of {sec:g} s "
             f"({n * sec / 3600:.2f} h of LibriSpeech speech) with {results['model']} and the watermark check, rows "
             "written as JSON lines, on this 2-core machine.", "",
             "| executor | wall (s) | files/s | x real time | workers' start-up (s) | files/s after start-up | "
             "+ connecting Ray (s) |",
             "|---|---|---|---|---|---|---|"]
    for name, r in results["runs"].items():
        label = "local (default)" if name == "local" else f"ray, {r['workers']} worker(s)"
        lines.append(f"| {label} | {r['wall_s']:.1f} | {r['files_per_s']:.2f} | {r['x_real_time']:.0f}x | "
                     f"{r.get('startup_s', 0):.1f} | {r.get('steady_files_per_s', r['files_per_s']):.2f} | "
                     f"{r['connect_s']:.1f} |")
    if "local" in results["runs"] and "ray2" in results["runs"]:
        lo, r2 = results["runs"]["local"], results["runs"]["ray2"]
        lines += ["", f"Wall is from the first row asked for; a private Ray instance takes the last column's seconds "
                      f"more to start. Ray with 2 single-threaded workers is {lo['wall_s'] / r2['wall_s']:.2f}x the "
                      "local executor here (2 torch threads + 2 decoding threads in one process contend more than two "
                      f"processes do), still {lo['wall_s'] / (r2['wall_s'] + r2['connect_s']):.2f}x with the private instance's start "
                      "added."]
    s = results["summary"]
    if "speedup_2_vs_1" in s:
        met = "met" if s["speedup_2_vs_1"] >= 1.6 else "**not met**"
        lines += ["", f"- 2 workers vs 1: **{s['speedup_2_vs_1']:.2f}x** overall, {s['speedup_2_vs_1_steady']:.2f}x "
                      f"after start-up (target >= 1.6x: {met})."]
    if "driver_share" in s:
        met = "met" if s["driver_share"] < 0.05 else "**not met**"
        lines += [f"- Per file: the actor's work {s['worker_s_per_file'] * 1000:.0f} ms; Ray's overhead "
                  f"{s['ray_overhead_s_per_file'] * 1000:.1f} ms (1-worker wall after start-up, per file, minus the "
                  f"actor's work); the driver's CPU {s['driver_cpu_s_per_row'] * 1000:.2f} ms per row (after a "
                  f"fixed {s['driver_cpu_fixed_s']:.1f} s to start the actors and hand them the model) = "
                  f"**{s['driver_share'] * 100:.1f} %** of the per-file time (target < 5 %: {met}).",
                  f"- Estimate for N nodes: one worker scans {1 / s['worker_s_per_file']:.2f} files/s; the driver "
                  f"takes up to {s['driver_cap_rows_per_s']:.0f} rows/s, so it becomes the bottleneck at about "
                  f"**{s['driver_bound_at_workers']:.0f} workers** (e.g. "
                  + ", ".join(f"{e['nodes']} x {e['workers_per_node']}: {e['files_per_s']:.0f} files/s"
                              for e in s["estimate"] if e["workers_per_node"] == 16)
                  + " for 16-worker nodes). Past that, split the inputs over several drivers (one output file each).",
                  ]
    if results.get("agreement"):
        a = results["agreement"]
        lines.append(f"- Ray rows vs local rows: every file exactly once ({a['files']} files), verdicts and watermark "
                     f"columns equal: {a['same_verdicts']}, largest difference of the written LLRs (3 decimals) "
                     f"{a['max_llr_diff']:.3g}.")
    return "\n".join(lines) + "\n"


def update_readme(path: str, text: str) -> None:
    """Replace the README's ``bench-executors`` block with ``text`` (atomically; exactly one marker pair needed)."""
    from voiceguard.files import replace_marked_block

    replace_marked_block(path, "bench-executors", text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--speech", action="append", help="speech files / folders the clips are made of")
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--runs", default="local,ray1,ray2", help="comma-separated: " + ", ".join(RUNS))
    ap.add_argument("--workdir", default=None, help="where the clips and rows go [default: a temporary folder]")
    ap.add_argument("--out", default="bench/results/executors.json")
    ap.add_argument("--update-readme", default=None, metavar="README")
    ap.add_argument("--table", action="store_true", help="print the README block of --out and stop")
    args = ap.parse_args()
    if args.table or (args.update_readme and not args.speech):
        results = json.loads(Path(args.out).read_text())
        text = table(results)
        if args.update_readme:
            update_readme(args.update_readme, text)
        print(text)
        return 0
    if not args.speech:
        ap.error("--speech is required")
    from voiceguard.detect.models import load_model
    from voiceguard.files import atomic_write_text

    work = Path(args.workdir or tempfile.mkdtemp(prefix="vg-bench-exec-"))
    t = time.perf_counter()
    files = make_files(args.speech, work / "clips", args.files, args.seconds)
    print(f"{len(files)} clips in {work / 'clips'} ({time.perf_counter() - t:.0f} s)", file=sys.stderr)
    loaded = load_model(None)
    res, rows = {}, {}
    for name in args.runs.split(","):
        res[name], rows[name] = run(work / "clips", loaded, RUNS[name], work / f"rows_{name}.jsonl")
        print(f"{name}: {res[name]}", file=sys.stderr)
    agreement = None
    if "local" in rows and len(rows) > 1:
        ref = rows["local"]
        others = [r for k, r in rows.items() if k != "local"]
        agreement = {"files": len(ref),
                     "same_files": all(sorted(r) == sorted(ref) for r in others),
                     "same_verdicts": all(r[p][1] == ref[p][1] and r[p][3] == ref[p][3] for r in others for p in ref),
                     "max_llr_diff": max(abs(r[p][2] - ref[p][2]) for r in others for p in ref
                                         if r[p][2] is not None and ref[p][2] is not None)}
    import platform

    import ray
    import torch

    results = {"date": time.strftime("%Y-%m-%d"), "files": len(files), "seconds": args.seconds, "model": loaded.name,
               "runs": res, "summary": summarise(res, len(files), args.seconds), "agreement": agreement,
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                           "ray": ray.__version__}}
    atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    text = table(results)
    if args.update_readme:
        update_readme(args.update_readme, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
