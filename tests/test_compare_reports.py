"""bench/compare_reports.py: the figure comparison of two report.json files."""
from __future__ import annotations

import json
import sys

from helpers import REPO

sys.path.insert(0, str(REPO / "bench"))
import compare_reports  # noqa: E402


def test_identical_figures_and_each_kind_of_difference(tmp_path):
    base = {"name": "x", "seed": 0, "format": 1, "config": {"a": 1},
            "results": {"eer": 0.1, "rows": [1, 2], "nan": float("nan")}, "timings": {"t": 1.0}}
    other = json.loads(json.dumps(base))
    other["timings"] = {"t": 9.0}  # not a figure
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(base))
    b.write_text(json.dumps(other))
    assert compare_reports.main([str(a), str(b)]) == 0
    other["results"] = {"eer": 0.125, "rows": [1], "extra": 1, "nan": float("nan")}
    b.write_text(json.dumps(other))
    assert compare_reports.main([str(a), str(b)]) == 1
    diffs = compare_reports.differences(base["results"], other["results"], "results")
    assert diffs == ["results.eer: 0.1 vs 0.125", "results.extra: only in new",
                     "results.rows: 2 vs 1 items"]
