"""Writers of the report: one list of blocks (headings, paragraphs, tables, figures) rendered as Markdown and
as self-contained HTML, plus ``report.json`` and the README's headline block."""
from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Mapping

from voiceguard.files import (atomic_write_text, block_markers, check_marked_block, marked_block,
                              replace_marked_block)

from .results import ConditionResult, Report

README_BEGIN, README_END = block_markers("report")

DEFINITIONS = {
    "eer": "EER: the error rate where bona fide rejections equal spoof acceptances (official ASVspoof DET method).",
    "tdcf": "min t-DCF: the normalised tandem detection cost of CM + ASV at the best CM threshold (ASVspoof 2019 "
            "legacy and 2021 revised cost models, official parameters).",
    "dcf": "minDCF / actDCF / Cllr / minCllr: ASVspoof 5 costs of the scores read as log-likelihood ratios "
           "(act* use the card's calibration, min* the best possible one).",
    "tpr": "TPR: share of marked clips detected at the engine's calibrated threshold; bit acc: share of the 16 "
           "message bits decoded right (random messages per clip); FPR: share of the same clips, unmarked and "
           "attacked the same way, flagged as marked.",
    "snr": "SI-SNR: scale-invariant SNR of the marked clip against the original (dB); PESQ (wide-band) and STOI "
           "when the optional packages are installed.",
    "asv": "ASV EER on target vs non-target trials; P_fa spoof: spoofs accepted at the ASV EER threshold; "
           "SPF-EER: target vs spoof; SASV-EER: target vs non-target + spoof.",
    "reid": "rank-1: probes whose own speaker scores highest among the enrolled speakers; EER / D_sys "
            "(Gomez-Barrero 2017 linkability) on same- vs other-speaker scores. Ignorant: enrolment on original "
            "audio; lazy-informed: leave-one-out within the processed probes.",
}


def pct(v) -> str:
    return "n/a" if v is None else f"{v * 100:.2f}"


def num(v, digits: int = 4) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


# --------------------------------------------------------------------------- content
def _attack_summary(conditions: dict[str, ConditionResult]) -> tuple[float | None, float | None, str]:
    vals = {k: v.eer for k, v in conditions.items() if v.available}
    if not vals:
        return None, None, "-"
    worst = max(vals, key=vals.get)
    return sum(vals.values()) / len(vals), vals[worst], worst


def _report(report: Report | Mapping) -> Report:
    """A report as read from ``report.json`` (a mapping) becomes a ``Report``."""
    return Report.from_dict(report) if isinstance(report, Mapping) else report


def headline_blocks(report: Report | Mapping) -> list[tuple]:
    """The few tables a reader needs first (also the README's results block)."""
    report = _report(report)
    r = report.results
    d = r.data
    blocks: list[tuple] = [("p", f"Eval set: {d.n_bonafide} bona fide + {d.n_spoof} spoof trials "
                                 f"({d.layout} layout, spoofing systems {', '.join(d.attacks)}); seed "
                                 f"{report.seed}.")]
    rows = []
    for label, det in r.detection.items():
        m = det.metrics
        mean, worst, cond = _attack_summary(det.conditions)
        rows.append({"detector": f"`{label}`", "EER %": pct(m.eer),
                     "min t-DCF 2021": num(m.min_tdcf_2021), "min t-DCF 2019": num(m.min_tdcf_2019),
                     "EER % under attack (mean)": pct(mean),
                     "worst condition": "-" if worst is None else f"{cond}: {pct(worst)}"})
    blocks.append(("table", list(rows[0]), rows))
    if r.watermark:
        rows = []
        for engine, w in r.watermark.items():
            s = w.summary()  # None: every attack unavailable here
            rows.append({"watermark": f"`{engine}`", "SI-SNR dB": num(w.quality["si_snr"].mean, 1),
                         "TPR mean": num(None if s is None else s.tpr_mean, 3),
                         "TPR worst": "all unavailable: n/a" if s is None else f"{s.worst}: {num(s.tpr_worst, 3)}",
                         "bit acc mean": num(None if s is None else s.bit_acc, 3),
                         "FPR max": num(None if s is None else s.fpr_max, 3)})
        blocks.append(("table", list(rows[0]), rows))
    rows = []
    if r.asv is not None:
        a = r.asv.metrics
        rows.append({"risk check": "ASV EER (own speaker embeddings)", "value": f"{pct(a.eer)} %"})
        rows.append({"risk check": "spoofs accepted by the ASV at its EER threshold",
                     "value": f"{pct(a.p_fa_spoof)} %"})
    for cond, rr in (r.reid or {}).items():
        if rr.available:
            ranks = " / ".join(f"{pct(a.rank['rank1'])} % {a.scenario}" for a in rr.attackers)
            rows.append({"risk check": f"re-identification rank-1 of {rr.attackers[0].n_speakers} speakers, "
                                       f"probes {cond}", "value": f"{ranks} ({rr.risk} risk)"})
    if rows:
        blocks.append(("table", ["risk check", "value"], rows))
    return blocks


def environment_blocks(report: Report | Mapping) -> list[tuple]:
    """The section that says what, besides the config and seed, the figures depend on (``environment``)."""
    env = _report(report).environment
    hw = env.hardware
    codecs = env.codecs
    libs = {k: v for k, v in ((codecs and codecs.libraries) or {}).items() if not k.startswith(("libav", "libsw"))}
    b: list[tuple] = [("h", 2, "What the figures depend on"), (
        "p", "The same config and seed give the same figures only with the same environment. Measured, not "
             "assumed: the codec attacks' audio is whatever the installed ffmpeg's encoders make (another libopus "
             "release changes the Opus condition's scores by up to 1.5 LLR units); torch's results change in the "
             f"last bits with its thread count (fixed to {hw.torch_threads} for every report) and CPU kernels; "
             "decoding, resampling, features and speaker embeddings follow the package versions; a corpus built "
             "by `voiceguard data build` follows its TTS tools. Compare these with another run's before comparing "
             "its figures.")]
    v = env.versions
    pk = {"voiceguard": v.get("voiceguard"), "python": v.get("python"), **env.packages} if env.packages else v
    kernels = "?" if hw.torch_cpu_kernels is None else hw.torch_cpu_kernels
    rows = [{"what": "packages", "value": ", ".join(f"{k} {v}" for k, v in pk.items())},
            {"what": "torch", "value": f"{hw.torch_threads} threads, CPU kernels {kernels}"
                                       f", CPU {hw.cpu} ({', '.join(hw.cpu_flags or []) or 'flags unknown'})"}]
    if codecs is not None:
        rows.append({"what": "ffmpeg", "value": "not installed" if codecs.ffmpeg is None else
                     f"{codecs.ffmpeg} (libavcodec {codecs.libav.get('libavcodec', '?')}, libswresample "
                     f"{codecs.libav.get('libswresample', '?')})"})
        if libs:
            rows.append({"what": "codec libraries", "value": ", ".join(f"{k} {v}" for k, v in libs.items())})
        for name, digest in (codecs.bitstreams or {}).items():
            rows.append({"what": f"{name} encoder output digest", "value": digest})
    if env.corpus_tools:
        rows.append({"what": "corpus built with", "value": ", ".join(f"{k} {v}" for k, v in env.corpus_tools.items())})
    b.append(("table", ["what", "value"], rows))
    return b


def _detector_blocks(r, seed: int) -> list[tuple]:
    """The detectors' metrics, warnings, unreadable files, per-system and per-condition EERs."""
    b: list[tuple] = [("h", 2, "Spoof detectors"),
                      ("p", DEFINITIONS["eer"] + " " + DEFINITIONS["tdcf"]
                       + f" ASV scores for the t-DCF: {r.tdcf_asv or 'none'}. " + DEFINITIONS["dcf"])]
    rows = []
    for label, det in r.detection.items():
        m = det.metrics
        rows.append({"detector": f"`{label}`", "model": det.name, "EER %": pct(m.eer),
                     "min t-DCF 2019": num(m.min_tdcf_2019), "min t-DCF 2021": num(m.min_tdcf_2021),
                     "minDCF": num(m.min_dcf), "actDCF": num(m.act_dcf), "Cllr": num(m.cllr),
                     "minCllr": num(m.min_cllr), "unreadable files": str(len(det.errors))})
    b.append(("table", list(rows[0]), rows))
    for label, det in r.detection.items():
        for w in det.metrics.warnings:
            b.append(("p", f"Warning ({label}): {w}"))
        for src, why in det.errors[:5]:
            b.append(("p", f"Unreadable ({label}): {src}: {why}"))
    attacks = sorted({a for d in r.detection.values() for a in d.metrics.per_attack})
    if attacks:
        b.append(("p", "EER (%) per spoofing system: all bona fide trials against that system's spoofs."))
        rows = [{"system": a, **{label: pct(d.metrics.per_attack.get(a)) for label, d in r.detection.items()}}
                for a in attacks]
        b.append(("table", ["system", *r.detection], rows))
    b += _false_alarm_blocks(r)
    first = next(iter(r.detection.values()))
    if first.conditions:
        b.append(("p", f"EER (%) under each attack condition, on a seeded subset of {first.n_attacked_trials} eval "
                       "trials (bona fide and spoofs attacked alike, each file with its own seeded parameters; seed "
                       f"{seed})."))
        rows = [{"condition": c, **{label: (pct(d.conditions[c].eer) if d.conditions[c].available else "unavailable")
                                    for label, d in r.detection.items()}}
                for c in first.conditions]
        b.append(("table", ["condition", *r.detection], rows))
    return b


def _false_alarm_blocks(r) -> list[tuple]:
    """The bona fide false-alarm rate of each detector per source corpus (when the protocol names sources)."""
    fa = {label: d.metrics.per_source_false_alarms for label, d in r.detection.items()
          if d.metrics.per_source_false_alarms}
    if not fa:
        return []
    sources = sorted({s for v in fa.values() for s in v})
    thr = {f"{r.detection[label].metrics.decision_threshold:g}" for label in fa}
    rows = [{"source": s, "bona fide": str(next(v[s]["n_bonafide"] for v in fa.values() if s in v)),
             **{f"{label} {k}": pct(v[s][key]) if s in v else "-" for label, v in fa.items()
                for k, key in (("@LLR", "at_decision"), ("@EER", "at_eer"))}} for s in sources]
    return [("p", f"Bona fide false alarms (%) per source corpus: the share of its real recordings each detector "
                  f"calls spoof, at the LLR decision threshold ({', '.join(sorted(thr))}; `voiceguard scan`'s "
                  f"default) and at the detector's pooled EER threshold."),
            ("table", list(rows[0]), rows)]


def _watermark_blocks(r) -> list[tuple]:
    """Each engine's quality, then TPR / bit accuracy / FPR per attack."""
    b: list[tuple] = [("h", 2, "Watermark"), ("p", DEFINITIONS["snr"] + " " + DEFINITIONS["tpr"]
                                              + f" Attack suite: `{r.watermark_suite}`.")]
    rows = []
    for engine, w in r.watermark.items():
        q = w.quality
        rows.append({"engine": f"`{engine}`", "model": w.model, "files": str(w.n_files),
                     "SI-SNR dB (min)": f"{num(q['si_snr'].mean, 1)} ({num(q['si_snr'].min, 1)})",
                     "PESQ": num(q["pesq"].mean, 2) if "pesq" in q else "n/a",
                     "STOI": num(q["stoi"].mean, 3) if "stoi" in q else "n/a"})
    b.append(("table", list(rows[0]), rows))
    rows = []
    for c in next(iter(r.watermark.values())).attacks:
        row = {"attack": c}
        for engine, w in r.watermark.items():
            v = w.attacks[c]
            row[f"{engine} TPR / bit acc / FPR"] = ("unavailable" if not v.available else
                                                    f"{v.tpr:.2f} / {v.bit_acc:.3f} / {v.fpr:.2f}")
        rows.append(row)
    b.append(("table", list(rows[0]), rows))
    return b


def _risk_blocks(r) -> list[tuple]:
    """The ASV check (or why it was skipped) and re-identification per condition."""
    b: list[tuple] = [("h", 2, "Voiceprint risk")]
    if r.asv_skipped:
        b.append(("p", f"ASV check skipped: {r.asv_skipped}."))
    if r.asv is not None:
        a = r.asv
        m = a.metrics
        b.append(("p", DEFINITIONS["asv"] + f" Backend: {a.backend.get('backend', '?')}; {a.scored} of "
                       f"{a.n_trials} trials scored; normalisation: {a.normalisation}."))
        b.append(("table", ["ASV EER %", "threshold", "P_miss %", "P_fa non-target %", "P_fa spoof %", "SPF-EER %",
                            "SASV-EER %"],
                  [{"ASV EER %": pct(m.eer), "threshold": num(m.threshold), "P_miss %": pct(m.p_miss),
                    "P_fa non-target %": pct(m.p_fa_nontarget), "P_fa spoof %": pct(m.p_fa_spoof),
                    "SPF-EER %": pct(m.spf_eer), "SASV-EER %": pct(m.sasv_eer)}]))
        rows = [{"system": p.attack, "spoofs": str(p.n), "accepted %": pct(p.accepted),
                 "fools the ASV": "yes" if p.fools_asv else "no"} for p in a.per_attack]
        if rows:
            b.append(("table", list(rows[0]), rows))
    if r.reid:
        b.append(("p", DEFINITIONS["reid"]))
        rows = []
        for cond, rr in r.reid.items():
            if not rr.available:
                rows.append({"probes": cond, "attacker": "-", "rank-1 %": "unavailable", "EER %": "-",
                             "D_sys": "-", "risk": "-"})
                continue
            for at in rr.attackers:
                rows.append({"probes": cond, "attacker": at.scenario, "rank-1 %": pct(at.rank["rank1"]),
                             "EER %": pct(at.link.eer), "D_sys": num(at.link.d_sys, 3), "risk": rr.risk})
        b.append(("table", list(rows[0]), rows))
    return b


def report_blocks(report: Report | Mapping) -> list[tuple]:
    """Every block of the full report, in order."""
    report = _report(report)
    r = report.results
    env = report.environment
    hw = env.hardware
    b: list[tuple] = [
        ("h", 1, f"voiceguard report: {report.name}"),
        ("p", f"Started {report.started}; wall time {report.wall_seconds:.0f} s; seed {report.seed}; config "
              f"`{report.config['source']}`. Hardware: {hw.cpu}, {hw.cores} cores, torch threads "
              f"{hw.torch_threads}, GPU {hw.gpu or 'none'}. Versions: "
              + ", ".join(f"{k} {v}" for k, v in env.versions.items()) + "."),
        ("h", 2, "Headline"), *headline_blocks(report),
    ]
    b += _detector_blocks(r, report.seed)
    if r.watermark:
        b += _watermark_blocks(r)
    if r.asv is not None or r.reid or r.asv_skipped:
        b += _risk_blocks(r)
    if report.figures:
        b.append(("h", 2, "Figures"))
        b += [("fig", f.file, f.title) for f in report.figures]
    b += environment_blocks(report)
    b.append(("h", 2, "Timings"))
    b.append(("p", "Wall time of each stage when it was computed (a cached stage was reused by this run)."))
    b.append(("table", ["stage", "seconds", "cached"],
              [{"stage": k, "seconds": f"{v.seconds:.1f}", "cached": "yes" if v.cached else "no"}
               for k, v in report.timings.items()]))
    return b


# --------------------------------------------------------------------------- formats
def _md_cell(v: str) -> str:
    return " ".join(str(v).split()).replace("|", "\\|")


def to_markdown(blocks: list[tuple]) -> str:
    out = []
    for blk in blocks:
        if blk[0] == "h":
            out.append("#" * blk[1] + " " + blk[2])
        elif blk[0] == "p":
            out.append(blk[1])
        elif blk[0] == "table":
            cols, rows = blk[1], blk[2]
            out.append("\n".join(["| " + " | ".join(_md_cell(c) for c in cols) + " |", "|" + "---|" * len(cols)]
                                 + ["| " + " | ".join(_md_cell(r.get(c, "")) for c in cols) + " |" for r in rows]))
        elif blk[0] == "fig":
            out.append(f"![{blk[2]}]({blk[1]})")
    return "\n\n".join(out) + "\n"


def _inline(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def to_html(blocks: list[tuple], folder: Path, title: str) -> str:
    """One self-contained page: the figures are embedded as data URIs."""
    body = []
    for blk in blocks:
        if blk[0] == "h":
            body.append(f"<h{blk[1]}>{_inline(blk[2])}</h{blk[1]}>")
        elif blk[0] == "p":
            body.append(f"<p>{_inline(blk[1])}</p>")
        elif blk[0] == "table":
            head = "".join(f"<th>{_inline(c)}</th>" for c in blk[1])
            rows = "".join("<tr>" + "".join(f"<td>{_inline(str(r.get(c, '')))}</td>" for c in blk[1]) + "</tr>"
                           for r in blk[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif blk[0] == "fig":
            data = base64.b64encode((folder / blk[1]).read_bytes()).decode()
            body.append(f'<figure><img alt="{html.escape(blk[2])}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{html.escape(blk[2])}</figcaption></figure>")
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{border:1px solid #ccc;"
             "padding:4px 8px;text-align:left}th{background:#f4f4f4}img{max-width:100%}code{background:#f4f4f4}")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def headline_markdown(report: Report | Mapping, command: str) -> str:
    """The README block: the headline tables and how to regenerate them (``report``: a ``Report`` or a
    ``report.json`` read as a mapping)."""
    return (to_markdown(headline_blocks(report))
            + f"\nGenerated by `{command}`; rerun it to regenerate this block. The same config and seed give "
              "the same numbers with the same environment (ffmpeg and its codec libraries, package versions, "
              "torch threads and CPU kernels), which the full report states. The full report (every table with "
              "its metric definitions, figures, versions, hardware, timings) is written next to `report.json`.\n")


def write_report(report: Report, out: Path) -> None:
    """``report.json``, ``report.md`` and a self-contained ``report.html`` under ``out`` (atomically)."""
    out.mkdir(parents=True, exist_ok=True)
    blocks = report_blocks(report)
    atomic_write_text(out / "report.json", json.dumps(report.to_dict(), indent=1, sort_keys=False) + "\n")
    atomic_write_text(out / "report.md", to_markdown(blocks))
    atomic_write_text(out / "report.html", to_html(blocks, out, f"voiceguard report: {report.name}"))


def check_readme(readme: str | Path) -> str:
    """The README's text when it has exactly one pair of report markers (checked before a long run)."""
    return check_marked_block(readme, "report")


def update_readme(readme: str | Path, block: str) -> None:
    """Replace the text between the README's report markers with ``block``."""
    replace_marked_block(readme, "report", block)


def readme_block(readme: str | Path) -> str:
    """The text currently between the README's report markers."""
    return marked_block(readme, "report")


__all__ = ["README_BEGIN", "README_END", "check_readme", "environment_blocks", "headline_markdown", "readme_block", "report_blocks", "to_html",
           "to_markdown", "update_readme", "write_report"]
