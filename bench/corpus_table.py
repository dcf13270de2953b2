"""Markdown tables of a built corpus (counts per split and attack, shortcut check) for the README.

    python bench/corpus_table.py CORPUS_DIR
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    d = Path(sys.argv[1])
    card = json.loads((d / "corpus.json").read_text())
    check = json.loads((d / "shortcut_check.json").read_text())
    attacks = sorted({a for c in card["counts"].values() for a in c["per_attack"] if a != "-"})
    print("| split | speakers | bona fide | spoof | hours | " + " | ".join(attacks) + " |")
    print("|---" * (5 + len(attacks)) + "|")
    for split, c in card["counts"].items():
        cells = [str(c["per_attack"].get(a, "")) for a in attacks]
        print(f"| {split} | {c['speakers']} | {c['bonafide']} | {c['spoof']} | {c['hours']:.2f} | " + " | ".join(cells)
              + " |")
    feats = list(next(iter(check["pooled"].values())))
    print("\nShortcut check, EER % of one-feature classifiers (pooled; pass >= 25 %):\n")
    print("| split | " + " | ".join(feats) + " | lowest single system |")
    print("|---" * (len(feats) + 2) + "|")
    for split, vals in check["pooled"].items():
        worst = min(((v, f"{a} {f}") for a, fs in check["per_system"][split].items() for f, v in fs.items()))
        print(f"| {split} | " + " | ".join(f"{vals[f] * 100:.1f}" for f in feats)
              + f" | {worst[0] * 100:.1f} ({worst[1]}) |")
    print(f"\nshortcut check: {'passed' if check['pass'] else 'FAILED'}; built in {card['build_seconds']:.0f} s "
          f"(seed {card['seed']}, config {card['config']['name']})")


if __name__ == "__main__":
    main()
