"""Thousands of malformed and odd inputs through the real CLI (issue #16), with the generator and the
checks of ``tests/malformed.py`` (see its docstring for the cases and the contract checked).

    python bench/bench_malformed.py [--n 3000] [--seed 16] [--pool 80] [--chunk 250]
        [--detect-every 1] [--embed-every 5] [--subprocess-every 100] [--out bench/results/malformed.json]

Per chunk of cases, each through the installed ``voiceguard`` entry point in a subprocess: one ``scan
--format jsonl --no-progress`` over a folder (plus the files without an audio extension by name), one
``watermark detect --format jsonl`` over every ``--detect-every``-th case, one folder -> folder
``watermark embed`` over every ``--embed-every``-th case (killed after ``--timeout`` s per case).  Rows
stream, so a scan / detect batch that prints nothing for ``--timeout`` s is killed, the first inputs
left without a row run alone (a hang is reported with its case), and the batch resumes after them.
Special paths (FIFO, symlink to /dev/zero, directory x.wav, dangling link) and every
``--subprocess-every``-th case are also scanned by name in their own batch; ``watermark embed SPECIAL
OUT`` runs once per kind of special path.

Writes totals (cases, outcomes by command / status / exit code, tracebacks, NaN outputs, hangs,
modified inputs, failures by kind) and every failing case (seed, case id, description, the command
that writes it) to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import malformed as mf  # noqa: E402


def _batch(runner, cases: list[mf.Case], root: str, rep: mf.Report, stall: float, **kw) -> None:
    """Run ``runner`` (``mf.run_scan`` / ``mf.run_wm_detect``) in subprocesses over ``cases``, killing a
    batch that prints no row for ``stall`` s; the first inputs left without a row are then run alone
    (a hang there is reported with its case) and the batch resumes after them."""
    remaining, attempt = list(cases), 0
    while remaining:
        got, stalled = runner(remaining, os.path.join(root, f"try{attempt}"), rep, subprocess_mode=True,
                              timeout=10 * 3600, stall=stall, **kw)
        if not stalled:
            return
        pending = [c for c in remaining if c.index not in got]
        for c in pending[:3]:  # decoding runs ahead by a file or two: one of these stalled
            runner([c], os.path.join(root, f"alone{c.index}"), rep, subprocess_mode=True, timeout=180 + stall,
                   **kw)
        remaining, attempt = pending[3:], attempt + 1


def _write(a, pool, done: list, rep: mf.Report, t0: float, t_pool: float) -> dict:
    rep.cases = len(done)
    s = {"command": "python bench/bench_malformed.py " + " ".join(sys.argv[1:]), "seed": a.seed, "n": a.n,
         "cases_done": len(done), "pool": a.pool, "max_seconds": a.max_seconds,
         "pool_families": sorted({b.family for b in pool}), "seconds": round(time.perf_counter() - t0, 1),
         "pool_seconds": round(t_pool, 1),
         "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}",
         **mf.summary(rep)}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(s, indent=1, ensure_ascii=False) + "\n")
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=3000, help="number of cases")
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--pool", type=int, default=80, help="base encodings made once (ffmpeg is slow)")
    ap.add_argument("--max-seconds", type=float, default=10.0, help="longest base")
    ap.add_argument("--chunk", type=int, default=250, help="cases per batch invocation")
    ap.add_argument("--detect-every", type=int, default=1, help="watermark detect on every k-th case (0: none)")
    ap.add_argument("--embed-every", type=int, default=5, help="watermark embed on every k-th case (0: none)")
    ap.add_argument("--subprocess-every", type=int, default=100,
                    help="also run every k-th case alone in a subprocess (0: only the special paths)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per case (batches: per case x size)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "malformed.json"))
    a = ap.parse_args()

    t0 = time.perf_counter()
    pool = mf.build_pool(a.seed, a.pool, a.max_seconds)
    t_pool = time.perf_counter() - t0
    cases = mf.generate(a.seed, a.n, pool)
    rep = mf.Report(cases=len(cases))
    work = tempfile.mkdtemp(prefix="voiceguard-malformed-")
    embedded_specials: set[str] = set()
    batch_timeout = lambda k: 300 + a.timeout * k  # noqa: E731 - generous: a batch only "hangs" when stuck
    try:
        for start in range(0, len(cases), a.chunk):
            chunk = cases[start:start + a.chunk]
            regular = [c for c in chunk if c.regular]
            root = os.path.join(work, f"chunk{start:06d}")
            _batch(mf.run_scan, regular, os.path.join(root, "scan"), rep, a.timeout)
            if a.detect_every:
                chosen = [c for c in chunk if c.index % a.detect_every == 0]
                _batch(mf.run_wm_detect, chosen, os.path.join(root, "detect"), rep, a.timeout)
            if a.embed_every:
                chosen = [c for c in regular if c.index % a.embed_every == 0]
                mf.run_wm_embed(chosen, os.path.join(root, "embed"), rep, subprocess_mode=True,
                                timeout=batch_timeout(len(chosen)))
            alone = [c for c in chunk if not c.regular
                     or (a.subprocess_every and c.index % a.subprocess_every == 0)]
            if alone:  # special paths (and a sample) by name, in their own subprocess batch
                _batch(mf.run_scan, alone, os.path.join(root, "sub-scan"), rep, a.timeout,
                       extra=("--no-watermark",))
            for c in chunk:  # `watermark embed SPECIAL OUT`: once per kind of special path
                if not c.regular and c.kind not in embedded_specials:
                    embedded_specials.add(c.kind)
                    mf.run_embed_special(c, os.path.join(root, f"embed-{c.index}"), rep, timeout=a.timeout)
            shutil.rmtree(root, ignore_errors=True)
            _write(a, pool, cases[:start + len(chunk)], rep, t0, t_pool)  # a killed run keeps what it did
            k = rep.by_kind()
            print(f"[{min(start + a.chunk, len(cases))}/{len(cases)}] {time.perf_counter() - t0:.0f} s, "
                  f"failures {dict(k)}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    s = _write(a, pool, cases, rep, t0, t_pool)
    print(json.dumps({k: v for k, v in s.items() if k != "failures"}, indent=1))
    print(f"results: {a.out}")


if __name__ == "__main__":
    main()
