"""Reproduce the official ASVspoof 2019 LA reference table from ../shared as Markdown.

    python bench/parity_table.py [--shared ../shared]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from voiceguard.metrics.scores import evaluate_score_file


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    d = Path(ap.parse_args().shared) / "data" / "asvspoof2019"
    print("| scores | EER % | min t-DCF 2019 (legacy) | min t-DCF 2021 (revised) | minDCF | minCllr | seconds |")
    print("|---|---|---|---|---|---|---|")
    for v in ("mul", "add", "cat"):
        t = time.perf_counter()
        m = evaluate_score_file(d / f"RawGAT_ST_{v}_eval_scores.txt", d / "ASVspoof2019.LA.cm.eval.trl.txt",
                                d / "ASVspoof2019.LA.asv.eval.gi.trl.scores.txt")
        print(f"| RawGAT_ST_{v} | {m.eer.eer * 100:.4f} | {m.min_tdcf_2019:.4f} | {m.min_tdcf_2021:.4f} | "
              f"{m.min_dcf:.4f} | {m.min_cllr:.4f} | {time.perf_counter() - t:.1f} |")
    print(f"\nASV EER (organisers' eval ASV scores): {m.asv.eer * 100:.4f} %")


if __name__ == "__main__":
    main()
