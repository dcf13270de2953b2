"""The report's PNG figures, drawn from the typed results alone (their metrics and the score arrays they carry;
matplotlib, no pyplot state)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from voiceguard.files import atomic_output

from .results import DetectorResult, FigureRef, Results, WatermarkResult

_CLIP = 1e-4  # DET axes: rates clipped to [1e-4, 0.5]


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})  # no version stamp: reruns are byte-equal


def _probit(p: np.ndarray) -> np.ndarray:
    from scipy.stats import norm

    return norm.ppf(np.clip(p, _CLIP, 1 - _CLIP))


def det_curves(scores: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    from voiceguard.metrics.cm import det_curve, eer

    fig = _figure(5.5, 5)
    ax = fig.add_subplot()
    for label, (bona, spoof) in scores.items():
        miss, fa, _ = det_curve(bona, spoof)
        ax.plot(_probit(fa), _probit(miss), label=f"{label} (EER {eer(bona, spoof)[0] * 100:.2f} %)")
    ticks = np.array([0.001, 0.01, 0.05, 0.2, 0.5])
    ax.set_xticks(_probit(ticks), [f"{t * 100:g}" for t in ticks])
    ax.set_yticks(_probit(ticks), [f"{t * 100:g}" for t in ticks])
    lim = _probit(np.array([5e-4, 0.6]))
    ax.set_xlim(*lim)
    ax.set_ylim(*lim)
    ax.plot(lim, lim, color="0.8", lw=0.8, ls="--")
    ax.set_xlabel("spoofs accepted as bona fide (%)")
    ax.set_ylabel("bona fide rejected (%)")
    ax.set_title("DET curves, eval set")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def _bars(ax, groups: list[str], series: dict[str, list[float]], ylabel: str) -> None:
    width = 0.8 / max(1, len(series))
    x = np.arange(len(groups))
    for k, (name, vals) in enumerate(series.items()):
        ax.bar(x + k * width - 0.4 + width / 2, vals, width, label=name)
    ax.set_xticks(x, groups, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)


def per_attack_bars(detection: dict[str, DetectorResult], path: Path) -> None:
    attacks = sorted({a for d in detection.values() for a in d.metrics.per_attack})
    fig = _figure(max(5.0, 0.5 * len(attacks) + 2), 3.8)
    ax = fig.add_subplot()
    _bars(ax, attacks, {k: [d.metrics.per_attack.get(a, np.nan) * 100 for a in attacks]
                        for k, d in detection.items()}, "EER (%)")
    ax.set_title("EER per spoofing system (all bona fide vs that system's spoofs)")
    _save(fig, path)


def _heatmap(ax, matrix: np.ndarray, rows: list[str], cols: list[str], fmt: str, cmap: str, vmin: float,
             vmax: float, title: str) -> None:
    im = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            v = matrix[i, j]
            dark = not np.isnan(v) and (v - vmin) / (vmax - vmin) > 0.6
            ax.text(j, i, "n/a" if np.isnan(v) else fmt.format(v), ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")
    ax.set_title(title, fontsize=10)
    return im


def detector_heatmap(detection: dict[str, DetectorResult], path: Path) -> None:
    cols = ["clean"] + list(next(iter(detection.values())).conditions)  # every detector has the same ones
    rows = list(detection)
    m = np.full((len(rows), len(cols)), np.nan)
    for i, r in enumerate(rows):
        m[i, 0] = detection[r].metrics.eer * 100
        for j, c in enumerate(cols[1:], 1):
            cond = detection[r].conditions.get(c)
            m[i, j] = (np.nan if cond is None or cond.eer is None else cond.eer) * 100
    fig = _figure(max(5.0, 0.6 * len(cols) + 2.5), 1.0 + 0.5 * len(rows) + 1.6)
    ax = fig.add_subplot()
    im = _heatmap(ax, m, rows, cols, "{:.1f}", "Reds", 0, 50, "detector EER (%) under each attack condition")
    fig.colorbar(im, ax=ax, shrink=0.8)
    _save(fig, path)


def watermark_heatmap(watermark: dict[str, WatermarkResult], path: Path) -> None:
    engines = list(watermark)
    cols = list(next(iter(watermark.values())).attacks)
    fig = _figure(max(6.0, 0.55 * len(cols) + 2.5), 2 * (0.6 + 0.45 * len(engines)) + 2.2)
    for k, (key, title) in enumerate((("tpr", "detection rate (TPR) of marked clips"),
                                      ("bit_acc", "bit accuracy of the decoded message"))):
        ax = fig.add_subplot(2, 1, k + 1)
        m = np.array([[_rate(watermark[e], c, key) for c in cols] for e in engines])
        im = _heatmap(ax, m, engines, cols, "{:.2f}", "Greens", 0.5 if key == "bit_acc" else 0, 1, title)
        fig.colorbar(im, ax=ax, shrink=0.8)
    _save(fig, path)


def _rate(w: WatermarkResult, attack: str, key: str) -> float:
    r = w.attacks.get(attack)
    v = None if r is None else getattr(r, key)
    return np.nan if v is None else v


def _hist(ax, series: dict[str, np.ndarray], xlabel: str, threshold: float | None = None) -> None:
    allv = np.concatenate([v for v in series.values() if v.size])
    bins = np.linspace(allv.min(), allv.max(), 40)
    for name, v in series.items():
        if v.size:
            ax.hist(v, bins=bins, alpha=0.55, density=True, label=f"{name} (n={v.size})")
    if threshold is not None:
        ax.axvline(threshold, color="k", lw=0.8, ls="--", label=f"EER threshold {threshold:.3f}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.legend(fontsize=7)


def asv_distributions(asv_scores: dict, threshold: float, path: Path) -> None:
    fig = _figure(6, 3.6)
    ax = fig.add_subplot()
    _hist(ax, {k: np.asarray(v) for k, v in asv_scores.items()}, "ASV score (cosine to the enrolment mean)",
          threshold)
    ax.set_title("ASV scores: target / non-target / spoof trials")
    _save(fig, path)


def reid_histograms(reid: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    n = len(reid)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig = _figure(4 * cols, 2.8 * rows)
    for k, (label, (mated, nonmated)) in enumerate(reid.items()):
        ax = fig.add_subplot(rows, cols, k + 1)
        _hist(ax, {"same speaker": mated, "other speakers": nonmated}, "cosine to enrolment")
        ax.set_title(f"probes: {label}", fontsize=9)
    fig.suptitle("Re-identification (ignorant attacker): probe vs speaker models")
    _save(fig, path)


def make_figures(results: Results, folder: Path) -> tuple[FigureRef, ...]:
    """Draw every figure the results allow (the score arrays come with a freshly computed result, not with one
    read back from ``report.json``); returns the figures with paths relative to the report folder."""
    out = []

    def add(name: str, title: str, draw, *args) -> None:
        draw(*args, folder / name)
        out.append(FigureRef(f"figures/{name}", title))

    det = results.detection
    if det:
        add("det_curves.png", "DET curves per detector (eval set)", det_curves,
            {k: (d.bonafide, d.spoof) for k, d in det.items()})
        add("per_attack_eer.png", "EER per spoofing system", per_attack_bars, det)
        if any(d.conditions for d in det.values()):
            add("detector_attack_heatmap.png", "Detector EER x attack condition", detector_heatmap, det)
    if results.watermark:
        add("watermark_attack_heatmap.png", "Watermark TPR and bit accuracy x attack", watermark_heatmap,
            results.watermark)
    if results.asv is not None and results.asv.scores:
        add("asv_scores.png", "ASV score distributions", asv_distributions, results.asv.scores,
            results.asv.metrics.threshold)
    reid = {k: (c.mated, c.nonmated) for k, c in (results.reid or {}).items() if c.mated is not None}
    if reid:
        add("reid_histograms.png", "Re-identification score histograms", reid_histograms, reid)
    return tuple(out)


__all__ = ["make_figures"]
