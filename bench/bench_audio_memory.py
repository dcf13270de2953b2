"""Peak memory of the audio path on a long file: streaming must stay bounded, a full load must
not hold the audio twice.  Figures are ratios against the in-run baseline (imports only).

    python bench/bench_audio_memory.py [--minutes 60] [--out bench/results/audio_memory.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import resource, sys, time
mode, path = sys.argv[1], sys.argv[2]
from voiceguard.audio import SAMPLE_RATE, load_audio, stream_audio
t = time.perf_counter()
if mode == "stream":
    n = sum(b.shape[1] for b in stream_audio(path, block_seconds=10.0))
elif mode == "stream16k":
    n = sum(b.shape[1] for b in stream_audio(path, block_seconds=10.0, target_sr=SAMPLE_RATE))
elif mode == "load":
    n = load_audio(path)[0].shape[1]
else:
    n = 0
print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, time.perf_counter() - t)
"""


def write_long_file(path: str, minutes: float, sr: int) -> int:
    import numpy as np
    import soundfile as sf

    n = int(minutes * 60 * sr)
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", sr, 1, subtype="PCM_16", format="FLAC") as f:
        for start in range(0, n, sr * 60):
            m = min(sr * 60, n - start)
            t = (start + np.arange(m)) / sr
            f.write((0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(m)).astype("float32"))
    return n


def run(mode: str, path: str) -> tuple[int, int, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, mode, path], capture_output=True, text=True, check=True)
    n, rss, secs = out.stdout.split()
    return int(n), int(rss), float(secs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--sr", type=int, default=44100)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "long.flac")
        t = time.perf_counter()
        n = write_long_file(path, args.minutes, args.sr)
        print(f"wrote {args.minutes:g} min at {args.sr} Hz ({n} samples) in {time.perf_counter() - t:.1f} s")
        audio_bytes = n * 4  # float32, mono
        _, base, _ = run("baseline", path)
        res = {"minutes": args.minutes, "sample_rate": args.sr, "audio_float32_mb": audio_bytes / 2**20,
               "baseline_rss_mb": base / 2**20}
        for mode in ("stream", "stream16k", "load"):
            got, rss, secs = run(mode, path)
            extra = rss - base
            res[mode] = {"samples": got, "peak_rss_mb": rss / 2**20, "extra_over_baseline_mb": extra / 2**20,
                         "extra_vs_audio_size": extra / audio_bytes, "seconds": secs,
                         "x_realtime": args.minutes * 60 / secs}
            print(f"{mode:10s} peak RSS {rss / 2**20:8.1f} MB  (+{extra / 2**20:7.1f} MB over baseline = "
                  f"{extra / audio_bytes:.2f} x the decoded audio)  {secs:6.1f} s, "
                  f"{args.minutes * 60 / secs:6.0f} x real time")
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
