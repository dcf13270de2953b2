"""The report's results as typed, frozen dataclasses: what ``run_report`` returns, what the renderers, the figures
and the demo read, and what ``report.json`` holds.

Every class has ``to_dict()`` (exactly the JSON of ``report.json``, key order included) and ``from_dict()`` (reads a
``report.json`` written before, by this code or an earlier one). Score arrays the figures need travel in the
results they belong to (``DetectorResult.bonafide``, ``AsvResult.scores``, ``ReidCondition.mated``, ...): they are
not part of ``to_dict()``, so a result read back from ``report.json`` has them empty (``None``)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

from voiceguard.metrics.asv import AsvMetrics, LinkMetrics
from voiceguard.metrics.cm import EerResult

REPORT_FORMAT = 1


def _put(d: dict, key: str, value: Any) -> None:
    """``d[key] = value`` unless ``value`` is None (an optional key that is absent from the JSON)."""
    if value is not None:
        d[key] = value


class _Record:
    """A flat result: its JSON is its fields, in order."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping):
        return cls(**d)


class _Outcome(_Record):
    """The result of one condition, or why it did not run here (``unavailable``, alone in the JSON)."""

    unavailable: str | None
    MEASURED: ClassVar[tuple[str, ...]] = ()  # the fields of a condition that ran

    @property
    def available(self) -> bool:
        return self.unavailable is None

    def to_dict(self) -> dict:
        if self.unavailable is not None:
            return {"unavailable": self.unavailable}
        return {k: getattr(self, k) for k in self.MEASURED}


def _eer_result(d: Mapping) -> EerResult:
    ci = d.get("eer_ci")
    return EerResult(d["eer"], d["threshold"], d["n_bonafide"], d["n_spoof"], None if ci is None else tuple(ci))


# --------------------------------------------------------------------------- data
@dataclass(frozen=True)
class DataSummary:
    """The eval set the report ran on: its layout and folder, trial counts, spoofing systems (ids)."""

    layout: str
    path: str
    protocol: str
    n_trials: int
    n_bonafide: int
    n_spoof: int
    attacks: tuple[str, ...]
    max_trials: int | None

    def to_dict(self) -> dict:
        return {**asdict(self), "attacks": list(self.attacks)}

    @classmethod
    def from_dict(cls, d: Mapping) -> DataSummary:
        return cls(**{**d, "attacks": tuple(d["attacks"])})


# --------------------------------------------------------------------------- detection
@dataclass(frozen=True)
class DetectorMetrics:
    """A detector's metrics on the clean eval set (``voiceguard.metrics.cm.CmMetrics.to_dict`` read back).
    Rates are fractions; ``min_tdcf_*`` are None (absent from the JSON) without ASV scores."""

    eer: float
    threshold: float
    n_bonafide: int
    n_spoof: int
    min_dcf: float
    min_cllr: float
    cllr: float | None
    act_dcf: float | None
    per_attack: dict[str, float]  # EER of all bona fide trials against each spoofing system's spoofs
    per_attack_detail: dict[str, EerResult]
    warnings: tuple[str, ...] = ()
    asv: dict | None = None  # ASV error rates at the ASV EER threshold (``AsvErrorRates.to_dict``)
    min_tdcf_2019: float | None = None
    min_tdcf_2021: float | None = None
    eer_ci: tuple[float, float] | None = None
    bootstrap: dict | None = None
    eer_ties: dict | None = None
    per_condition: dict[str, float] | None = None
    decision_threshold: float | None = None  # LLR threshold of ``per_source_false_alarms``' ``at_decision``
    # bona fide false alarms per source corpus: {source: {n_bonafide, at_decision, at_eer}} (``FalseAlarms``)
    per_source_false_alarms: dict[str, dict] | None = None
    # the same per channel condition (protocol column 3: corpus v2's channel copies)
    per_condition_false_alarms: dict[str, dict] | None = None

    def to_dict(self) -> dict:
        d = {"eer": self.eer, "threshold": self.threshold, "n_bonafide": self.n_bonafide, "n_spoof": self.n_spoof}
        _put(d, "eer_ci", None if self.eer_ci is None else list(self.eer_ci))
        _put(d, "bootstrap", self.bootstrap)
        _put(d, "eer_ties", self.eer_ties)
        d.update({"min_dcf": self.min_dcf, "min_cllr": self.min_cllr, "cllr": self.cllr, "act_dcf": self.act_dcf})
        if self.asv is not None:
            d.update({"asv": self.asv, "min_tdcf_2019": self.min_tdcf_2019, "min_tdcf_2021": self.min_tdcf_2021})
        d["per_attack"] = dict(self.per_attack)
        d["per_attack_detail"] = {k: v.to_dict() for k, v in self.per_attack_detail.items()}
        _put(d, "per_condition", self.per_condition)
        _put(d, "decision_threshold", self.decision_threshold)
        _put(d, "per_source_false_alarms", self.per_source_false_alarms)
        _put(d, "per_condition_false_alarms", self.per_condition_false_alarms)
        d["warnings"] = list(self.warnings)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> DetectorMetrics:
        ci = d.get("eer_ci")
        return cls(eer=d["eer"], threshold=d["threshold"], n_bonafide=d["n_bonafide"], n_spoof=d["n_spoof"],
                   min_dcf=d["min_dcf"], min_cllr=d["min_cllr"], cllr=d["cllr"], act_dcf=d["act_dcf"],
                   per_attack=dict(d["per_attack"]),
                   per_attack_detail={k: _eer_result(v) for k, v in d["per_attack_detail"].items()},
                   warnings=tuple(d.get("warnings") or ()), asv=d.get("asv"), min_tdcf_2019=d.get("min_tdcf_2019"),
                   min_tdcf_2021=d.get("min_tdcf_2021"), eer_ci=None if ci is None else tuple(ci),
                   bootstrap=d.get("bootstrap"), eer_ties=d.get("eer_ties"), per_condition=d.get("per_condition"),
                   decision_threshold=d.get("decision_threshold"),
                   per_source_false_alarms=d.get("per_source_false_alarms"),
                   per_condition_false_alarms=d.get("per_condition_false_alarms"))


@dataclass(frozen=True)
class ConditionResult(_Outcome):
    """A detector's EER under one attack condition, or why the condition did not run (``unavailable``)."""

    eer: float | None = None
    n_bonafide: int | None = None
    n_spoof: int | None = None
    errors: int | None = None  # files that failed to decode or score
    unavailable: str | None = None
    MEASURED: ClassVar[tuple[str, ...]] = ("eer", "n_bonafide", "n_spoof", "errors")


@dataclass(frozen=True)
class DetectorIdentity:
    """What identifies a detector's scores: the model (card or architecture), its version, the digest of its
    weights and the calibration (part of every detection stage's cache key)."""

    model: str
    name: str
    version: str | None
    sha256: str
    calibrated: bool
    calibration: dict
    config: dict | None
    architecture: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> DetectorIdentity:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class DetectorResult:
    """One detector on the clean eval set (all metrics) and under each attack condition (EER)."""

    identity: DetectorIdentity
    metrics: DetectorMetrics
    errors: tuple[tuple[str, str], ...]  # (file, why) of eval files that could not be scored
    conditions: dict[str, ConditionResult]  # "suite/label" -> result
    n_attacked_trials: int
    # the clean eval set's scores (LLRs) by class, for the DET curves; not in report.json
    bonafide: np.ndarray | None = field(default=None, repr=False, compare=False)
    spoof: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.identity.name

    @property
    def calibrated(self) -> bool:
        return self.identity.calibrated

    def to_dict(self) -> dict:
        return {**self.identity.to_dict(), "metrics": self.metrics.to_dict(),
                "errors": [list(e) for e in self.errors],
                "conditions": {k: v.to_dict() for k, v in self.conditions.items()},
                "n_attacked_trials": self.n_attacked_trials}

    @classmethod
    def from_dict(cls, d: Mapping) -> DetectorResult:
        return cls(DetectorIdentity.from_dict(d), DetectorMetrics.from_dict(d["metrics"]),
                   tuple(tuple(e) for e in d["errors"]),
                   {k: ConditionResult.from_dict(v) for k, v in d["conditions"].items()}, d["n_attacked_trials"])


# --------------------------------------------------------------------------- watermark
@dataclass(frozen=True)
class QualityStat(_Record):
    """Mean and minimum of one quality measure (SI-SNR dB, PESQ, STOI) over the clips it could rate."""

    mean: float
    min: float
    n: int


@dataclass(frozen=True)
class WatermarkAttackResult(_Outcome):
    """Detection of marked clips under one attack: TPR, bit accuracy and FPR (the same clips unmarked), each a
    fraction of ``n`` clips; or why the attack did not run (``unavailable``)."""

    tpr: float | None = None
    fpr: float | None = None
    bit_acc: float | None = None
    n: int | None = None
    unavailable: str | None = None
    MEASURED: ClassVar[tuple[str, ...]] = ("tpr", "fpr", "bit_acc", "n")


@dataclass(frozen=True)
class WatermarkSummary:
    """The headline of one engine over the attacks that ran (None when none ran)."""

    tpr_mean: float
    tpr_worst: float
    worst: str
    bit_acc: float
    fpr_max: float


@dataclass(frozen=True)
class WatermarkResult:
    """One watermark engine: quality of the marked clips, then detection under each attack of the suite."""

    engine: str
    model: str
    threshold: float
    n_files: int
    quality: dict[str, QualityStat]  # "si_snr" (always), "pesq", "stoi" (when installed)
    attacks: dict[str, WatermarkAttackResult]  # attack label -> result

    def summary(self) -> WatermarkSummary | None:
        """Mean and worst TPR, mean bit accuracy and highest FPR over the attacks that ran."""
        ok = {k: v for k, v in self.attacks.items() if v.available}
        if not ok:
            return None
        worst = min(ok, key=lambda k: ok[k].tpr)
        return WatermarkSummary(sum(v.tpr for v in ok.values()) / len(ok), ok[worst].tpr, worst,
                                sum(v.bit_acc for v in ok.values()) / len(ok), max(v.fpr for v in ok.values()))

    def to_dict(self) -> dict:
        return {"engine": self.engine, "model": self.model, "threshold": self.threshold, "n_files": self.n_files,
                "quality": {k: v.to_dict() for k, v in self.quality.items()},
                "attacks": {k: v.to_dict() for k, v in self.attacks.items()}}

    @classmethod
    def from_dict(cls, d: Mapping) -> WatermarkResult:
        return cls(d["engine"], d["model"], d["threshold"], d["n_files"],
                   {k: QualityStat.from_dict(v) for k, v in d["quality"].items()},
                   {k: WatermarkAttackResult.from_dict(v) for k, v in d["attacks"].items()})


# --------------------------------------------------------------------------- voiceprint risk
@dataclass(frozen=True)
class AsvAcceptance(_Record):
    """One spoofing system against the ASV: the share of its spoofs accepted at the ASV EER threshold."""

    attack: str
    n: int
    accepted: float
    mean_score: float
    fools_asv: bool


@dataclass(frozen=True)
class AsvResult:
    """The project's own ASV (speaker embeddings, cosine to the enrolment mean) under spoofing."""

    backend: dict  # the embedder's identity (backend, dim, fingerprint, model)
    metrics: AsvMetrics
    per_attack: tuple[AsvAcceptance, ...]
    n_trials: int
    scored: int
    normalisation: str
    score_file: str | None
    skipped: tuple[dict, ...]  # {path, reason} of trials that could not be scored
    # the trial scores by key ("target", "nontarget", "spoof"), for the t-DCF and the figure; not in report.json
    scores: dict[str, np.ndarray] | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {"backend": self.backend, "metrics": self.metrics.to_dict(),
                "per_attack": [p.to_dict() for p in self.per_attack], "n_trials": self.n_trials,
                "scored": self.scored, "normalisation": self.normalisation, "score_file": self.score_file,
                "skipped": list(self.skipped)}

    @classmethod
    def from_dict(cls, d: Mapping, scores: Mapping | None = None) -> AsvResult:
        return cls(d["backend"], AsvMetrics(**d["metrics"]), tuple(AsvAcceptance.from_dict(p) for p in d["per_attack"]),
                   d["n_trials"], d["scored"], d["normalisation"], d.get("score_file"), tuple(d["skipped"]),
                   None if scores is None else {k: np.asarray(v) for k, v in scores.items()})


@dataclass(frozen=True)
class ReidAttacker:
    """Re-identification by one attacker scenario (ignorant: enrolment on original audio; lazy-informed:
    leave-one-out within the processed probes)."""

    scenario: str
    enrollment: str
    link: LinkMetrics
    rank: dict[str, float]  # {"rank1": ..., "rank5": ...}
    rank1_ci: tuple[float, float] | None
    n_probes: int
    n_speakers: int

    def to_dict(self) -> dict:
        return {"scenario": self.scenario, "enrollment": self.enrollment, "link": self.link.to_dict(),
                "rank": dict(self.rank), "rank1_ci": None if self.rank1_ci is None else list(self.rank1_ci),
                "n_probes": self.n_probes, "n_speakers": self.n_speakers}

    @classmethod
    def from_dict(cls, d: Mapping) -> ReidAttacker:
        ci = d["rank1_ci"]
        return cls(d["scenario"], d["enrollment"], LinkMetrics(**d["link"]), dict(d["rank"]),
                   None if ci is None else tuple(ci), d["n_probes"], d["n_speakers"])


@dataclass(frozen=True)
class ReidCondition(_Outcome):
    """Re-identification of the probes under one condition (original, watermarked, attacked), or why it did not
    run (``unavailable``)."""

    backend: dict | None = None
    attackers: tuple[ReidAttacker, ...] = ()
    risk: str | None = None  # low | medium | high
    explanation: str | None = None
    skipped: tuple[dict, ...] = ()
    unavailable: str | None = None
    # the ignorant attacker's same- / other-speaker scores, for the histograms; not in report.json
    mated: np.ndarray | None = field(default=None, repr=False, compare=False)
    nonmated: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        if self.unavailable is not None:
            return {"unavailable": self.unavailable}
        return {"backend": self.backend, "attackers": [a.to_dict() for a in self.attackers], "risk": self.risk,
                "explanation": self.explanation, "skipped": list(self.skipped)}

    @classmethod
    def from_dict(cls, d: Mapping, mated=None, nonmated=None) -> ReidCondition:
        if "unavailable" in d:
            return cls(unavailable=d["unavailable"])
        return cls(d["backend"], tuple(ReidAttacker.from_dict(a) for a in d["attackers"]), d["risk"],
                   d["explanation"], tuple(d["skipped"]), None,
                   None if mated is None else np.asarray(mated), None if nonmated is None else np.asarray(nonmated))


# --------------------------------------------------------------------------- the whole
@dataclass(frozen=True)
class Results:
    """Every part of the report the config asked for; a part it did not ask for is None (absent from the JSON).
    ``tdcf_asv`` says where the detectors' t-DCF ASV scores came from (None: no t-DCF)."""

    data: DataSummary
    detection: dict[str, DetectorResult] = field(default_factory=dict)
    tdcf_asv: str | None = None
    asv: AsvResult | None = None
    asv_skipped: str | None = None  # why the ASV check the config asked for did not run
    watermark: dict[str, WatermarkResult] | None = None
    watermark_suite: str | None = None
    reid: dict[str, ReidCondition] | None = None

    def to_dict(self) -> dict:
        d: dict = {"data": self.data.to_dict()}
        _put(d, "asv", None if self.asv is None else self.asv.to_dict())
        _put(d, "asv_skipped", self.asv_skipped)
        d["tdcf_asv"] = self.tdcf_asv
        d["detection"] = {k: v.to_dict() for k, v in self.detection.items()}
        if self.watermark is not None:
            d["watermark"] = {k: v.to_dict() for k, v in self.watermark.items()}
            d["watermark_suite"] = self.watermark_suite
        if self.reid is not None:
            d["reid"] = {k: v.to_dict() for k, v in self.reid.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> Results:
        return cls(DataSummary.from_dict(d["data"]),
                   {k: DetectorResult.from_dict(v) for k, v in d["detection"].items()}, d.get("tdcf_asv"),
                   None if d.get("asv") is None else AsvResult.from_dict(d["asv"]), d.get("asv_skipped"),
                   None if "watermark" not in d else {k: WatermarkResult.from_dict(v)
                                                      for k, v in d["watermark"].items()},
                   d.get("watermark_suite"),
                   None if "reid" not in d else {k: ReidCondition.from_dict(v) for k, v in d["reid"].items()})


@dataclass(frozen=True)
class Hardware:
    """Where the report ran; ``torch_threads`` is fixed during a report (``environment.TORCH_THREADS``)."""

    cpu: str
    cores: int | None
    torch_threads: int
    gpu: str | None
    platform: str
    cpu_flags: tuple[str, ...] | None = None  # SIMD features that select other kernels (absent in old reports)
    torch_cpu_kernels: str | None = None

    def to_dict(self) -> dict:
        d = {"cpu": self.cpu, "cores": self.cores, "torch_threads": self.torch_threads, "gpu": self.gpu,
             "platform": self.platform}
        _put(d, "cpu_flags", None if self.cpu_flags is None else list(self.cpu_flags))
        _put(d, "torch_cpu_kernels", self.torch_cpu_kernels)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> Hardware:
        flags = d.get("cpu_flags")
        return cls(d["cpu"], d["cores"], d["torch_threads"], d["gpu"], d["platform"],
                   None if flags is None else tuple(flags), d.get("torch_cpu_kernels"))


@dataclass(frozen=True)
class CodecEnvironment:
    """ffmpeg (None: not installed), the runtime versions of its libav* libraries, the codec libraries it loads
    and a digest of each encoder's output on a fixed signal (``environment.codec_bitstreams``)."""

    ffmpeg: str | None
    libav: dict[str, str] = field(default_factory=dict)  # libavcodec, libavformat, libswresample -> version
    libraries: dict[str, str] | None = None
    bitstreams: dict[str, str] | None = None

    def to_dict(self) -> dict:
        d = {"ffmpeg": self.ffmpeg, **self.libav}
        _put(d, "libraries", self.libraries)
        _put(d, "bitstreams", self.bitstreams)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> CodecEnvironment:
        return cls(d["ffmpeg"], {k: v for k, v in d.items() if k not in ("ffmpeg", "libraries", "bitstreams")},
                   d.get("libraries"), d.get("bitstreams"))


@dataclass(frozen=True)
class Environment:
    """What the figures depend on besides the config and seed (``environment.environment``)."""

    versions: dict[str, str]
    hardware: Hardware
    packages: dict[str, str] | None = None  # absent in old reports
    codecs: CodecEnvironment | None = None
    corpus_tools: dict[str, str] | None = None  # versions of the tools that built the corpus

    def to_dict(self) -> dict:
        d: dict = {"versions": self.versions}
        _put(d, "packages", self.packages)
        d["hardware"] = self.hardware.to_dict()
        _put(d, "codecs", None if self.codecs is None else self.codecs.to_dict())
        _put(d, "corpus_tools", self.corpus_tools)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> Environment:
        return cls(d["versions"], Hardware.from_dict(d["hardware"]), d.get("packages"),
                   None if d.get("codecs") is None else CodecEnvironment.from_dict(d["codecs"]), d.get("corpus_tools"))


@dataclass(frozen=True)
class StageTiming(_Record):
    """Wall time of a stage when it was computed; ``cached``: this run reused it."""

    seconds: float
    cached: bool


@dataclass(frozen=True)
class FigureRef(_Record):
    """A figure of the report: its PNG (relative to the report folder) and title."""

    file: str
    title: str


@dataclass(frozen=True)
class Report:
    """A whole report: what ``run_report`` / ``voiceguard.api.evaluate`` return and ``report.json`` holds.
    ``config`` is ``ReportConfig.to_dict()`` (name, seed, source, the config as written)."""

    name: str
    seed: int
    config: dict
    results: Results
    environment: Environment
    timings: dict[str, StageTiming]
    started: str  # "YYYY-MM-DD HH:MM UTC"
    figures: tuple[FigureRef, ...] = ()
    wall_seconds: float | None = None
    format: int = REPORT_FORMAT

    def to_dict(self) -> dict:
        return {"format": self.format, "name": self.name, "seed": self.seed, "config": self.config,
                "results": self.results.to_dict(), "environment": self.environment.to_dict(),
                "timings": {k: v.to_dict() for k, v in self.timings.items()}, "started": self.started,
                "figures": [f.to_dict() for f in self.figures], "wall_seconds": self.wall_seconds}

    @classmethod
    def from_dict(cls, d: Mapping) -> Report:
        return cls(d["name"], d["seed"], d["config"], Results.from_dict(d["results"]),
                   Environment.from_dict(d["environment"]),
                   {k: StageTiming.from_dict(v) for k, v in d["timings"].items()}, d["started"],
                   tuple(FigureRef.from_dict(f) for f in d.get("figures", ())), d.get("wall_seconds"),
                   d.get("format", REPORT_FORMAT))

    @classmethod
    def load(cls, path: str | Path) -> Report:
        """A ``report.json`` (or the folder holding one) read back. Raises OSError, ValueError (not JSON) or
        KeyError (not a report)."""
        path = Path(path)
        return cls.from_dict(json.loads((path / "report.json" if path.is_dir() else path).read_text()))


def read_figures(path: str | Path) -> tuple[FigureRef, ...]:
    """Only the figure list of a ``report.json`` (what the demo's gallery shows; other parts are not read).
    Raises OSError, ValueError (not JSON) or KeyError (a figure without file or title)."""
    return tuple(FigureRef.from_dict(f) for f in json.loads(Path(path).read_text()).get("figures", ()))


__all__ = ["AsvAcceptance", "AsvResult", "CodecEnvironment", "ConditionResult", "DataSummary", "DetectorIdentity",
           "DetectorMetrics", "DetectorResult", "Environment", "FigureRef", "Hardware", "QualityStat",
           "REPORT_FORMAT", "ReidAttacker", "ReidCondition", "Report", "Results", "StageTiming",
           "WatermarkAttackResult", "WatermarkResult", "WatermarkSummary", "read_figures"]
