"""Writers that render results (dicts from frozen dataclasses' ``to_dict``) per output format."""
from __future__ import annotations

import csv
import io
import json
from typing import Any, Sequence

FORMATS = ("table", "json", "jsonl", "csv")


def _cell(value: Any, percent: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value * 100:.4f}" if percent else f"{value:.4f}"
    return str(value)


def table(rows: Sequence[dict], columns: Sequence[str], *, percent: Sequence[str] = (),
          headers: dict[str, str] | None = None) -> str:
    """A plain fixed-width text table; ``percent`` columns are shown x100 with 4 decimals."""
    headers = headers or {}
    head = [headers.get(c, c) for c in columns]
    body = [[_cell(r.get(c), c in percent) for c in columns] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths)) for b in body]
    return "\n".join(lines)


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, default=str)


def to_jsonl(rows: Sequence[dict]) -> str:
    return "".join(json.dumps(r, default=str) + "\n" for r in rows)


def to_csv(rows: Sequence[dict], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    return buf.getvalue()


def render(rows: Sequence[dict], fmt: str, columns: Sequence[str], **table_kw: Any) -> str:
    """Render ``rows`` as ``table`` / ``json`` (one array) / ``jsonl`` / ``csv``."""
    if fmt == "table":
        return table(rows, columns, **table_kw) + "\n"
    if fmt == "json":
        return to_json(list(rows)) + "\n"
    if fmt == "jsonl":
        return to_jsonl(rows)
    if fmt == "csv":
        return to_csv(rows, columns)
    raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
