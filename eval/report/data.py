"""The report's eval set: found (or built by ``voiceguard data build``) from the config, checked, subset."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from voiceguard.protocols import BONAFIDE, Trial, check_audio_files, read_protocol

from .config import ReportConfig, ReportError
from .results import DataSummary
from .stage import stderr_log


@dataclass(frozen=True)
class EvalData:
    """The eval trials with where their audio is, and the ASV files the layout has (None / empty: absent)."""

    trials: tuple[Trial, ...]
    audio_dir: Path
    ext: str
    root: Path
    asv_scores: Path | None
    asv_enroll: tuple[Path, ...]
    asv_trials: Path | None

    def path(self, t: Trial) -> Path:
        return t.audio_path(self.audio_dir, self.ext)

    def fingerprint(self, trials: list[Trial] | tuple[Trial, ...] | None = None) -> list:
        """Trial ids with labels and file sizes (of ``trials``, default all): the same audio is assumed when
        these match."""
        return [(t.utt_id, t.label, t.attack, self.path(t).stat().st_size)
                for t in (self.trials if trials is None else trials)]

    def relative(self, path: str | Path) -> str:
        """``path`` relative to the dataset folder (cache keys survive moving the dataset)."""
        try:
            return str(Path(path).resolve().relative_to(self.root.resolve()))
        except ValueError:
            return str(path)

    def file_key(self, path: str | Path, *extra) -> tuple:
        """(relative path, size in bytes, *extra): what identifies an input file in a cache key."""
        return (self.relative(path), Path(path).stat().st_size, *extra)

    def summary(self, cfg: ReportConfig) -> DataSummary:
        """The report's ``data`` part: layout, folder, counts and the spoofing systems present."""
        n_bona = sum(t.label == BONAFIDE for t in self.trials)
        return DataSummary(cfg.data.layout, str(self.root), cfg.data.protocol, len(self.trials), n_bona,
                           len(self.trials) - n_bona,
                           tuple(sorted({t.attack for t in self.trials if t.label != BONAFIDE})), cfg.data.max_trials)


def subset(trials: list[Trial], n: int | None, seed: int) -> list[Trial]:
    """A seeded random subset of ``n`` trials, stratified by class (protocol order kept); all when ``n`` is None."""
    if n is None or n >= len(trials):
        return list(trials)
    rng = np.random.default_rng(seed)
    lab = np.array([t.label == BONAFIDE for t in trials])
    n_bona = max(2, min(int(lab.sum()), int(round(n * lab.mean()))))
    n_spoof = max(2, min(int((~lab).sum()), n - n_bona))
    keep = np.concatenate([rng.permutation(np.flatnonzero(lab))[:n_bona], rng.permutation(np.flatnonzero(~lab))[:n_spoof]])
    return [trials[i] for i in sorted(keep.tolist())]


def _check_corpus_card(root: Path, config: str, seed: int) -> None:
    """A corpus found at data.path must be the one the config would build (same builder config and seed)."""
    try:
        card = json.loads((root / "corpus.json").read_text())
    except (OSError, ValueError):
        raise ReportError("corpus.json is missing or unreadable: not a finished `voiceguard data build` corpus "
                          "(remove the folder to rebuild it)", source=root) from None
    want = Path(config).stem if str(config).endswith((".yaml", ".yml")) else str(config)
    got = (card.get("config") or {}).get("name"), card.get("seed")
    if got != (want, seed):
        raise ReportError(f"this corpus was built with config {got[0]!r} and seed {got[1]}, the report config asks "
                          f"for {want!r} and seed {seed}: point data.path elsewhere or remove the folder", source=root)


def _build_if_missing(cfg: ReportConfig, root: Path, progress: bool, log: Callable[[str], None]) -> None:
    """A corpus layout without its protocol is built from ``data.build.source`` (ReportError without one)."""
    d = cfg.data
    if d.layout != "corpus" or (root / d.protocol).is_file():
        return
    if d.build_source is None:
        raise ReportError(f"no corpus here ({d.protocol} is missing) and data.build.source is not set: build one "
                          "with `voiceguard data build` or give data.build.source", source=root)
    from voiceguard.eval.corpus import prepare_corpus

    log(f"building the corpus from {d.build_source} into {root} (config {d.build_config}, seed {cfg.seed})")
    prepare_corpus(d.build_source, root, d.build_config, cfg.seed, progress=progress)


def resolve_data(cfg: ReportConfig, *, progress: bool = False, log: Callable[[str], None] = stderr_log) -> EvalData:
    """Find the eval set (building the corpus first when the config says how), check every file exists.
    Raises ReportError (no protocol, a corpus built otherwise, one class only, a missing ASV file)."""
    d = cfg.data
    root = Path(d.path).expanduser()
    protocol = root / d.protocol
    _build_if_missing(cfg, root, progress, log)
    if not protocol.is_file():
        raise ReportError(f"eval protocol not found ({d.protocol} under data.path)", source=protocol)
    if d.layout == "corpus" and d.build_source is not None:
        _check_corpus_card(root, d.build_config, cfg.seed)
    trials = read_protocol(protocol, d.protocol_format)
    audio_dir = root / d.audio_dir
    trials = subset(trials, d.max_trials, cfg.seed)
    check_audio_files(trials, audio_dir, d.ext, source=str(protocol))
    labels = {t.label for t in trials}
    if labels != {BONAFIDE, "spoof"}:
        raise ReportError(f"the eval set needs bona fide and spoof trials; it holds only {', '.join(sorted(labels))}",
                          source=protocol)

    def opt(p: str | None) -> Path | None:
        if p is None:
            return None
        q = root / p
        if not q.is_file():
            raise ReportError(f"{p} is missing under data.path", source=q)
        return q

    return EvalData(tuple(trials), audio_dir, d.ext, root, opt(d.asv_scores),
                    tuple(opt(p) for p in d.asv_enroll), opt(d.asv_trials))


__all__ = ["EvalData", "resolve_data", "subset"]
