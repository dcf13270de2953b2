"""Compare the figures of two joint-report JSON files (``voiceguard eval report`` -> report.json).

    python bench/compare_reports.py OLD/report.json NEW/report.json

Walks ``results`` and ``config`` (plus ``seed``, ``name``, ``format``) of both and prints every difference:
a number that is not bit-identical, a key only one side has, a list of another length. Timings, dates, the
environment block and figure file names are not compared (they describe the run, not the figures).
Exit code 0 when the figures are identical, 1 otherwise. Used in issue #17 to show that the refactored code
reproduces the pre-refactor report on the same machine and corpus.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

COMPARED = ("results", "config", "seed", "name", "format")


def differences(old, new, path: str = "") -> list[str]:
    """Every place where ``old`` and ``new`` (parsed JSON) differ, as ``path: old vs new`` lines."""
    out: list[str] = []
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new), key=str):
            if k not in old or k not in new:
                out.append(f"{path}.{k}: only in {'new' if k in new else 'old'}")
            else:
                out += differences(old[k], new[k], f"{path}.{k}")
    elif isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            out.append(f"{path}: {len(old)} vs {len(new)} items")
        for i, (a, b) in enumerate(zip(old, new)):
            out += differences(a, b, f"{path}[{i}]")
    elif isinstance(old, float) and isinstance(new, float) and math.isnan(old) and math.isnan(new):
        pass
    elif old != new or type(old) is not type(new):
        out.append(f"{path}: {old!r} vs {new!r}")
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    old, new = (json.loads(Path(p).read_text()) for p in argv)
    diffs = [d for key in COMPARED for d in differences(old.get(key), new.get(key), key)]
    print("\n".join(diffs) if diffs else "identical figures")
    print(f"{len(diffs)} difference(s)")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
