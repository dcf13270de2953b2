"""The voiceprint-risk checks, each a pure function returning a frozen result.

* ``asv_check``: score an ASV trial list (target / non-target / spoof) with a speaker-embedding backend,
  write the scores in the ASVspoof format (``voiceguard eval eer --asv-scores``), and say which attacks
  fool the ASV.
* ``watermark_check``: does watermarking change who the speaker sounds like to an ASV?
* ``reid_check``: how well enrolled originals re-identify the speakers of a probe set, for the
  VoicePrivacy attackers *ignorant* (enrolment on original audio) and *lazy-informed* (enrolment on
  audio processed like the probes).
* ``compare_clips``: one pair of clips, cosine and same-speaker decision at the calibrated threshold.
"""
from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from voiceguard.audio import SAMPLE_RATE, FileProblem, find_audio_files
from voiceguard.errors import RiskError, VoiceguardError, preview
from voiceguard.metrics.cm import bootstrap_ci
from voiceguard.files import atomic_write_text
from voiceguard.protocols import BONAFIDE, read_protocol

from .embed import EmbeddingSet, decode_voice, embed_arrays, embed_files
from .embedders import SpeakerEmbedder, normalize_rows
from .labels import LabeledFile, check_labels
from voiceguard.metrics.asv import (AsvMetrics, LinkMetrics, asv_metrics, cosine_matrix, link_metrics, pair_scores, rank_k_rates,
                      snorm)

FOOLS_ASV = 0.5  # an attack "fools the ASV" when at least half of its spoofs pass the ASV EER threshold


def _problems(*sets: EmbeddingSet) -> tuple[FileProblem, ...]:
    return tuple(p for s in sets for p in s.problems)


def _speaker_models(emb: np.ndarray, speakers: list[str]) -> tuple[list[str], np.ndarray]:
    """Mean of each speaker's L2-normalised embeddings, normalised again."""
    names = sorted(set(speakers))
    spk = np.asarray(speakers)
    return names, normalize_rows(np.stack([emb[spk == s].mean(0) for s in names]))


# --------------------------------------------------------------------------- ASV under spoofing
@dataclass(frozen=True)
class AsvTrial:
    """One ASV trial: an enrolled speaker, a test utterance, its source (bonafide or attack) and key."""

    speaker: str
    utt_id: str
    source: str  # "bonafide" or the attack id
    key: str  # target | nontarget | spoof


def read_asv_enrollment(path: str | os.PathLike) -> dict[str, list[str]]:
    """``SPEAKER utt1,utt2,...`` per line (ASVspoof 2019 ``*.trn.txt`` and the corpus builder's ``enroll``)."""
    from voiceguard.files import read_rows

    out: dict[str, list[str]] = {}
    for n, parts in read_rows(path, RiskError, "ASV enrolment list"):
        if len(parts) != 2:
            raise RiskError(f"line {n}: expected 'SPEAKER utt1,utt2,...', got {len(parts)} columns", source=path)
        out.setdefault(parts[0], []).extend(u for u in parts[1].split(",") if u)
    if not out:
        raise RiskError("ASV enrolment list is empty", source=path)
    return out


def read_asv_trials(path: str | os.PathLike) -> list[AsvTrial]:
    """``SPEAKER UTT SOURCE KEY`` (or ``SPEAKER UTT KEY``), KEY target / nontarget / spoof."""
    from voiceguard.files import read_rows

    trials = []
    for n, parts in read_rows(path, RiskError, "ASV trial list"):
        if len(parts) not in (3, 4):
            raise RiskError(f"line {n}: expected 'SPEAKER UTT [SOURCE] KEY', got {len(parts)} columns", source=path)
        key = parts[-1].lower().replace("-", "")
        if key not in ("target", "nontarget", "spoof"):
            raise RiskError(f"line {n}: unknown key {parts[-1]!r} (target, nontarget or spoof)", source=path)
        source = parts[2] if len(parts) == 4 else (BONAFIDE if key != "spoof" else "spoof")
        trials.append(AsvTrial(parts[0], parts[1], BONAFIDE if source in ("-", BONAFIDE) else source, key))
    if not trials:
        raise RiskError("ASV trial list is empty", source=path)
    return trials


@dataclass(frozen=True)
class AttackAcceptance:
    attack: str
    n: int
    accepted: float  # share of this attack's spoofs scoring at or above the ASV EER threshold
    mean_score: float
    fools_asv: bool


@dataclass(frozen=True)
class AsvCheckResult:
    backend: dict
    metrics: AsvMetrics
    per_attack: tuple[AttackAcceptance, ...]
    n_trials: int
    scored: int
    normalisation: str  # "none" | "s-norm (cohort N)"
    score_file: str | None = None
    skipped: tuple[FileProblem, ...] = ()
    # the scores behind the metrics, by key (target / nontarget / spoof); not part of the serialised result
    scores: dict = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "scores"}
        d["skipped"] = [asdict(p) for p in self.skipped]
        return d

    def rows(self) -> list[dict]:
        """Flat rows (keys ``ASV_COLUMNS``): the ASV metrics over all scored trials (``attack`` ``all``, ``n``
        the trials scored), then the acceptance of each attack; rates as fractions, ``None`` where a row has
        no such figure."""
        m = self.metrics
        first = dict.fromkeys(ASV_COLUMNS)
        first.update(attack="all", n=self.scored, eer=m.eer, threshold=m.threshold, p_miss=m.p_miss,
                     p_fa_nontarget=m.p_fa_nontarget, p_fa_spoof=m.p_fa_spoof, spf_eer=m.spf_eer,
                     sasv_eer=m.sasv_eer)
        return [first] + [{**dict.fromkeys(ASV_COLUMNS), **asdict(a)} for a in self.per_attack]


#: the columns of ``AsvCheckResult.rows``
ASV_COLUMNS = ("attack", "n", "accepted", "mean_score", "fools_asv", "eer", "threshold", "p_miss", "p_fa_nontarget",
               "p_fa_spoof", "spf_eer", "sasv_eer")


def format_asv_scores(trials: list[AsvTrial], scores: np.ndarray) -> str:
    """The organisers' ASV score layout: ``SOURCE KEY SCORE`` (what ``eval eer --asv-scores`` reads)."""
    return "".join(f"{t.source} {t.key} {s:.6f}\n" for t, s in zip(trials, scores))


def _enrolment_models(enrollment: dict[str, list[str]], emb: EmbeddingSet, path_of) -> dict[str, np.ndarray]:
    """Each enrolled speaker's model: the L2-normalised mean of its embedded enrolment files (speakers whose
    every enrolment file failed are left out)."""
    idx = emb.index()
    models: dict[str, np.ndarray] = {}
    for spk, us in enrollment.items():
        rows = [idx[path_of(u)] for u in us if path_of(u) in idx]
        if rows:
            models[spk] = normalize_rows(emb.embeddings[rows].mean(0))
    return models


def _acceptance(trials: list[AsvTrial], scores: np.ndarray, threshold: float) -> tuple[AttackAcceptance, ...]:
    """Per attack (sorted): how many of its spoof trials score at or above the ASV ``threshold``."""
    by_attack: dict[str, list[float]] = defaultdict(list)
    for t, s in zip(trials, scores):
        if t.key == "spoof":
            by_attack[t.source].append(float(s))
    accepted = {a: float(np.mean(np.asarray(v) >= threshold)) for a, v in by_attack.items()}
    return tuple(AttackAcceptance(a, len(v), accepted[a], float(np.mean(v)), accepted[a] >= FOOLS_ASV)
                 for a, v in sorted(by_attack.items()))


def asv_check(enrollment: dict[str, list[str]], trials: list[AsvTrial], audio_dir: str | os.PathLike,
              embedder: SpeakerEmbedder, *, ext: str = ".flac", cohort: list[str] | None = None,
              top_n: int | None = None, out: str | os.PathLike | None = None, overwrite: bool = False,
              cache: bool = True, progress=None) -> AsvCheckResult:
    """Score every trial: cosine between the trial utterance and the mean enrolment embedding."""
    audio_dir = Path(audio_dir)
    if out is not None and Path(out).exists() and not overwrite:
        raise RiskError("score file exists (pass --overwrite to replace it)", source=out)
    unknown = sorted({t.speaker for t in trials} - set(enrollment))
    if unknown:
        raise RiskError(f"trials name speaker(s) with no enrolment: {preview(unknown)}")
    path_of = lambda u: str(audio_dir / f"{u}{ext}")  # noqa: E731
    utts = sorted({u for us in enrollment.values() for u in us} | {t.utt_id for t in trials})
    missing = [path_of(u) for u in utts if not Path(path_of(u)).is_file()]
    if missing:
        raise RiskError(f"{len(missing)} of {len(utts)} audio files are missing: {preview(missing)}")
    emb = embed_files([path_of(u) for u in utts], embedder, cache=cache, progress=progress)
    idx = emb.index()
    models = _enrolment_models(enrollment, emb, path_of)
    usable = [t for t in trials if t.speaker in models and path_of(t.utt_id) in idx]
    if not usable:
        raise RiskError("no trial could be scored (every enrolment or test file failed: "
                        f"{preview([f'{p.path}: {p.reason}' for p in emb.problems])})")
    enr = np.stack([models[t.speaker] for t in usable])
    tst = emb.embeddings[[idx[path_of(t.utt_id)] for t in usable]]
    scores = np.sum(enr * tst, axis=1)
    norm = "none"
    if cohort:
        coh = embed_files(cohort, embedder, cache=cache)
        if len(coh.paths) < 2:
            raise RiskError("score-normalisation cohort has fewer than 2 usable files")
        scores = snorm(scores, enr, tst, coh.embeddings, top_n, paired=True)
        norm = f"s-norm (cohort {len(coh.paths)}{f', top {top_n}' if top_n else ''})"
    key = np.array([t.key for t in usable])
    if not ((key == "target").any() and (key == "nontarget").any()):
        raise RiskError(f"the ASV EER needs target and non-target trials; the scored trials hold "
                        f"{int((key == 'target').sum())} target and {int((key == 'nontarget').sum())} non-target")
    m = asv_metrics(scores[key == "target"], scores[key == "nontarget"], scores[key == "spoof"])
    per_attack = _acceptance(usable, scores, m.threshold)
    if out is not None:
        atomic_write_text(out, format_asv_scores(usable, scores), overwrite=True)
    return AsvCheckResult(embedder.info(), m, per_attack, len(trials), len(usable), norm,
                          str(out) if out is not None else None, _problems(emb),
                          {k: scores[key == k] for k in ("target", "nontarget", "spoof")})


def corpus_asv_paths(corpus: str | os.PathLike, split: str = "eval") -> tuple[Path, Path, Path, Path]:
    """(enrolment list, trial list, audio folder, CM train protocol) of a ``voiceguard data build`` corpus."""
    root = Path(corpus)
    proto = root / "protocols"
    enroll, trl = proto / f"VG.asv.{split}.enroll.txt", proto / f"VG.asv.{split}.trl.txt"
    for p in (enroll, trl):
        if not p.is_file():
            raise RiskError(f"not a voiceguard corpus: {p.relative_to(root)} is missing (build one with "
                            "`voiceguard data build`, or pass --enroll/--trials/--audio-dir)", source=root)
    return enroll, trl, root / "flac", proto / "VG.cm.train.trn.txt"


@dataclass(frozen=True)
class AsvInputs:
    """What ``asv_check`` scores: the enrolment, the trials, their audio folder and an s-norm cohort (paths)."""

    enrollment: dict
    trials: tuple[AsvTrial, ...]
    audio_dir: Path
    cohort: tuple[str, ...] | None = None

    @property
    def n_files(self) -> int:
        """Distinct utterances to embed (enrolment and trials)."""
        return len({t.utt_id for t in self.trials} | {u for us in self.enrollment.values() for u in us})


def asv_inputs(*, corpus: str | os.PathLike | None = None, split: str = "eval",
               enroll: str | os.PathLike | None = None, trials: str | os.PathLike | None = None,
               audio_dir: str | os.PathLike | None = None, ext: str = ".flac", snorm: bool = False,
               cohort: str | os.PathLike | None = None) -> AsvInputs:
    """Read the ASV lists of a ``voiceguard data build`` corpus split, or of ``enroll`` + ``trials`` (audio in
    ``audio_dir``).  The s-norm cohort: the audio files under ``cohort`` when given, else with ``snorm`` the
    corpus train split's bona fide files.

    Raises:
        ValueError: neither a corpus nor all of enroll, trials and audio_dir; ``snorm`` without a corpus or
            cohort.
        RiskError: not a corpus, unreadable lists.
    """
    cohort_files = None
    if corpus is not None:
        enroll, trials, audio_dir, train = corpus_asv_paths(corpus, split)
        if snorm:
            cohort_files = [str(t.audio_path(audio_dir, ext)) for t in read_protocol(train) if t.is_bonafide]
    elif enroll is None or trials is None or audio_dir is None:
        raise ValueError("give a corpus, or an enrolment list, a trial list and an audio folder")
    if cohort is not None:
        cohort_files = [str(p) for p in find_audio_files([cohort])[0]]
    elif snorm and cohort_files is None:
        raise ValueError("s-norm without a corpus needs a cohort folder")
    return AsvInputs(read_asv_enrollment(enroll), tuple(read_asv_trials(trials)), Path(audio_dir),
                     None if cohort_files is None else tuple(cohort_files))


# --------------------------------------------------------------------------- watermark and identity
@dataclass(frozen=True)
class WatermarkRiskResult:
    backend: dict
    engine: str
    n_files: int
    cosine_mean: float
    cosine_min: float
    cosine_p05: float
    eer_before: float | None  # pairs original vs original
    eer_after: float | None  # the same pairs, test side watermarked (enrolment on originals)
    n_target: int
    n_nontarget: int
    passed: bool  # mean cosine >= 0.98 and EER up by at most 1 percentage point
    per_file: tuple[tuple[str, float], ...] = field(default=(), repr=False)
    skipped: tuple[FileProblem, ...] = ()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["per_file"] = [{"path": p, "cosine": c} for p, c in self.per_file]
        d["skipped"] = [asdict(p) for p in self.skipped]
        return d

    def rows(self) -> list[dict]:
        """One row per file checked: ``path`` and ``cosine`` (original vs watermarked)."""
        return [{"path": p, "cosine": c} for p, c in self.per_file]


#: the columns of ``WatermarkRiskResult.rows``
WATERMARK_COLUMNS = ("path", "cosine")


def _pair_eer(a: np.ndarray, b: np.ndarray, speakers: list[str]) -> tuple[float, int, int] | None:
    """EER over all ordered pairs i != j, enrolment side ``a[i]``, test side ``b[j]`` (None: no pairs)."""
    if len(set(speakers)) < 2:
        return None
    tgt, non = pair_scores(a, b, speakers)
    if tgt.size == 0:
        return None
    return asv_metrics(tgt, non).eer, int(tgt.size), int(non.size)


def _embed_marked(files: list[LabeledFile], watermarker, message, embedder: SpeakerEmbedder, cache: bool
                  ) -> tuple[list[str], list[np.ndarray], list[np.ndarray], list[FileProblem]]:
    """Decode, watermark and embed ``files``: the paths embedded both ways, their original and watermarked
    embeddings (rows, in that order), and the files left out."""
    originals, marked, names, problems = [], [], [], []
    for f in files:
        try:
            wav = decode_voice(f.path)  # the channel rule shared with scan (voiceguard.vad.speech_mix)
            mark = watermarker.embed(wav, SAMPLE_RATE, message)  # refused e.g. when shorter than it marks
        except VoiceguardError as e:
            problems.append(FileProblem(f.path, e.reason))
            continue
        originals.append(wav)
        marked.append(mark)
        names.append(f.path)
    orig = embed_arrays(originals, embedder, names, cache=cache)
    wm = embed_arrays(marked, embedder, names, cache=cache)
    problems += _problems(orig, wm)
    oi, wi = orig.index(), wm.index()
    keep = [n for n in names if n in oi and n in wi]
    return (keep, [orig.embeddings[oi[n]] for n in keep], [wm.embeddings[wi[n]] for n in keep], problems)


def watermark_check(files: list[LabeledFile] | list[str], watermarker, *, message: int | str | None = 0xBEEF,
                    embedder: SpeakerEmbedder, cache: bool = True, progress=None, chunk: int = 32
                    ) -> WatermarkRiskResult:
    """Embed each file's original and watermarked version (at 16 kHz) and compare the voices."""
    labeled = [f if isinstance(f, LabeledFile) else LabeledFile(str(f), "-") for f in files]
    if not labeled:
        raise RiskError("no files to check")
    keep: list[str] = []
    rows_a, rows_b, problems = [], [], []
    for k in range(0, len(labeled), chunk):  # each file decoded once; memory bounded by one chunk of clips
        names, a, b, bad = _embed_marked(labeled[k:k + chunk], watermarker, message, embedder, cache)
        keep += names
        rows_a += a
        rows_b += b
        problems += bad
        if progress:
            progress(len(labeled[k:k + chunk]))
    if not keep:
        raise RiskError(f"no file could be embedded: {preview([f'{p.path}: {p.reason}' for p in problems])}")
    a, b = np.stack(rows_a), np.stack(rows_b)
    cos = np.sum(a * b, axis=1)
    spk_of = {f.path: f.speaker for f in labeled}
    speakers = [spk_of[p] for p in keep]
    before = _pair_eer(a, a, speakers) if "-" not in speakers else None
    after = _pair_eer(a, b, speakers) if before else None
    passed = bool(cos.mean() >= 0.98 and (before is None or after[0] - before[0] <= 0.01))
    return WatermarkRiskResult(
        embedder.info(), getattr(watermarker, "name", type(watermarker).__name__), len(keep), float(cos.mean()),
        float(cos.min()), float(np.quantile(cos, 0.05)), before[0] if before else None, after[0] if after else None,
        before[1] if before else 0, before[2] if before else 0, passed,
        tuple(zip(keep, map(float, cos))), tuple(problems))


# --------------------------------------------------------------------------- re-identification
@dataclass(frozen=True)
class AttackerResult:
    """Re-identification by one attacker: verification-style metrics and closed-set rank-k."""

    scenario: str  # ignorant | lazy-informed
    enrollment: str  # where the attacker's enrolment came from
    link: LinkMetrics
    rank: dict  # {"rank1": ..., "rank5": ...}
    rank1_ci: tuple[float, float] | None
    n_probes: int
    n_speakers: int
    # the scores behind the metrics (for histograms); not part of the serialised result
    mated: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)
    nonmated: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in ("mated", "nonmated")}
        d["link"] = self.link.to_dict()
        return d


@dataclass(frozen=True)
class ReidResult:
    backend: dict
    attackers: tuple[AttackerResult, ...]
    risk: str  # low | medium | high
    explanation: str
    skipped: tuple[FileProblem, ...] = ()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["attackers"] = [a.to_dict() for a in self.attackers]
        d["skipped"] = [asdict(p) for p in self.skipped]
        return d

    def rows(self) -> list[dict]:
        """One row per attacker (keys ``REID_COLUMNS``); rates as fractions, an absent interval ``None``."""
        return [{"attacker": a.scenario, "enrolment": a.enrollment, "probes": a.n_probes, "speakers": a.n_speakers,
                 "eer": a.link.eer, "eer_ci_low": a.link.eer_ci[0] if a.link.eer_ci else None,
                 "eer_ci_high": a.link.eer_ci[1] if a.link.eer_ci else None, "d_sys": a.link.d_sys,
                 "min_cllr": a.link.min_cllr, "rank1": a.rank.get("rank1"), "rank5": a.rank.get("rank5")}
                for a in self.attackers]


#: the columns of ``ReidResult.rows``
REID_COLUMNS = ("attacker", "enrolment", "probes", "speakers", "eer", "eer_ci_low", "eer_ci_high", "d_sys", "min_cllr",
                "rank1", "rank5")


def _attack(scenario: str, enrollment: str, scores: np.ndarray, truth: np.ndarray, n_boot: int, seed: int
            ) -> AttackerResult:
    """Metrics of ``scores[probe, speaker model]`` where ``truth[probe]`` is the probe's own model."""
    own = np.zeros(scores.shape, dtype=bool)
    own[np.arange(len(truth)), truth] = True
    link = link_metrics(scores[own], scores[~own], n_boot=n_boot, seed=seed)
    rank = {f"rank{k}": v for k, v in rank_k_rates(scores, truth).items()}
    ci = None
    if n_boot:
        hits = (scores > scores[own][:, None]).sum(1) == 0
        ci = bootstrap_ci(np.mean, (hits.astype(float),), n_boot, seed=seed)
    return AttackerResult(scenario, enrollment, link, rank, ci, int(len(truth)), int(scores.shape[1]),
                          scores[own], scores[~own])


def risk_level(attackers: tuple[AttackerResult, ...]) -> tuple[str, str]:
    """Plain-language level from the strongest attacker (lowest EER), with the numbers behind it.

    high: EER < 10 % or rank-1 >= 50 %; medium: EER < 30 % or D_sys >= 0.3; low otherwise."""
    worst = min(attackers, key=lambda a: a.link.eer)
    r1 = worst.rank.get("rank1", 0.0)
    if worst.link.eer < 0.10 or r1 >= 0.5:
        level = "high"
    elif worst.link.eer < 0.30 or worst.link.d_sys >= 0.3:
        level = "medium"
    else:
        level = "low"
    what = {"high": "speakers in the probe set are re-identifiable from enrolment audio",
            "medium": "speakers are partly linkable to their enrolment audio",
            "low": "little speaker information is left for these attackers"}[level]
    return level, (f"{level}: {what} (strongest attacker {worst.scenario}: EER {worst.link.eer * 100:.1f} %, "
                   f"rank-1 {r1 * 100:.1f} % over {worst.n_speakers} speakers (chance "
                   f"{100 / max(worst.n_speakers, 1):.1f} %), D_sys {worst.link.d_sys:.2f})")


def reid_check(enroll: list[LabeledFile], probe: list[LabeledFile], embedder: SpeakerEmbedder, *,
               lazy_enroll: list[LabeledFile] | None = None, min_enroll_files: int = 1, n_boot: int = 0,
               seed: int = 0, cache: bool = True, progress=None) -> ReidResult:
    """Ignorant attacker: enrol on ``enroll`` (originals). Lazy-informed: enrol on ``lazy_enroll`` (processed
    like the probes) when given, else leave-one-out within the probe set (each probe against the mean of its
    speaker's other probes)."""
    enroll_by = check_labels(enroll, what="enrolment set", min_speakers=2, min_per_speaker=min_enroll_files)
    probe_by = check_labels(probe, what="probe set", min_speakers=1)
    unknown = sorted(set(probe_by) - set(enroll_by))
    if unknown:
        raise RiskError(f"probe speaker(s) not in the enrolment set: {preview(unknown)} (labels mismatched? "
                        f"enrolled: {preview(sorted(enroll_by))})")
    e = embed_files([f.path for f in enroll], embedder, cache=cache, progress=progress)
    p = embed_files([f.path for f in probe], embedder, cache=cache, progress=progress)
    spk_e = {f.path: f.speaker for f in enroll}
    spk_p = {f.path: f.speaker for f in probe}
    for name, got in (("enrolment", e), ("probe", p)):
        if len(got.paths) == 0:
            raise RiskError(f"no {name} file could be embedded: "
                            f"{preview([f'{x.path}: {x.reason}' for x in got.problems])}")
    names, models = _speaker_models(e.embeddings, [spk_e[x] for x in e.paths])
    probe_spk = [spk_p[x] for x in p.paths]
    lost = sorted(set(probe_spk) - set(names))
    if lost:
        raise RiskError(f"every enrolment file of speaker(s) {preview(lost)} failed: "
                        f"{preview([f'{x.path}: {x.reason}' for x in e.problems])}")
    col = {s: i for i, s in enumerate(names)}
    truth = np.array([col[s] for s in probe_spk])
    attackers = [_attack("ignorant", "original enrolment audio", cosine_matrix(p.embeddings, models), truth,
                         n_boot, seed)]
    problems = list(_problems(e, p))
    if lazy_enroll:
        lazy, lazy_problems = _lazy_informed(lazy_enroll, p.embeddings, probe_spk, embedder,
                                             min_enroll_files=min_enroll_files, n_boot=n_boot, seed=seed,
                                             cache=cache, progress=progress)
        attackers.append(lazy)
        problems += lazy_problems
    else:
        loo = _leave_one_out(p.embeddings, probe_spk, n_boot, seed)
        if loo is not None:
            attackers.append(loo)
    level, text = risk_level(tuple(attackers))
    return ReidResult(embedder.info(), tuple(attackers), level, text, tuple(problems))


def _lazy_informed(lazy_enroll: list[LabeledFile], probes: np.ndarray, probe_spk: list[str],
                   embedder: SpeakerEmbedder, *, min_enroll_files: int, n_boot: int, seed: int, cache: bool,
                   progress=None) -> tuple[AttackerResult, tuple[FileProblem, ...]]:
    """The lazy-informed attacker enrolled on ``lazy_enroll`` (audio processed like the probes), and the
    enrolment files left out."""
    check_labels(lazy_enroll, what="lazy-informed enrolment set", min_speakers=2, min_per_speaker=min_enroll_files)
    le = embed_files([f.path for f in lazy_enroll], embedder, cache=cache, progress=progress)
    spk_l = {f.path: f.speaker for f in lazy_enroll}
    lnames, lmodels = _speaker_models(le.embeddings, [spk_l[x] for x in le.paths])
    missing = sorted(set(probe_spk) - set(lnames))
    if missing:
        raise RiskError(f"probe speaker(s) not in the lazy-informed enrolment set: {preview(missing)}")
    lcol = {s: i for i, s in enumerate(lnames)}
    return (_attack("lazy-informed", "processed enrolment audio", cosine_matrix(probes, lmodels),
                    np.array([lcol[s] for s in probe_spk]), n_boot, seed), tuple(le.problems))


def _leave_one_out(emb: np.ndarray, speakers: list[str], n_boot: int, seed: int) -> AttackerResult | None:
    """Lazy-informed without processed enrolment: probes of speakers with >= 2 probes, each against the mean
    of its speaker's other probes and the mean of every other speaker's probes."""
    spk = np.asarray(speakers)
    names = sorted(set(speakers))
    if len(names) < 2:
        return None
    counts = {s: int((spk == s).sum()) for s in names}
    sums = {s: emb[spk == s].sum(0) for s in names}
    rows, truth = [], []
    col = {s: i for i, s in enumerate(names)}
    for i, s in enumerate(speakers):
        if counts[s] < 2:
            continue
        models = np.stack([(sums[t] - emb[i]) / (counts[t] - 1) if t == s else sums[t] / counts[t] for t in names])
        rows.append(cosine_matrix(emb[i][None], models)[0])
        truth.append(col[s])
    if not rows:
        return None
    return _attack("lazy-informed", "leave-one-out within the probe set", np.stack(rows), np.array(truth),
                   n_boot, seed)


# --------------------------------------------------------------------------- two clips
@dataclass(frozen=True)
class CompareResult:
    a: str
    b: str
    cosine: float
    threshold: float | None  # calibrated same-speaker threshold of the backend (EER point on held-out speech)
    same_speaker: bool | None
    backend: dict

    def to_dict(self) -> dict:
        return asdict(self)

    def rows(self) -> list[dict]:
        """One row (keys ``COMPARE_COLUMNS``)."""
        return [{k: getattr(self, k) for k in COMPARE_COLUMNS}]


#: the columns of ``CompareResult.rows``
COMPARE_COLUMNS = ("a", "b", "cosine", "threshold", "same_speaker")


def compare_clips(a: str | os.PathLike, b: str | os.PathLike, embedder: SpeakerEmbedder, *,
                  threshold: float | None = None, cache: bool = True) -> CompareResult:
    """Cosine of the two clips' embeddings and the same-speaker decision at ``threshold`` (default: the
    backend's calibrated one; no decision without one).  Raises ``RiskError`` when a clip cannot be embedded."""
    emb = embed_files([a, b], embedder, cache=cache)
    if len(emb.paths) < 2:
        raise RiskError("; ".join(f"{x.path}: {x.reason}" for x in emb.problems) or "the two clips are one file")
    thr = threshold if threshold is not None else embedder.same_speaker_threshold
    cos = float(emb.embeddings[0] @ emb.embeddings[1])
    return CompareResult(str(a), str(b), cos, thr, None if thr is None else bool(cos >= thr), embedder.info())


__all__ = ["AsvTrial", "AsvCheckResult", "AttackAcceptance", "WatermarkRiskResult", "AttackerResult",
           "ReidResult", "CompareResult", "AsvInputs", "asv_inputs", "asv_check", "watermark_check", "reid_check",
           "compare_clips", "ASV_COLUMNS", "WATERMARK_COLUMNS", "REID_COLUMNS", "COMPARE_COLUMNS",
           "read_asv_enrollment", "read_asv_trials", "format_asv_scores", "corpus_asv_paths", "risk_level",
           "FOOLS_ASV"]
