"""The corpus card as Markdown: what ``voiceguard data card CORPUS`` prints and writes into the README.

Tables: splits (utterances, speakers, hours), systems (family, generator, splits, utterances, measured
real-time factor, weights sha256, licence), channel conditions (attack, splits, bona fide / spoof copies) and
the shortcut check (the lowest one-feature EER pooled per split and per system, with its feature).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from voiceguard.files import read_text

from .build import SPLITS, CorpusError
from .shortcuts import failure_line


def read_card(corpus: str | os.PathLike) -> tuple[dict, dict]:
    """``(corpus.json, shortcut_check.json)`` of a built corpus; ``CorpusError`` naming the file otherwise."""
    out = []
    for name in ("corpus.json", "shortcut_check.json"):
        path = Path(corpus) / name
        try:
            out.append(json.loads(read_text(path, CorpusError, "corpus card")))
        except json.JSONDecodeError as e:
            raise CorpusError(f"not valid JSON ({e.msg}, line {e.lineno})", source=path) from None
    return out[0], out[1]


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _worst(eers: dict[str, float]) -> str:
    feature = min(eers, key=lambda f: eers[f])
    return f"{100 * eers[feature]:.1f} % ({feature})"


def corpus_markdown(corpus: str | os.PathLike) -> str:
    """The card of a built corpus as Markdown tables (see module docstring)."""
    card, check = read_card(corpus)
    counts = card["counts"]
    parts = [f"Corpus `{card['config']['name']}` (seed {card['seed']}), built in {card['build_seconds']:.0f} s "
             f"with {card['config']['workers']} workers; source: {card['sources'][0]['files']} files, "
             f"{card['sources'][0]['speakers']} speakers. Trials (clean utterances and their channel copies):",
             _table(["split", "bona fide", "spoof", "speakers", "hours"],
                    [[s, counts[s]["bonafide"], counts[s]["spoof"], counts[s]["speakers"], counts[s]["hours"]]
                     for s in SPLITS if s in counts])]
    rows = []
    for sid, d in card["systems"].items():
        n = "/".join(str(counts[s]["per_attack"].get(sid, 0)) for s in SPLITS)
        sha = ", ".join(f"`{k.rsplit('/', 1)[-1]}` {v[:12]}" for k, v in d.get("weights_sha256", {}).items()
                        if k.endswith((".onnx", ".bin", ".tar")))
        params = ", ".join(f"{k}={v}" for k, v in d["params"].items())
        what = (f"{d['generator']}" if d.get("generator") else d["engine"]) + (f"; {params}" if params else "")
        if not params and not d.get("generator"):
            what = d["recipe"]
        if d.get("same_as"):
            what = f"= {d['same_as']} (seen in training)"
        rate = f"{d['rate_of_origin_hz'] / 1000:g} kHz" if d.get("rate_of_origin_hz") else "-"
        rtf = "-" if d.get("rtf") is None else f"{d['rtf']:.2f}" + (" (with model load)"
                                                                  if d.get("rtf_includes_model_load") else "")
        rows.append([sid, d["family"], what, ", ".join(d["splits"]), n, rate, rtf, sha or "-",
                     d.get("licence", "-")])
    parts.append("Systems (n: clean utterances train/dev/eval, each with its channel copies besides; RTF: wall "
                 "seconds per second of audio made on one worker, as measured in this build, each process's first "
                 "call of a system, which loads its models, left out; rate of origin: the generator's native rate "
                 "where a neural system sets it):\n\n"
                 + _table(["id", "family", "generator / recipe", "splits", "n", "rate of origin", "RTF",
                           "weights sha256", "licence"], rows))
    if card.get("skipped_systems"):
        parts.append("Left out: " + "; ".join(f"{k}: {v}" for k, v in card["skipped_systems"].items()))
    ch = card.get("channels")
    if ch:
        rows = []
        for label, d in ch["conditions"].items():
            per = {s: counts[s].get("per_channel", {}).get(label, {}) for s in SPLITS}
            params = ", ".join(f"{k}={v}" for k, v in d["params"].items()) or "-"
            rows.append([label, f"{d['attack']} ({params})", ", ".join(d["splits"]),
                         " / ".join(f"{per[s].get('bonafide', 0)}+{per[s].get('spoof', 0)}" for s in SPLITS)])
        parts.append(f"Channels ({len(ch['conditions'])} conditions from the attack library; copies per split "
                     f"bona fide+spoof, train / dev / eval; every utterance also kept clean):\n\n"
                     + _table(["condition", "attack", "splits", "copies"], rows))
    rows = [[s, "pooled", _worst(check["pooled"][s])] for s in SPLITS if s in check["pooled"]]
    for s in SPLITS:
        for sid, eers in check.get("per_system", {}).get(s, {}).items():
            rows.append([s, sid, _worst(eers)])
    for s in SPLITS:
        for cond, eers in check.get("per_channel", {}).get(s, {}).items():
            rows.append([s, f"channel {cond}", _worst(eers)])
    verdict = "passed" if check["pass"] else "FAILED: " + "; ".join(failure_line(f) for f in check["failures"][:5])
    features = check.get("features") or list(next(iter(check["pooled"].values()), {}))
    rules = (f"pooled (pass >= {100 * check['pass_eer']:.0f} %) and per system (pass >= "
             f"{100 * check['system_eer']:.0f} %), and within each channel condition (pass >= "
             f"{100 * check['pass_eer']:.0f} %)" if "system_eer" in check else
             f"pooled (pass >= {100 * check['pass_eer']:.0f} %; an older build: per-system figures not checked, "
             f"rerun `voiceguard data check`)")
    parts.append(f"Shortcut check ({', '.join(features)}): the lowest EER a single feature reaches on the clean "
                 f"utterances, {rules}: {verdict}.\n\n"
                 + _table(["split", "system", "lowest one-feature EER"], rows))
    return "\n\n".join(parts) + "\n"


__all__ = ["corpus_markdown", "read_card"]
