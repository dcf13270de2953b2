"""Score files: reading, joining with a protocol, writing, and the ``eval eer`` pipeline."""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

import numpy as np

from voiceguard.errors import ProtocolError, ScoreError, preview
from voiceguard.files import atomic_write_text, read_rows
from voiceguard.protocols import BONAFIDE, Trial, normalize_label, read_protocol

from . import cm as M


@dataclass(frozen=True)
class ScoredTrial:
    """One CM score with its ground truth."""

    utt_id: str
    score: float
    label: str
    attack: str = "-"
    condition: str = "-"
    source: str = "-"  # the recording's source corpus (``Trial.source``), for bona fide false alarms per corpus


def _lines(path: Path) -> Iterable[tuple[int, list[str]]]:
    return read_rows(path, ScoreError, "score file")


def _float(text: str, path: Path, n: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ScoreError(f"line {n}: score {text!r} is not a number", source=path) from None
    if not math.isfinite(value):
        raise ScoreError(f"line {n}: score {text!r} is not a finite number", source=path)
    return value


def read_cm_scores(path: str | os.PathLike) -> tuple[dict[str, float], dict[str, tuple[str, str]]]:
    """Read a CM score file in the 2-column (``utt score``) or 4-column (``utt attack key score``) form.

    A header row (``filename cm-score`` as in ASVspoof 5) is skipped, as are blank lines and ``#``
    comments; a byte-order mark, CRLF ends or UTF-16 text are fine.  Returns ``scores[utt]`` (finite
    floats) and, for the 4-column form, ``keys[utt] = (attack, label)``.  Raises ``ScoreError`` naming the
    file and line for a wrong column count, a score that is not a finite number, an unknown label; and
    for no scores or duplicated ids.
    """
    path = Path(path)
    scores: dict[str, float] = {}
    keys: dict[str, tuple[str, str]] = {}
    width = None
    dups = []
    first = True
    for n, p in _lines(path):
        if first and len(p) in (2, 4) and _is_header(p[-1]):
            first = False
            continue
        first = False
        if width is None:
            width = len(p)
            if width not in (2, 4):
                raise ScoreError(f"line {n}: expected 2 columns (utt score) or 4 columns (utt attack key score), "
                                 f"got {width}", source=path)
        if len(p) != width:
            raise ScoreError(f"line {n}: {len(p)} columns where earlier lines have {width}", source=path)
        utt = p[0]
        if utt in scores:
            dups.append(utt)
        scores[utt] = _float(p[-1], path, n)
        if width == 4:
            try:
                keys[utt] = (p[1], normalize_label(p[2], line=n))
            except ProtocolError as e:  # a score file's fault is a ScoreError
                raise ScoreError(e.reason, source=path) from None
    if not scores:
        raise ScoreError("score file has no scores", source=path)
    if dups:
        raise ScoreError(f"{len(dups)} duplicated utterance id(s): {preview(dups)}", source=path)
    return scores, keys


def _is_header(token: str) -> bool:
    try:
        float(token)
        return False
    except ValueError:
        return any(c.isalpha() for c in token)


#: what ``join_scores`` does with protocol trials that have no score: ``error`` (the default) or ``skip``
MISSING_POLICIES = ("error", "skip")


def join_scores(scores: dict[str, float], keys: dict[str, tuple[str, str]], protocol: list[Trial] | None,
                *, source: str | None = None, missing: str = "error",
                notes: list[str] | None = None) -> list[ScoredTrial]:
    """Attach ground truth to scores: from the protocol when given (it must cover every score), else
    from the 4-column keys.  Trials of the protocol with no score are an error (listed) with
    ``missing="error"``; with ``missing="skip"`` (e.g. the files ``detect score`` could not read) they are
    left out and a note naming them is appended to ``notes``.  Raises ``ScoreError``; ``ValueError`` for an
    unknown ``missing``."""
    if missing not in MISSING_POLICIES:
        raise ValueError(f"missing must be one of {', '.join(MISSING_POLICIES)}, not {missing!r}")
    if protocol is None:
        if not keys:
            raise ScoreError("a 2-column score file needs --protocol for the labels", source=source)
        return [ScoredTrial(u, s, keys[u][1], keys[u][0]) for u, s in scores.items()]
    by_id = {t.utt_id: t for t in protocol}
    unknown = [u for u in scores if u not in by_id]
    if unknown:
        raise ScoreError(f"{len(unknown)} scored utterance(s) are not in the protocol: {preview(unknown)}",
                         source=source)
    unscored = [t.utt_id for t in protocol if t.utt_id not in scores]
    if unscored and missing == "error":
        raise ScoreError(f"{len(unscored)} of {len(protocol)} protocol trials have no score: {preview(unscored)} "
                         f"(--missing skip leaves them out)", source=source)
    if unscored and notes is not None:
        notes.append(f"{len(unscored)} of {len(protocol)} protocol trials have no score and are left out: "
                     f"{preview(unscored)}")
    conflicts = [u for u, (_, lab) in keys.items() if by_id[u].label != lab]
    if conflicts:
        raise ScoreError(f"{len(conflicts)} label(s) in the score file disagree with the protocol: "
                         f"{preview(conflicts)}", source=source)
    return [ScoredTrial(t.utt_id, scores[t.utt_id], t.label, t.attack, t.condition, t.source) for t in protocol
            if t.utt_id in scores]


def read_asv_scores(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ASVspoof ASV score file ``SOURCE KEY SCORE`` (KEY target / nontarget / spoof).

    Returns (target, nontarget, spoof) score arrays.
    """
    path = Path(path)
    groups: dict[str, list[float]] = {"target": [], "nontarget": [], "spoof": []}
    for n, p in _lines(path):
        if len(p) != 3:
            raise ScoreError(f"line {n}: expected 3 columns (SOURCE KEY SCORE), got {len(p)}", source=path)
        key = p[1].lower().replace("-", "")
        if key not in groups:
            raise ScoreError(f"line {n}: unknown ASV key {p[1]!r} (target, nontarget or spoof)", source=path)
        groups[key].append(_float(p[2], path, n))
    empty = [k for k, v in groups.items() if not v]
    if empty:
        raise ScoreError(f"ASV score file has no {' / '.join(empty)} trials (t-DCF needs all three)", source=path)
    arrays = tuple(np.asarray(groups[k]) for k in ("target", "nontarget", "spoof"))
    bad = sum(int((~np.isfinite(a)).sum()) for a in arrays)
    if bad:
        raise ScoreError(f"{bad} ASV score(s) are NaN or infinite", source=path)
    return arrays  # type: ignore[return-value]


def format_cm_scores(rows: Iterable[ScoredTrial], columns: int = 4) -> str:
    """Score file text: 4 columns ``utt attack key score`` (LA19 style) or 2 columns ``utt score``."""
    if columns == 4:
        return "".join(f"{r.utt_id} {r.attack} {r.label} {r.score:.6f}\n" for r in rows)
    if columns == 2:
        return "".join(f"{r.utt_id} {r.score:.6f}\n" for r in rows)
    raise ValueError("columns must be 2 or 4")


def write_cm_scores(path: str | os.PathLike, rows: Iterable[ScoredTrial], columns: int = 4) -> Path:
    """Write a score file atomically (see ``format_cm_scores``)."""
    return atomic_write_text(path, format_cm_scores(rows, columns))


def evaluate_cm(rows: list[ScoredTrial], asv: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None, *,
                bootstrap: int = 0, seed: int = 0, progress=None,
                decision_threshold: float = M.LLR_DECISION_THRESHOLD) -> M.CmMetrics:
    """All CM metrics of scored trials: pooled EER (+ optional bootstrap CI), min t-DCF 2019/2021 when
    ASV scores are given, ASVspoof 5 minDCF/actDCF/Cllr/minCllr, per-attack and per-condition EERs, and,
    when bona fide trials name their source corpus, the bona fide false-alarm rate per source at
    ``decision_threshold`` (scores read as LLRs) and at the pooled EER threshold (``per_source``).

    ``bootstrap``: 0 (no interval) or ``M.BOOTSTRAP_MIN``..``M.BOOTSTRAP_MAX`` resamples for a 95 %
    percentile interval, seeded with ``seed`` (>= 0); ``progress(done, total)`` is called per
    resample.  Notes (inverted scores, an EER ill-defined by tied scores, an interval not containing the
    EER, groups without a metric) go to ``warnings``.  Raises ``ScoreError`` for unusable scores and
    ``ValueError`` for a ``bootstrap`` or ``seed`` out of range.
    """
    if bootstrap != 0 and not M.BOOTSTRAP_MIN <= bootstrap <= M.BOOTSTRAP_MAX:
        raise ValueError(f"bootstrap must be 0 or {M.BOOTSTRAP_MIN}..{M.BOOTSTRAP_MAX} resamples, not {bootstrap}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, not {seed}")
    bona = np.array([r.score for r in rows if r.label == BONAFIDE])
    spoof_rows = [r for r in rows if r.label != BONAFIDE]
    spoof = np.array([r.score for r in spoof_rows])
    if bona.size == 0 or spoof.size == 0:
        raise ScoreError(f"need both classes: {bona.size} bona fide and {spoof.size} spoof trials")
    e, thr = M.eer(bona, spoof)
    notes = []
    ties = M.eer_ties(bona, spoof)
    if ties.ill_defined:
        notes.append(ties.message())
    ci = None
    if bootstrap > 0:
        ci = M.bootstrap_eer(bona, spoof, n_boot=bootstrap, seed=seed, progress=progress)
        if not ci[0] <= e <= ci[1]:
            notes.append(f"the 95 % bootstrap interval {ci[0]:.4%}-{ci[1]:.4%} does not contain the EER {e:.4%}: "
                         f"the EER's resampling distribution is skewed (few trials or tied scores); read the "
                         f"interval with care")
    w = M.polarity_warning(bona, spoof)
    if w:
        notes.append(w)
    asv_rates = t19 = t21 = None
    if asv is not None:
        asv_rates = M.asv_error_rates(*asv)
        t19 = M.min_tdcf(bona, spoof, asv_rates, "2019")[0]
        t21 = M.min_tdcf(bona, spoof, asv_rates, "2021")[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        per_attack = M.eer_breakdown(bona, spoof, np.array([r.attack for r in spoof_rows]))
        conds = {r.condition for r in rows}
        per_cond = {}
        if len(conds) > 1:
            for c in sorted(conds):
                b = np.array([r.score for r in rows if r.label == BONAFIDE and r.condition == c])
                s = np.array([r.score for r in spoof_rows if r.condition == c])
                if b.size and s.size:
                    try:
                        ce, ct = M.eer(b, s)
                    except ScoreError as err:
                        notes.append(f"condition {c}: {err}")
                        continue
                    per_cond[c] = M.EerResult(ce, ct, int(b.size), int(s.size))
    notes += [str(c.message) for c in caught]
    sources = np.array([r.source for r in rows if r.label == BONAFIDE])
    per_source = (M.bonafide_false_alarms(bona, sources, decision_threshold, thr) if (sources != "-").any()
                  else {})
    bona_conds = np.array([r.condition for r in rows if r.label == BONAFIDE])
    per_cond_fa = M.bonafide_false_alarms(bona, bona_conds, decision_threshold, thr) if len(conds) > 1 else {}
    return M.CmMetrics(
        eer=M.EerResult(e, thr, int(bona.size), int(spoof.size), ci),
        min_dcf=M.min_dcf(bona, spoof)[0], cllr=M.cllr(bona, spoof), min_cllr=M.min_cllr(bona, spoof),
        act_dcf=M.act_dcf(bona, spoof), asv=asv_rates, min_tdcf_2019=t19, min_tdcf_2021=t21,
        per_attack=per_attack, per_condition=per_cond, warnings=tuple(notes), ties=ties,
        bootstrap=(int(bootstrap), int(seed)) if ci is not None else None, per_source=per_source,
        decision_threshold=float(decision_threshold), per_condition_fa=per_cond_fa)


def evaluate_score_file(scores: str | os.PathLike, protocol: str | os.PathLike | None = None,
                        asv_scores: str | os.PathLike | None = None, *, bootstrap: int = 0,
                        seed: int = 0, protocol_format: str = "auto", progress=None,
                        missing: str = "error") -> M.CmMetrics:
    """``voiceguard eval eer`` as a function: read the files, join, evaluate (see ``evaluate_cm``).

    ``protocol_format``: ``auto`` (sniffed from the content) or one of ``voiceguard.protocols.READERS``.
    ``missing``: protocol trials without a score are an error (``"error"``) or left out with a warning
    (``"skip"``; see ``join_scores``).  Raises ``ScoreError`` / ``ProtocolError`` naming the file at fault.
    """
    s, keys = read_cm_scores(scores)
    trials = read_protocol(protocol, protocol_format) if protocol is not None else None
    notes: list[str] = []
    rows = join_scores(s, keys, trials, source=str(scores), missing=missing, notes=notes)
    asv = read_asv_scores(asv_scores) if asv_scores is not None else None
    try:
        m = evaluate_cm(rows, asv, bootstrap=bootstrap, seed=seed, progress=progress)
        return replace(m, warnings=(*notes, *m.warnings)) if notes else m
    except ScoreError as e:
        if e.source is None:  # name the file the unusable scores came from
            raise ScoreError(e.reason, source=scores) from None
        raise


#: the columns of ``cm_rows`` (``voiceguard eval eer --format csv``)
CM_COLUMNS = ("group", "name", "n_bonafide", "n_spoof", "eer", "threshold", "eer_ci_low", "eer_ci_high",
              "min_tdcf_2019", "min_tdcf_2021", "min_dcf", "min_cllr", "act_dcf", "cllr")
#: the columns ``cm_columns`` adds when bona fide trials name their source: false-alarm rates per source
FA_COLUMNS = ("fa_decision", "fa_eer")


def cm_columns(m: M.CmMetrics) -> tuple[str, ...]:
    """The columns of ``cm_rows(m)``: ``CM_COLUMNS``, plus ``FA_COLUMNS`` when ``m.per_source`` or
    ``m.per_condition_fa`` is not empty."""
    return CM_COLUMNS + FA_COLUMNS if m.per_source or m.per_condition_fa else CM_COLUMNS


def cm_rows(m: M.CmMetrics) -> list[dict]:
    """``evaluate_cm``'s result as flat rows (keys ``CM_COLUMNS``): first the pooled EER (``group``
    ``pooled``, ``name`` ``all``) with every other figure, then one row per attack (``group`` ``attack``) and
    per condition (``group`` ``condition``) holding only the EER, its threshold and the trial counts (and the
    condition's bona fide false-alarm rates ``fa_decision`` / ``fa_eer`` when ``m.per_condition_fa``), then (when
    ``m.per_source``) one row per bona fide source (``group`` ``source``) with its bona fide count and false-alarm
    rates ``fa_decision`` / ``fa_eer`` (keys ``cm_columns(m)``); figures a row does not have are ``None``.  Rates
    are fractions, as in ``CmMetrics.to_dict``."""
    columns = cm_columns(m)

    def row(group: str, name: str, e: M.EerResult) -> dict:
        r = dict.fromkeys(columns)
        r.update(group=group, name=name, n_bonafide=e.n_bonafide, n_spoof=e.n_spoof, eer=e.eer,
                 threshold=e.threshold)
        return r

    pooled = row("pooled", "all", m.eer)
    if m.eer.ci is not None:
        pooled.update(eer_ci_low=m.eer.ci[0], eer_ci_high=m.eer.ci[1])
    pooled.update(min_tdcf_2019=m.min_tdcf_2019, min_tdcf_2021=m.min_tdcf_2021, min_dcf=m.min_dcf,
                  min_cllr=m.min_cllr, act_dcf=m.act_dcf, cllr=m.cllr)
    sources = [{**dict.fromkeys(columns), "group": "source", "name": k, "n_bonafide": v.n_bonafide,
                "fa_decision": v.at_decision, "fa_eer": v.at_eer} for k, v in m.per_source.items()]
    conditions = [row("condition", k, v) for k, v in m.per_condition.items()]
    for r in conditions:
        fa = m.per_condition_fa.get(r["name"])
        if fa is not None:
            r.update(fa_decision=fa.at_decision, fa_eer=fa.at_eer)
    return [pooled] + [row("attack", k, v) for k, v in m.per_attack.items()] + conditions + sources


__all__ = ["ScoredTrial", "read_cm_scores", "join_scores", "read_asv_scores", "write_cm_scores",
           "format_cm_scores", "evaluate_cm", "evaluate_score_file", "cm_rows", "cm_columns", "CM_COLUMNS",
           "FA_COLUMNS", "MISSING_POLICIES"]
