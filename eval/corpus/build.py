"""Build an ASVspoof-2019-LA-style corpus from a folder of real speech.

``prepare_corpus(source, out, config, seed) -> CorpusCard`` (the CLI ``voiceguard data build``
is a thin wrapper).  Layout of ``out``::

    flac/VG_T_0000001.flac ...              16 kHz mono FLAC (PCM 16)
    protocols/VG.cm.{train.trn,dev.trl,eval.trl}.txt    LA19 5-column CM protocols
    protocols/VG.asv.{dev,eval}.enroll.txt  SPEAKER utt1,utt2      (ASV enrollment)
    protocols/VG.asv.{dev,eval}.trl.txt     SPEAKER UTT ATTACK KEY (target / nontarget / spoof)
    corpus.json                             the card: sources, licenses, config, seed, counts, versions
    shortcut_check.json                     EERs of trivial classifiers (duration, silence, level, bandwidth)
"""
from __future__ import annotations

import json
import multiprocessing
import os
import platform
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from voiceguard.audio import SAMPLE_RATE, find_audio_files, load_audio, resample, save_audio
from voiceguard.errors import VoiceguardError
from voiceguard.files import atomic_write_text, read_text
from voiceguard.protocols import Trial, write_asvspoof2019

from . import neural
from .shortcuts import PASS_EER, SYSTEM_EER
from .systems import FAMILIES, RECIPES, SYSTEMS, TEXT_FAMILIES, TOOLS, Job, median_f0, require_tool

PREFIX = "VG"
SPLITS = ("train", "dev", "eval")
SPLIT_LETTER = {"train": "T", "dev": "D", "eval": "E"}
PROTOCOL_NAMES = {"train": "train.trn", "dev": "dev.trl", "eval": "eval.trl"}


class CorpusError(VoiceguardError):
    """The corpus cannot be built from this input or config."""


# --------------------------------------------------------------------------- config
@dataclass(frozen=True)
class SystemSpec:
    attack_id: str
    engine: str
    params: dict = field(hash=False, default_factory=dict)
    same_as: str | None = None  # an eval id that repeats a training system (seen attack), as LA19 A16/A19
    count: dict | None = field(hash=False, default=None)  # split -> utterances, instead of spoofs_per_system

    @property
    def family(self) -> str:
        return FAMILIES[self.engine]


@dataclass(frozen=True)
class ChannelPlan:
    """Channel conditions (rows of the attack library, ``voiceguard.attacks``) applied alike to both classes:
    ``seen`` in every split, ``unseen`` in eval only.  Each clean utterance gets ``copies`` channel copies with
    probability ``fraction`` (stratified per split and class, so both classes get the same distribution)."""

    seen: tuple = ()  # SuiteRow
    unseen: tuple = ()
    copies: int = 1
    fraction: float = 1.0

    def conditions(self, split: str) -> tuple:
        return self.seen + (self.unseen if split == "eval" else ())


@dataclass(frozen=True)
class CorpusConfig:
    name: str
    segment_min_s: float
    segment_max_s: float
    max_segments_per_speaker: int
    split_fractions: tuple[float, float, float]
    spoofs_per_system: dict = field(hash=False)  # split -> utterances per attack system
    train_systems: tuple[str, ...]
    eval_systems: tuple[str, ...]
    systems: dict = field(hash=False)  # attack id -> SystemSpec
    loudness_dbfs: float = -26.0
    trim_top_db: float = 40.0
    pad_s: tuple[float, float] = (0.1, 0.3)
    asv_enroll_per_speaker: int = 2
    workers: int = 2
    channels: ChannelPlan | None = field(hash=False, default=None)
    shortcut_pass_eer: float = PASS_EER  # pooled EER of a one-feature classifier below this fails the check
    shortcut_system_eer: float = SYSTEM_EER  # the same, per split and system
    bandwidth_hz: float | None = None  # common band limit of every utterance (finish); None: the full 8 kHz

    @property
    def min_speakers(self) -> int:
        return 3 * 2  # at least two speakers in every split (non-target ASV trials need another speaker)


def list_configs() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__package__).joinpath("configs").iterdir()
                  if p.name.endswith(".yaml"))


def load_config(name_or_path: str | os.PathLike) -> CorpusConfig:
    p = Path(name_or_path)
    if p.is_file():
        text = read_text(p, CorpusError, "corpus config")
    else:
        res = resources.files(__package__).joinpath("configs", f"{name_or_path}.yaml")
        if not res.is_file():
            raise CorpusError(f"unknown corpus config {str(name_or_path)!r}: not a file, nor one of "
                              f"{', '.join(list_configs())}")
        text = res.read_text()
    try:
        d = yaml.safe_load(text)
        systems = {k: SystemSpec(k, v["engine"], {x: y for x, y in v.items()
                                                  if x not in ("engine", "same_as", "count")},
                                 v.get("same_as"), {s: int(v["count"][s]) for s in SPLITS} if "count" in v else None)
                   for k, v in d["systems"].items()}
        cfg = CorpusConfig(
            name=d["name"], segment_min_s=float(d["segment"]["min_s"]), segment_max_s=float(d["segment"]["max_s"]),
            max_segments_per_speaker=int(d.get("max_segments_per_speaker", 1000)),
            split_fractions=tuple(float(d["split_fractions"][s]) for s in SPLITS),
            spoofs_per_system={s: int(d["spoofs_per_system"][s]) for s in SPLITS},
            train_systems=tuple(d["train_systems"]), eval_systems=tuple(d["eval_systems"]), systems=systems,
            loudness_dbfs=float(d.get("loudness_dbfs", -26.0)), trim_top_db=float(d.get("trim_top_db", 40.0)),
            pad_s=tuple(d.get("pad_s", (0.1, 0.3))), asv_enroll_per_speaker=int(d.get("asv_enroll_per_speaker", 2)),
            workers=int(d.get("workers", 2)), channels=_channel_plan(d.get("channels"), name_or_path),
            shortcut_pass_eer=float((d.get("shortcut") or {}).get("pass_eer", PASS_EER)),
            shortcut_system_eer=float((d.get("shortcut") or {}).get("system_eer", SYSTEM_EER)),
            bandwidth_hz=float(d["bandwidth_hz"]) if d.get("bandwidth_hz") else None)
    except (KeyError, TypeError, ValueError, AttributeError, yaml.YAMLError) as e:
        raise CorpusError(f"malformed corpus config ({type(e).__name__}: {e})", source=str(name_or_path)) from None
    if cfg.bandwidth_hz is not None and not 1000 <= cfg.bandwidth_hz < SAMPLE_RATE / 2:
        raise CorpusError(f"bandwidth_hz must be in [1000, {SAMPLE_RATE // 2}) Hz, got {cfg.bandwidth_hz:g}",
                          source=str(name_or_path))
    for sid in cfg.train_systems + cfg.eval_systems:
        spec = cfg.systems.get(sid)
        if spec is None:
            raise CorpusError(f"system {sid} is used but not defined", source=str(name_or_path))
        if spec.engine not in SYSTEMS:
            raise CorpusError(f"system {sid}: unknown engine {spec.engine!r} (one of {', '.join(SYSTEMS)})",
                              source=str(name_or_path))
    if not set(cfg.eval_systems) - set(cfg.train_systems) or not any(
            cfg.systems[s].same_as in cfg.train_systems for s in cfg.eval_systems):
        raise CorpusError("eval needs unseen systems and at least one seen one (same_as a train system)",
                          source=str(name_or_path))
    return cfg


def _channel_plan(d: dict | None, where) -> ChannelPlan | None:
    """The ``channels:`` section: ``seen`` / ``unseen`` lists of attack-suite rows (``label:`` + ``attack:
    {params}`` or ``chain: [...]``), ``copies`` and ``fraction``.  Every row is built once here, so a bad
    parameter is a ``CorpusError`` naming the row (an encoder missing from ffmpeg is reported at build time)."""
    if not d:
        return None
    from voiceguard.attacks import AttackUnavailable, suite_from_rows

    if not isinstance(d, dict):
        raise CorpusError("channels: must be a mapping with 'seen' (and 'unseen') lists", source=str(where))
    try:
        seen = suite_from_rows("seen", "", d.get("seen"), source=str(where)).rows
        unseen = suite_from_rows("unseen", "", d["unseen"], source=str(where)).rows if d.get("unseen") else ()
    except VoiceguardError as e:
        raise CorpusError(f"channels: {e.reason}", source=str(where)) from None
    labels = [r.label for r in seen + unseen]
    if len(set(labels)) != len(labels) or {"clean", "-"} & set(labels) or any(
            not re.fullmatch(r"[\w.+-]+", x) for x in labels):
        raise CorpusError(f"channels: labels must be unique words other than 'clean' and '-', got {labels}",
                          source=str(where))
    for row in seen + unseen:
        try:
            row.build(seed=0)
        except AttackUnavailable:
            pass
        except (ValueError, TypeError, VoiceguardError) as e:
            raise CorpusError(f"channels: {row.label}: {getattr(e, 'reason', e)}", source=str(where)) from None
    plan = ChannelPlan(seen, unseen, int(d.get("copies", 1)), float(d.get("fraction", 1.0)))
    if not (1 <= plan.copies <= len(seen) and 0 < plan.fraction <= 1):
        raise CorpusError(f"channels: copies must be in [1, {len(seen)}] (the seen conditions) and fraction in "
                          f"(0, 1]", source=str(where))
    return plan


# --------------------------------------------------------------------------- sources
_LIBRISPEECH = re.compile(r"^(\d+)-(\d+)-(\d+)$")


def speaker_of(path: Path) -> str:
    """LibriSpeech ``SPK-CHAPTER-UTT`` names give the speaker; otherwise the parent folder does."""
    m = _LIBRISPEECH.match(path.stem)
    return m.group(1) if m else path.parent.name


@dataclass(frozen=True)
class Segment:
    source: str
    speaker: str
    start: int
    end: int


def _segment_bounds(x: np.ndarray, rng: np.random.Generator, lo_s: float, hi_s: float) -> list[tuple[int, int]]:
    """Cut at the quietest 20 ms frame near targets drawn in [lo_s, hi_s]."""
    frame = SAMPLE_RATE // 50
    energy = np.convolve(x ** 2, np.ones(frame) / frame, mode="same")
    bounds, start = [], 0
    while x.size - start >= lo_s * SAMPLE_RATE:
        target = start + int(rng.uniform(lo_s, hi_s) * SAMPLE_RATE)
        if target >= x.size:
            if x.size - start <= hi_s * SAMPLE_RATE:
                bounds.append((start, x.size))
            break
        lo, hi = max(start + int(lo_s * SAMPLE_RATE), target - int(0.3 * SAMPLE_RATE)), min(x.size, target + int(0.3 * SAMPLE_RATE))
        cut = lo + int(np.argmin(energy[lo:hi])) if hi > lo else target
        bounds.append((start, cut))
        start = cut
    return bounds


# --------------------------------------------------------------------------- finishing (both classes alike)
def finish(y: np.ndarray, rng: np.random.Generator, cfg: CorpusConfig) -> np.ndarray:
    """Same treatment for bona fide and spoof: trim silence, band-limit to ``cfg.bandwidth_hz`` when set (soxr
    down to twice that rate and back: one anti-aliasing filter for every utterance, whatever its rate of
    origin), normalise speech level, pad alike, clip-safe."""
    import librosa

    y = np.asarray(y, dtype=np.float32)
    if cfg.bandwidth_hz:
        y = resample(resample(y, SAMPLE_RATE, int(2 * cfg.bandwidth_hz)), int(2 * cfg.bandwidth_hz), SAMPLE_RATE)
    y = y - float(np.mean(y))
    trimmed, _ = librosa.effects.trim(y, top_db=cfg.trim_top_db, frame_length=512, hop_length=128)
    if trimmed.size < SAMPLE_RATE // 4:
        trimmed = y
    frames = librosa.util.frame(np.pad(trimmed, (0, 400)), frame_length=400, hop_length=160)
    rms = np.sqrt(np.mean(frames ** 2, axis=0) + 1e-12)
    active = rms > rms.max() * 10 ** (-30 / 20)
    level = float(np.sqrt(np.mean(rms[active] ** 2)))
    y = trimmed * (10 ** (cfg.loudness_dbfs / 20) / max(level, 1e-9))
    peak = float(np.abs(y).max())
    if peak > 0.99:
        y = y * (0.99 / peak)
    pads = [int(rng.uniform(*cfg.pad_s) * SAMPLE_RATE) for _ in range(2)]
    return np.pad(y, pads).astype(np.float32)


# --------------------------------------------------------------------------- jobs (run in workers)
@dataclass(frozen=True)
class UttJob:
    utt_id: str
    split: str
    speaker: str
    attack: str  # "-" for bona fide
    engine: str | None
    params: dict = field(hash=False)
    seed: int = 0
    segment: Segment | None = None
    text: str | None = None
    target_f0: float | None = None


def _load_segment(seg: Segment) -> np.ndarray:
    x, _ = load_audio(seg.source, target_sr=SAMPLE_RATE, mono=True)
    return x[0, seg.start:seg.end]


_WARM: set = set()  # (engine, params) already run in this process


def _run_job(args: tuple[UttJob, CorpusConfig, str]) -> tuple[str, float, str | None, tuple[float, float, bool]]:
    """One utterance: ``(utt_id, seconds of audio written, error or None, (wall seconds the system took,
    seconds of audio it made, whether this was the process's first call of the system, which loads its
    models))``."""
    job, cfg, flac_dir = args
    rng = np.random.default_rng(job.seed)
    try:
        if job.engine is None:
            t0 = time.perf_counter()
            y = _load_segment(job.segment)
        else:
            src = _load_segment(job.segment) if job.segment is not None else None
            key = (job.engine, json.dumps(job.params, sort_keys=True))
            first = key not in _WARM  # this process's first call of the system: loads its models
            _WARM.add(key)
            t0 = time.perf_counter()
            y = SYSTEMS[job.engine](Job(job.seed, src, job.text, job.target_f0), job.params)
        took = (time.perf_counter() - t0, np.asarray(y).size / SAMPLE_RATE, job.engine is not None and first)
        y = finish(y, rng, cfg)
        save_audio(Path(flac_dir) / f"{job.utt_id}.flac", y, SAMPLE_RATE, subtype="PCM_16", overwrite=True)
        return job.utt_id, y.size / SAMPLE_RATE, None, took
    except Exception as e:  # reported in the card; the build stops if any utterance fails
        return job.utt_id, 0.0, f"{type(e).__name__}: {e}", (0.0, 0.0, False)


@dataclass(frozen=True)
class ChannelJob:
    """A channel copy: ``clean`` (an utterance id already made) through ``condition`` -> ``utt_id``."""

    utt_id: str
    clean: str
    condition: object  # voiceguard.attacks.SuiteRow
    seed: int


def _run_channel_job(args: tuple[ChannelJob, CorpusConfig, str]) -> tuple[str, float, str | None,
                                                                          tuple[float, float, bool]]:
    """Apply one channel condition to a clean utterance (no re-normalisation: level changes, noise and clipping
    are part of the channel; samples clipped to [-1, 1] as a real channel would)."""
    job, _, flac_dir = args
    try:
        t0 = time.perf_counter()
        x, _ = load_audio(Path(flac_dir) / f"{job.clean}.flac", mono=True)
        y = job.condition.build(seed=job.seed)(x[0], SAMPLE_RATE)
        y = np.clip(np.nan_to_num(np.asarray(y, dtype=np.float32)), -1.0, 1.0)
        took = (time.perf_counter() - t0, y.size / SAMPLE_RATE, False)
        save_audio(Path(flac_dir) / f"{job.utt_id}.flac", y, SAMPLE_RATE, subtype="PCM_16", overwrite=True)
        return job.utt_id, y.size / SAMPLE_RATE, None, took
    except Exception as e:
        return job.utt_id, 0.0, f"{job.condition.label}: {type(e).__name__}: {e}", (0.0, 0.0, False)


# --------------------------------------------------------------------------- the builder
#: the columns of ``CorpusCard.rows`` (``voiceguard data build``)
SPLIT_COLUMNS = ("split", "bonafide", "spoof", "speakers", "hours", "attacks")


@dataclass(frozen=True)
class CorpusCard:
    """What ``prepare_corpus`` built: the folder, counts per split (``bonafide``, ``spoof``, ``speakers``,
    ``per_attack``, ``hours``, with channels ``per_channel``), whether the shortcut check passed (and which
    system and feature failed it), the build time in seconds, and notes (systems left out, with why)."""

    out: str
    counts: dict
    shortcut_pass: bool
    seconds: float
    notes: tuple[str, ...] = ()  # e.g. the neural systems left out because the extra is not installed
    shortcut_failures: tuple[dict, ...] = ()  # {split, system, feature, eer} of a failed shortcut check

    def to_dict(self) -> dict:
        d = asdict(self)
        return {**d, "notes": list(self.notes), "shortcut_failures": list(self.shortcut_failures)}

    def rows(self) -> list[dict]:
        """One row per split (keys ``SPLIT_COLUMNS``); ``attacks`` as ``A01:3 A02:3`` (spoofs per attack)."""
        return [{"split": s, **{k: v for k, v in c.items() if k not in ("per_attack", "per_channel")},
                 "attacks": " ".join(f"{a}:{n}" for a, n in c["per_attack"].items() if a != "-")}
                for s, c in self.counts.items()]


def _sentences() -> list[str]:
    text = resources.files(__package__).joinpath("sentences.txt").read_text()
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def _tool_versions(engines: set[str]) -> dict:
    import librosa
    import scipy

    from importlib import metadata

    v = {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
         "librosa": librosa.__version__}
    for mod in ("pyworld", "pysptk", "soundfile", "soxr"):
        try:
            v[mod] = __import__(mod).__version__
        except (ImportError, AttributeError):
            pass
    for dist in sorted({d for e in engines for g in neural.ENGINE_GENERATORS.get(e, ())
                        for d in neural.GENERATORS[g]["runtime"]}):
        try:
            v[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    for eng, flag in (("espeak", "--version"), ("flite", "--version"), ("festival", "--version")):
        if eng in engines:
            prog = "festival" if eng == "festival" else TOOLS[eng][0]
            out = subprocess.run([prog, flag], capture_output=True, text=True)
            v[prog] = (out.stdout or out.stderr).strip().splitlines()[0][:120] if (out.stdout or out.stderr) else "?"
    return v


def _speaker_split(speakers: list[str], fractions: tuple[float, ...], rng) -> dict[str, str]:
    order = list(speakers)
    rng.shuffle(order)
    n = len(order)
    n_train = max(2, int(round(fractions[0] * n)))
    n_dev = max(2, int(round(fractions[1] * n)))
    assign = {}
    for i, spk in enumerate(order):
        assign[spk] = "train" if i < n_train else "dev" if i < n_train + n_dev else "eval"
    return assign


def _without_unavailable_neural(cfg: CorpusConfig) -> tuple[CorpusConfig, dict[str, str]]:
    """The config without the neural systems this machine cannot run (the ``neural`` extra or espeak-ng is not
    installed), and ``{system id: reason}`` for those left out.  A weight file whose sha256 differs from its pin
    raises ``neural.WeightMismatchError``: never a reason to leave a system out silently."""
    skipped = {}
    for sid in sorted(set(cfg.train_systems + cfg.eval_systems)):
        spec = cfg.systems[sid]
        base = cfg.systems[spec.same_as] if spec.same_as else spec
        if base.engine in neural.ENGINE_GENERATORS:
            reason = neural.neural_unavailable(base.engine)
            if reason:
                skipped[sid] = reason
    if not skipped:
        return cfg, {}
    cfg = replace(cfg, train_systems=tuple(s for s in cfg.train_systems if s not in skipped),
                  eval_systems=tuple(s for s in cfg.eval_systems if s not in skipped))
    if not cfg.train_systems or not cfg.eval_systems:
        raise CorpusError(f"no system left to build after leaving out the neural ones: {next(iter(skipped.values()))}")
    return cfg, skipped


def _check_inputs(cfg: CorpusConfig, source: Path, out: Path) -> tuple[list[Path], set[str]]:
    """The source's audio files and the engines of the config's systems, after checking that the source
    exists, the engines' tools and Python packages are installed, and ``out`` is new or empty."""
    if not source.is_dir():
        raise CorpusError("source is not a folder of speech recordings", source=source)
    files, _ = find_audio_files([source])
    if not files:
        raise CorpusError("no audio files found (looked for .wav/.flac/.mp3/... recursively)", source=source)
    engines = {cfg.systems[s].engine for s in cfg.train_systems + cfg.eval_systems}
    if cfg.channels is not None:
        from voiceguard.attacks import AttackUnavailable

        for row in cfg.channels.seen + cfg.channels.unseen:
            try:
                row.build(seed=0)
            except AttackUnavailable as e:
                raise CorpusError(f"channel {row.label}: {e}") from None
    for eng in engines & set(TOOLS):
        require_tool(eng)
    if "world" in engines or "world_vc" in engines or "mlsa" in engines or "lpc" in engines:
        for mod in ("pyworld", "pysptk"):
            try:
                __import__(mod)
            except ImportError:
                raise CorpusError(f"python package '{mod}' is needed by the vocoder systems: pip install {mod}") \
                    from None
    if out.exists() and any(out.iterdir()):
        raise CorpusError("output folder exists and is not empty; choose a new one", source=out)
    return files, engines


def _bonafide_segments(files: list[Path], cfg: CorpusConfig, seed: int
                       ) -> tuple[dict[str, list[Segment]], list[dict]]:
    """Step 1: the bona fide segments of every speaker (every segment of a speaker stays in one split), and the
    files that could not be read (``{"path", "reason"}``)."""
    skipped: list[dict] = []
    by_speaker: dict[str, list[Segment]] = defaultdict(list)
    for f in files:
        try:
            x, _ = load_audio(f, target_sr=SAMPLE_RATE, mono=True)
        except VoiceguardError as e:
            skipped.append({"path": str(f), "reason": e.reason})
            continue
        seg_rng = np.random.default_rng([seed, len(by_speaker), x.size])
        for a, b in _segment_bounds(x[0], seg_rng, cfg.segment_min_s, cfg.segment_max_s):
            by_speaker[speaker_of(f)].append(Segment(str(f), speaker_of(f), a, b))
    return by_speaker, skipped


def _usable_speakers(by_speaker: dict[str, list[Segment]], cfg: CorpusConfig, rng: np.random.Generator,
                     source: Path) -> list[str]:
    """The speakers with speech (sorted); caps each one's segments at ``max_segments_per_speaker`` (a seeded
    draw, in place).  Raises ``CorpusError`` when there are too few speakers for the config."""
    speakers = sorted(s for s, segs in by_speaker.items() if segs)
    if len(speakers) < cfg.min_speakers:
        raise CorpusError(f"found {len(speakers)} speaker(s) with usable speech; config {cfg.name!r} needs at least "
                          f"{cfg.min_speakers} (two per split) -- speakers come from LibriSpeech file names or "
                          f"sub-folder names", source=source)
    for spk in speakers:
        segs = by_speaker[spk]
        if len(segs) > cfg.max_segments_per_speaker:
            keep = sorted(rng.choice(len(segs), cfg.max_segments_per_speaker, replace=False))
            by_speaker[spk] = [segs[i] for i in keep]
    return speakers


def _plan_split(split: str, split_speakers: list[str], by_speaker: dict[str, list[Segment]], cfg: CorpusConfig,
                rng: np.random.Generator, sentences: list[str], spk_f0) -> tuple[list[UttJob], dict[str, list[str]]]:
    """Step 2, one split: its jobs (bona fide segments and ``spoofs_per_system`` spoofs per system, in a seeded
    order, numbered ``VG_<letter>_0000001``...) and its ASV enrolment (speaker -> utterance ids)."""
    rows: list[UttJob] = []
    enroll_segments: set[Segment] = set()
    for spk in split_speakers:
        segs = by_speaker[spk]
        if split != "train" and len(segs) > cfg.asv_enroll_per_speaker:
            enroll_segments.update(segs[:cfg.asv_enroll_per_speaker])
        for seg in segs:
            rows.append(UttJob("", split, spk, "-", None, {}, 0, seg))
    sources = [r.segment for r in rows if r.segment not in enroll_segments]
    systems = cfg.train_systems if split != "eval" else cfg.eval_systems
    for sid in systems:
        spec = cfg.systems[sid]
        base = cfg.systems[spec.same_as] if spec.same_as else spec
        for _ in range((spec.count or base.count or cfg.spoofs_per_system)[split]):
            if base.family in TEXT_FAMILIES:
                spk = split_speakers[int(rng.integers(len(split_speakers)))]
                rows.append(UttJob("", split, spk, sid, base.engine, base.params, 0, None,
                                   text=sentences[int(rng.integers(len(sentences)))]))
            else:
                seg = sources[int(rng.integers(len(sources)))]
                tf0 = None
                if base.family == "vc":
                    other = split_speakers[int(rng.integers(len(split_speakers)))]
                    tf0 = spk_f0(other) if other != seg.speaker else spk_f0(seg.speaker) * 1.3
                rows.append(UttJob("", split, seg.speaker, sid, base.engine, base.params, 0, seg, target_f0=tf0))
    jobs = []
    for k, i in enumerate(rng.permutation(len(rows)), 1):
        r = rows[i]
        jobs.append(UttJob(f"{PREFIX}_{SPLIT_LETTER[split]}_{k:07d}", r.split, r.speaker, r.attack, r.engine,
                           r.params, int(rng.integers(0, 2**31 - 1)), r.segment, r.text, r.target_f0))
    seg_to_utt = {j.segment: j.utt_id for j in jobs if j.engine is None}
    enroll = {}
    for spk in split_speakers:
        e = [seg_to_utt[s] for s in by_speaker[spk][:cfg.asv_enroll_per_speaker] if s in enroll_segments]
        if e:
            enroll[spk] = e
    return jobs, enroll


def _plan_jobs(speakers: list[str], split_of: dict[str, str], by_speaker: dict[str, list[Segment]],
               cfg: CorpusConfig, rng: np.random.Generator) -> tuple[list[UttJob], dict[str, dict[str, list[str]]]]:
    """Step 2: every utterance to make (``_plan_split`` per split, in ``SPLITS`` order) and the ASV enrolment
    of each split."""
    f0_cache: dict[str, float] = {}

    def spk_f0(spk: str) -> float:
        if spk not in f0_cache:
            f0_cache[spk] = median_f0(_load_segment(by_speaker[spk][0])) or 150.0
        return f0_cache[spk]

    sentences = _sentences()
    jobs: list[UttJob] = []
    enroll: dict[str, dict[str, list[str]]] = {}
    for split in SPLITS:
        split_jobs, enroll[split] = _plan_split(split, [s for s in speakers if split_of[s] == split], by_speaker,
                                                cfg, rng, sentences, spk_f0)
        jobs += split_jobs
    return jobs, enroll


def _run_jobs(jobs: list, cfg: CorpusConfig, flac: Path, n_workers: int, progress: bool, out: Path,
              fn=_run_job, desc: str = "building corpus") -> tuple[dict[str, float], dict[str, tuple]]:
    """Step 3: make every utterance (``fn``: ``_run_job`` synthesises / finishes, ``_run_channel_job`` applies a
    channel) into ``flac`` with ``n_workers`` processes (spawned, not forked: a fork of a process whose torch /
    OpenMP threads are running can deadlock in the child); returns per utterance id the seconds of audio
    written and the timing tuple of ``_run_job``.  Raises ``CorpusError`` naming the first failure."""
    failures, durations, took = [], {}, {}
    args = [(j, cfg, str(flac)) for j in jobs]
    iterator: Any
    if n_workers > 1 and len(args) > 1:
        pool = ProcessPoolExecutor(n_workers, mp_context=multiprocessing.get_context("spawn"))
        iterator = pool.map(fn, args, chunksize=4)
    else:
        pool, iterator = None, map(fn, args)
    try:
        if progress:
            from tqdm import tqdm

            iterator = tqdm(iterator, total=len(args), desc=desc, unit="utt", file=sys.stderr)
        for utt, dur, err, seconds in iterator:
            durations[utt], took[utt] = dur, seconds
            if err:
                failures.append((utt, err))
    finally:
        if pool is not None:
            pool.shutdown()
    if failures:
        raise CorpusError(f"{len(failures)} utterance(s) failed, first: {failures[0][0]}: {failures[0][1]}",
                          source=out)
    return durations, took


def _plan_channels(jobs: list[UttJob], plan: ChannelPlan, seed: int) -> list[ChannelJob]:
    """Step 3b: the channel copies.  Per split and class, the utterances that get copies (``fraction``, a seeded
    draw) are given conditions in equal shares (a seeded permutation of the split's conditions repeated), so
    bona fide and spoof see the same distribution of channels; each copy has its own seed."""
    out: list[ChannelJob] = []
    for split in SPLITS:
        conds = plan.conditions(split)
        for k, bonafide in enumerate((True, False)):
            rng = np.random.default_rng([seed, 11, SPLITS.index(split), k])
            clean = [j.utt_id for j in jobs if j.split == split and (j.engine is None) == bonafide]
            chosen = sorted(rng.choice(len(clean), int(round(plan.fraction * len(clean))), replace=False))
            order = rng.permutation(np.resize(np.arange(len(conds)), len(chosen)))
            for c in range(plan.copies):  # copy c of an utterance: the next condition (never the same one twice)
                for i, cond in zip(chosen, order):
                    out.append(ChannelJob(f"{clean[i]}_C{c + 1}", clean[i], conds[(int(cond) + c) % len(conds)],
                                          int(rng.integers(0, 2**31 - 1))))
    return sorted(out, key=lambda j: j.utt_id)


def _write_protocols(out: Path, jobs: list[UttJob], enroll: dict[str, dict[str, list[str]]], seed: int,
                     channel_jobs: list[ChannelJob] | None = None) -> tuple[dict[str, list[Trial]], dict]:
    """Step 4: the CM protocol of every split and the ASV lists of dev and eval; returns the trials per split
    and the ASV trial counts per split.  With channels, the third protocol column is the channel (``clean``
    or a condition label) and each channel copy follows its clean utterance."""
    proto = out / "protocols"
    trials_by_split = {}
    copies: dict[str, list[ChannelJob]] = defaultdict(list)
    for c in channel_jobs or []:
        copies[c.clean].append(c)
    clean = "clean" if channel_jobs is not None else "-"
    for split in SPLITS:
        trials = []
        for j in jobs:
            if j.split != split:
                continue
            label, spk = "bonafide" if j.engine is None else "spoof", _spk_id(j.speaker)
            trials.append(Trial(j.utt_id, label, j.attack, spk, condition=clean))
            trials += [Trial(c.utt_id, label, j.attack, spk, condition=c.condition.label) for c in copies[j.utt_id]]
        trials_by_split[split] = trials
        write_asvspoof2019(proto / f"{PREFIX}.cm.{PROTOCOL_NAMES[split]}.txt", trials)
    asv_counts = {}
    for split in ("dev", "eval"):
        asv_counts[split] = _write_asv_lists(proto, split, jobs, enroll[split], np.random.default_rng([seed, 7]))
    return trials_by_split, asv_counts


def _split_counts(trials_by_split: dict[str, list[Trial]], durations: dict[str, float]) -> dict:
    """Counts per split: ``bonafide``, ``spoof`` (trials: clean utterances and their channel copies),
    ``speakers``, ``per_attack`` (clean utterances per attack, ``-`` bona fide), ``hours`` of audio (all
    trials) and, with channels, ``per_channel`` (trials per condition and class)."""
    return {split: {"bonafide": sum(t.is_bonafide for t in tr), "spoof": sum(not t.is_bonafide for t in tr),
                    "speakers": len({t.speaker for t in tr}),
                    "per_attack": dict(sorted(Counter(t.attack for t in tr if t.condition in ("clean", "-")).items())),
                    "hours": round(sum(durations[t.utt_id] for t in tr) / 3600, 3),
                    **({"per_channel": {c: {"bonafide": sum(t.is_bonafide for t in tr if t.condition == c),
                                            "spoof": sum(not t.is_bonafide for t in tr if t.condition == c)}
                                        for c in sorted({t.condition for t in tr})}}
                       if any(t.condition != "-" for t in tr) else {})}
            for split, tr in trials_by_split.items()}


def _rtf(calls: list[tuple], digits: int) -> float | None:
    """Real-time factor of timed calls ``(wall seconds, audio seconds, ...)``: total wall over total audio."""
    return round(sum(c[0] for c in calls) / max(sum(c[1] for c in calls), 1e-9), digits) if calls else None


def _systems_card(cfg: CorpusConfig, jobs: list[UttJob], took: dict[str, tuple]) -> dict:
    """Per system: engine, family, recipe, params, splits; for neural systems the generator, licence, native
    rate and the sha256 of every weight file; and the measured real-time factor (wall seconds the system took
    per second of audio it made, one worker)."""
    out = {}
    for sid in sorted(set(cfg.train_systems + cfg.eval_systems)):
        spec = cfg.systems[sid]
        calls = [took[j.utt_id] for j in jobs if j.attack == sid]
        made = [c for c in calls if not c[2]] or calls  # warm calls; all when every call loaded the models
        d = {"engine": spec.engine, "family": spec.family, "recipe": RECIPES[spec.engine], "params": spec.params,
             "same_as": spec.same_as,
             "splits": [s for s in SPLITS if sid in (cfg.eval_systems if s == "eval" else cfg.train_systems)],
             "rtf": _rtf(made, 3),
             "rtf_includes_model_load": bool(made) and all(c[2] for c in made),
             "utterances": len(calls)}
        base = cfg.systems[spec.same_as] if spec.same_as else spec
        gens = neural.ENGINE_GENERATORS.get(base.engine, ())
        if gens:
            d["generator"] = " -> ".join(neural.GENERATORS[g]["generator"] for g in gens)
            d["licence"] = "; ".join(f"{g}: {neural.GENERATORS[g]['licence']}" for g in gens)
            d["rate_of_origin_hz"] = neural.GENERATORS[gens[-1]]["rate"] if base.engine != "piper_hifigan" \
                else neural.HIFIGAN_RATE
            used = base.params.get("generator", "universal")  # HiFi-GAN: only the generator this system uses
            d["weights_sha256"] = {k: v for g in gens for k, v in neural.verify_generator(g).items()
                                   if "/generator_" not in k or k.endswith(f"/generator_{used}.pth.tar")}
        out[sid] = d
    return out


def _channels_card(cfg: CorpusConfig, took: dict[str, tuple], channel_jobs: list[ChannelJob]) -> dict | None:
    """The channel conditions: attack, params, the splits they are in, seconds per second of audio."""
    if cfg.channels is None:
        return None
    rows = {}
    for row in cfg.channels.seen + cfg.channels.unseen:
        made = [took[c.utt_id] for c in channel_jobs if c.condition.label == row.label]
        rows[row.label] = {"attack": row.attack, "params": row.params,
                           "splits": list(SPLITS) if row in cfg.channels.seen else ["eval"],
                           "rtf": _rtf(made, 4)}
    return {"copies": cfg.channels.copies, "fraction": cfg.channels.fraction, "conditions": rows,
            "design": "every clean utterance id is kept (condition 'clean'); a seeded share `fraction` of each "
                      "split's bona fide and of its spoof utterances gets `copies` channel copies <utt>_C<k>, the "
                      "conditions dealt in equal shares per class (the same distribution for both classes); "
                      "'unseen' conditions only in eval; the protocol's third column names the condition"}


def _card(cfg: CorpusConfig, seed: int, source: Path, files: list[Path], skipped: list[dict], speakers: list[str],
          split_of: dict[str, str], counts: dict, asv_counts: dict, check: dict, engines: set[str],
          t0: float, systems: dict, channels: dict | None, skipped_systems: dict[str, str]) -> dict:
    """Step 5: the content of ``corpus.json``."""
    return {
        "name": f"voiceguard ASVspoof-style corpus ({cfg.name})",
        "layout": "ASVspoof 2019 LA: flac/ + protocols/ (5-column CM protocols, ASV enrollment and trial lists)",
        "seed": seed, "config": _config_dict(cfg),
        "sources": [{"path": str(source), "files": len(files), "skipped": skipped, "speakers": len(speakers),
                     "license": _license_note(source)}],
        "splits": {s: sorted(_spk_id(x) for x in speakers if split_of[x] == s) for s in SPLITS},
        "speaker_map": {_spk_id(s): s for s in speakers},
        "systems": systems,
        **({"skipped_systems": skipped_systems} if skipped_systems else {}),
        **({"channels": channels} if channels else {}),
        "counts": counts, "asv_trials": asv_counts,
        "post_processing": f"every utterance (both classes): "
                           + (f"band-limited to {cfg.bandwidth_hz:g} Hz (soxr to {2 * cfg.bandwidth_hz:g} Hz and "
                              f"back), " if cfg.bandwidth_hz else "")
                           + f"DC removed, leading/trailing silence trimmed "
                           f"(top_db {cfg.trim_top_db}), active-speech RMS set to {cfg.loudness_dbfs} dBFS, "
                           f"{cfg.pad_s[0]}-{cfg.pad_s[1]} s of digital silence padded on each side, 16 kHz PCM16 FLAC",
        "shortcut_check": {k: v for k, v in check.items() if k not in ("per_system", "per_channel")},
        "tool_versions": _tool_versions(engines),
        "build_seconds": round(time.time() - t0, 1),
    }


def prepare_corpus(source: str | os.PathLike, out: str | os.PathLike, config: str | os.PathLike = "default",
                   seed: int = 0, *, workers: int | None = None, progress: bool = False) -> CorpusCard:
    """Build the corpus (see module docstring). Deterministic for a given source, config and seed.

    Steps: check the inputs, cut bona fide segments per speaker, assign speakers to splits, plan every
    utterance, make them (``workers`` processes, default the config's), write the protocols, run the
    shortcut check, write ``corpus.json``.  Raises ``CorpusError`` (bad source, too few speakers, output not
    empty, an utterance failed) or ``MissingToolError`` (a TTS engine is not installed).
    """
    from .shortcuts import shortcut_check

    t0 = time.time()
    cfg, skipped_systems = _without_unavailable_neural(load_config(config))
    notes = (f"left out {', '.join(sorted(skipped_systems))}: "
             + "; ".join(sorted(set(skipped_systems.values()))),) if skipped_systems else ()
    if progress:
        for line in notes:
            print(f"voiceguard: {line}", file=sys.stderr)
    source, out = Path(source), Path(out)
    files, engines = _check_inputs(cfg, source, out)
    rng = np.random.default_rng(seed)
    by_speaker, skipped = _bonafide_segments(files, cfg, seed)
    speakers = _usable_speakers(by_speaker, cfg, rng, source)
    split_of = _speaker_split(speakers, cfg.split_fractions, rng)
    jobs, enroll = _plan_jobs(speakers, split_of, by_speaker, cfg, rng)
    flac = out / "flac"
    flac.mkdir(parents=True, exist_ok=True)
    n_workers = workers or cfg.workers
    durations, took = _run_jobs(jobs, cfg, flac, n_workers, progress, out)
    channel_jobs = _plan_channels(jobs, cfg.channels, seed) if cfg.channels is not None else None
    if channel_jobs:
        more, more_took = _run_jobs(channel_jobs, cfg, flac, n_workers, progress, out, _run_channel_job,
                                    "channel copies")
        durations.update(more)
        took.update(more_took)
    trials_by_split, asv_counts = _write_protocols(out, jobs, enroll, seed, channel_jobs)
    check = shortcut_check(out, trials_by_split, cfg.shortcut_pass_eer, cfg.shortcut_system_eer, n_workers)
    atomic_write_text(out / "shortcut_check.json", json.dumps(check, indent=2) + "\n")
    counts = _split_counts(trials_by_split, durations)
    cfg = replace(cfg, workers=n_workers)  # the card records the worker count of this build
    card = _card(cfg, seed, source, files, skipped, speakers, split_of, counts, asv_counts, check, engines, t0,
                 _systems_card(cfg, jobs, took), _channels_card(cfg, took, channel_jobs or []), skipped_systems)
    atomic_write_text(out / "corpus.json", json.dumps(card, indent=2) + "\n")
    return CorpusCard(str(out), counts, bool(check["pass"]), card["build_seconds"], notes,
                      tuple(check.get("failures", ())))


def _spk_id(speaker: str) -> str:
    return f"{PREFIX}_{speaker}"


def _license_note(source: Path) -> str:
    lic = source / "LICENSE.TXT"
    if lic.is_file() or "librispeech" in str(source).lower():
        return ("LibriSpeech ASR corpus (Panayotov et al., 2015), CC BY 4.0, https://www.openslr.org/12 -- "
                "derived corpus: segmented, level-normalised and used as source for spoofed speech")
    return "license of the source recordings: see the source folder"


def _config_dict(cfg: CorpusConfig) -> dict:
    d = asdict(cfg)
    d["systems"] = {k: {"engine": v.engine, **v.params, **({"same_as": v.same_as} if v.same_as else {}),
                        **({"count": v.count} if v.count else {})} for k, v in cfg.systems.items()}
    if cfg.channels is not None:
        d["channels"] = {"copies": cfg.channels.copies, "fraction": cfg.channels.fraction,
                         **{k: [{"label": r.label, r.attack: r.params["steps"] if r.attack == "chain" else r.params}
                                for r in rows] for k, rows in (("seen", cfg.channels.seen),
                                                               ("unseen", cfg.channels.unseen))}}
    return d


def _write_asv_lists(proto: Path, split: str, jobs: list[UttJob], enroll: dict[str, list[str]], rng) -> dict:
    """Enrollment list and trials: target (other bona fide of the speaker), non-target, spoof (claims the speaker)."""
    split_jobs = [j for j in jobs if j.split == split]
    enrolled = {u for us in enroll.values() for u in us}
    bona = defaultdict(list)
    for j in split_jobs:
        if j.engine is None and j.utt_id not in enrolled:
            bona[j.speaker].append(j.utt_id)
    lines, counts = [], Counter()
    for spk in sorted(enroll):
        for u in bona[spk]:
            lines.append(f"{_spk_id(spk)} {u} bonafide target")
            counts["target"] += 1
        others = [u for s, us in sorted(bona.items()) if s != spk for u in us]
        if others:
            k = min(len(others), max(2, 2 * len(bona[spk])))
            for i in sorted(rng.choice(len(others), k, replace=False)):
                lines.append(f"{_spk_id(spk)} {others[i]} bonafide nontarget")
                counts["nontarget"] += 1
        for j in split_jobs:
            if j.engine is not None and j.speaker == spk:
                lines.append(f"{_spk_id(spk)} {j.utt_id} {j.attack} spoof")
                counts["spoof"] += 1
    atomic_write_text(proto / f"{PREFIX}.asv.{split}.enroll.txt",
                      "".join(f"{_spk_id(s)} {','.join(us)}\n" for s, us in sorted(enroll.items())))
    atomic_write_text(proto / f"{PREFIX}.asv.{split}.trl.txt", "\n".join(lines) + "\n")
    return dict(counts)


__all__ = ["prepare_corpus", "load_config", "list_configs", "CorpusConfig", "CorpusCard", "CorpusError", "finish",
           "speaker_of"]
