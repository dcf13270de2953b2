"""The report's stages: pure functions of the config whose results are cached (one JSON per stage and
condition under ``WORK/cache``), so a killed run resumes where it stopped and a rerun only renders.

Every stage result is plain JSON data; the figures and the written report are made from it alone."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from voiceguard import __version__
from voiceguard.audio import load_audio, save_audio
from voiceguard.errors import VoiceguardError
from voiceguard.files import atomic_write_text
from voiceguard.protocols import BONAFIDE, Trial, check_audio_files, read_protocol

from .config import ReportConfig, ReportConfigError

SR = 16000
CACHE_VERSION = 2

#: modules whose code computes the cached values: editing any of them invalidates the cache
_CACHED_CODE = ("voiceguard.eval.report.stages", "voiceguard.eval.risk.checks", "voiceguard.eval.risk.metrics",
                "voiceguard.eval.risk.embed", "voiceguard.eval.risk.embedders", "voiceguard.detect.batch",
                "voiceguard.detect.scoring", "voiceguard.watermark.base", "voiceguard.attacks.base")


class ReportError(VoiceguardError):
    """A report stage cannot run."""


def _log(msg: str) -> None:
    print(f"voiceguard report: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- cache
def _code_digest() -> str:
    """sha256 over the sources of the modules in ``_CACHED_CODE``."""
    import importlib.util

    h = hashlib.sha256()
    for mod in _CACHED_CODE:
        h.update(Path(importlib.util.find_spec(mod).origin).read_bytes())
    return h.hexdigest()[:16]


_CODE = _code_digest()


def fingerprint(obj: Any) -> str:
    """A stable hash of JSON-able inputs and of the code that computes the values (edited code recomputes)."""
    text = json.dumps({"v": CACHE_VERSION, "voiceguard": __version__, "code": _CODE, "in": obj}, sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class StageCache:
    root: Path
    force: bool = False
    log: Callable[[str], None] = _log

    def run(self, name: str, inputs: Any, compute: Callable[[], Any], timings: dict) -> Any:
        """The cached value of ``name`` when its inputs are unchanged, else ``compute()`` (stored atomically)."""
        key = fingerprint(inputs)
        path = self.root / f"{name}.json"
        if not self.force and path.is_file():
            try:
                got = json.loads(path.read_text())
                if got.get("key") == key:
                    timings[name] = {"seconds": got["seconds"], "cached": True}
                    self.log(f"{name}: cached ({got['seconds']:.1f} s when computed)")
                    return got["value"]
            except (OSError, ValueError, KeyError):
                pass  # unreadable entry: recompute
        self.log(f"{name}: running")
        t0 = time.perf_counter()
        value = json.loads(json.dumps(compute()))  # what a rerun reads back: same types (lists, not tuples)
        seconds = round(time.perf_counter() - t0, 2)
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"key": key, "seconds": seconds, "value": value}))
        timings[name] = {"seconds": seconds, "cached": False}
        self.log(f"{name}: done in {seconds:.1f} s")
        return value


# --------------------------------------------------------------------------- data
@dataclass(frozen=True)
class EvalData:
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


def resolve_data(cfg: ReportConfig, *, progress: bool = False, log: Callable[[str], None] = _log) -> EvalData:
    """Find the eval set (building the corpus first when the config says how), check every file exists."""
    d = cfg.data
    root = Path(d.path).expanduser()
    protocol = root / d.protocol
    if d.layout == "corpus" and not protocol.is_file():
        if d.build_source is None:
            raise ReportError(f"no corpus here ({d.protocol} is missing) and data.build.source is not set: build one "
                              "with `voiceguard data build` or give data.build.source", source=root)
        from voiceguard.eval.corpus import prepare_corpus

        log(f"building the corpus from {d.build_source} into {root} (config {d.build_config}, seed {cfg.seed})")
        prepare_corpus(d.build_source, root, d.build_config, cfg.seed, progress=progress)
    if not protocol.is_file():
        raise ReportError(f"eval protocol not found ({d.protocol} under data.path)", source=protocol)
    if d.layout == "corpus" and d.build_source is not None:
        _check_corpus_card(root, d.build_config, cfg.seed)
    trials = read_protocol(protocol)
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


# --------------------------------------------------------------------------- detectors
def _attack_decode(row, seed: int, index: dict[str, int]):
    """A decode hook for ``score_files``: the file at 16 kHz mono, then the attack seeded by the file's index."""
    from voiceguard.detect.batch import decode

    def dec(path):
        x, info = decode(path)
        if row is None:
            return x, info
        y = row.build(seed=seed * 100_003 + index[str(path)])(x, SR)
        return np.asarray(y, dtype=np.float32).ravel(), info
    return dec


def score_condition(loaded, data: EvalData, trials: list[Trial], row, seed: int, progress: bool) -> dict:
    """Calibrated LLRs of ``trials`` (optionally attacked); files that fail are listed, not scored."""
    from tqdm import tqdm

    from voiceguard.detect.batch import score_files

    paths = [str(data.path(t)) for t in trials]
    index = {p: i for i, p in enumerate(paths)}
    out = {"utt": [], "score": [], "errors": []}
    scored = score_files(loaded.detector, paths, calibration=loaded.calibration, decode=_attack_decode(row, seed, index))
    for t, s in tqdm(zip(trials, scored), total=len(trials), desc="score", unit="file", disable=not progress,
                     leave=False):
        if s.result is None:
            out["errors"].append([s.source, s.error or "unreadable"])
        else:
            out["utt"].append(t.utt_id)
            out["score"].append(float(s.result.llr))
    return out


def detector_identity(det) -> dict:
    """What identifies a detector's scores: the model and the digest of its weights."""
    from voiceguard.cards import sha256_file
    from voiceguard.detect.models import load_model

    loaded = load_model(det.model, det.checkpoint)
    sha = loaded.card.sha256 if loaded.card is not None and loaded.card.sha256 else sha256_file(loaded.checkpoint)
    card = loaded.card
    return {"loaded": loaded, "id": {"model": det.model, "name": loaded.name, "version": loaded.version,
                                     "sha256": sha, "calibrated": loaded.calibrated,
                                     "calibration": loaded.calibration.to_dict(),
                                     "config": card.config if card is not None else None,
                                     "architecture": card.architecture if card is not None else det.model}}


# --------------------------------------------------------------------------- watermark
def watermarker_identity(wm) -> dict:
    """What identifies a watermark engine's output: its settings and a digest of its network weights."""
    h = hashlib.sha256()
    for part in ("generator", "detector"):
        module = getattr(wm, part, None)
        if module is not None and hasattr(module, "state_dict"):
            for k, v in sorted(module.state_dict().items()):
                h.update(k.encode())
                h.update(v.detach().cpu().numpy().tobytes())
    return {"engine": wm.name, "model": wm.model, "threshold": wm.threshold, "strength": wm.strength,
            "snr_db": getattr(wm, "snr_db", None), "key": getattr(wm, "key", None), "weights": h.hexdigest()[:20]}


def si_snr(ref: np.ndarray, est: np.ndarray) -> float:
    """Scale-invariant SNR (dB) of ``est`` against ``ref``."""
    ref = ref - ref.mean()
    est = est - est.mean()
    proj = (est @ ref) / max(float(ref @ ref), 1e-20) * ref
    return float(10 * np.log10((proj @ proj) / ((est - proj) @ (est - proj) + 1e-20)))


def perceptual_measures() -> bool:
    """PESQ and STOI are installed (the bench extra)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("pesq", "pystoi"))


def watermark_stage(wm, clips: list[np.ndarray], suite, seed: int) -> dict:
    """Quality of the marked clips, then TPR / bit accuracy / FPR under each attack of ``suite``."""
    from voiceguard.attacks import AttackUnavailable

    rng = np.random.default_rng(seed)
    messages = [int(m) for m in rng.integers(0, 2 ** wm.nbits, len(clips))]
    marked = [wm.embed(x, SR, m) for x, m in zip(clips, messages)]
    q = {"si_snr": [si_snr(x, y) for x, y in zip(clips, marked)]}
    if perceptual_measures():  # optional (pip install -e .[bench]); a clip they cannot rate is left out
        from pesq import pesq
        from pystoi import stoi

        for name, fn in (("pesq", lambda x, y: pesq(SR, x, np.clip(y, -1, 1), "wb")),
                         ("stoi", lambda x, y: stoi(x, y, SR, extended=False))):
            vals = []
            for x, y in zip(clips, marked):
                try:
                    vals.append(float(fn(x, y)))
                except Exception:  # noqa: BLE001  (e.g. PESQ on a clip with no utterance)
                    pass
            if vals:
                q[name] = vals
    quality = {k: {"mean": float(np.mean(v)), "min": float(np.min(v)), "n": len(v)} for k, v in q.items()}
    rows = {}
    for row in suite.rows:
        tp = fp = 0
        acc = []
        try:
            for i, (x, y, m) in enumerate(zip(clips, marked, messages)):
                s = seed * 100_003 + i
                ya = np.asarray(row.build(seed=s)(y, SR), np.float32).ravel()
                xa = np.asarray(row.build(seed=s)(x, SR), np.float32).ravel()
                r = wm.detect(ya, SR, expected=m)
                tp += int(r.detected)
                acc.append(r.bits_matched / len(r.bits))
                fp += int(wm.detect(xa, SR).detected)
        except AttackUnavailable as e:
            rows[row.label] = {"unavailable": str(e)}
            continue
        except Exception as e:  # noqa: BLE001  (one failing condition is reported, the report goes on)
            rows[row.label] = {"unavailable": f"failed: {type(e).__name__}: {e}"}
            continue
        n = len(clips)
        rows[row.label] = {"tpr": tp / n, "fpr": fp / n, "bit_acc": float(np.mean(acc)), "n": n}
    return {"engine": wm.name, "model": wm.model, "threshold": wm.threshold, "n_files": len(clips),
            "quality": quality, "attacks": rows}


# --------------------------------------------------------------------------- risk
def asv_trials(data: EvalData, subset_only: bool) -> list:
    """The ASV trial list; with ``subset_only`` only the trials whose utterance is in the (subset) eval set."""
    from voiceguard.eval.risk import read_asv_trials

    trials = read_asv_trials(data.asv_trials)
    if subset_only:
        keep = {t.utt_id for t in data.trials}
        trials = [t for t in trials if t.utt_id in keep]
        if not trials:
            raise ReportError("no ASV trial is in the eval subset (data.max_trials): raise it or turn risk.asv off",
                              source=data.asv_trials)
    return trials


def asv_stage(data: EvalData, trials: list, backend: str, out: Path) -> dict:
    """The project's own ASV (speaker embeddings, cosine): EER, spoof acceptance, and its score file."""
    from voiceguard.eval.risk import asv_check, get_embedder, read_asv_enrollment

    enrollment: dict[str, list[str]] = {}
    for p in data.asv_enroll:
        for spk, utts in read_asv_enrollment(p).items():
            enrollment.setdefault(spk, []).extend(utts)
    enrollment = {s: u for s, u in enrollment.items() if s in {t.speaker for t in trials}}
    res = asv_check(enrollment, trials, data.audio_dir, get_embedder(backend), ext=data.ext, out=out,
                    overwrite=True)
    result = res.to_dict()
    result["score_file"] = f"{out.parent.name}/{out.name}"  # relative to the work folder: results stay comparable
    return {"result": result, "scores": {k: v.tolist() for k, v in res.scores.items()}}


def reid_sets(data: EvalData, n_speakers: int, seed: int) -> tuple[list, list]:
    """(enrolment, probes) as LabeledFiles: the ASV enrolment utterances of ``n_speakers`` seeded eval speakers
    (or, without ASV lists, the first half of each speaker's bona fide trials) and their bona fide trials."""
    from voiceguard.eval.risk import LabeledFile, read_asv_enrollment

    by_spk: dict[str, list[Trial]] = {}
    for t in data.trials:
        if t.label == BONAFIDE and t.speaker != "-":
            by_spk.setdefault(t.speaker, []).append(t)
    enrol_lists: dict[str, list[str]] = {}
    for p in data.asv_enroll:
        for spk, utts in read_asv_enrollment(p).items():
            enrol_lists.setdefault(spk, []).extend(utts)
    if enrol_lists:  # probes never include a speaker's enrolment utterances
        enrolled = {s: set(u) for s, u in enrol_lists.items()}
        by_spk = {s: [t for t in ts if t.utt_id not in enrolled.get(s, ())] for s, ts in by_spk.items()}
        eligible = sorted(s for s, ts in by_spk.items() if len(ts) >= 1 and s in enrol_lists)
    else:
        eligible = sorted(s for s, ts in by_spk.items() if len(ts) >= 4)
    if len(eligible) < 2:
        raise ReportError(f"re-identification needs >= 2 eval speakers with enough bona fide files; found "
                          f"{len(eligible)}", source=data.root)
    chosen = sorted(np.random.default_rng(seed).permutation(eligible)[:n_speakers].tolist())
    enroll, probe = [], []
    for s in chosen:
        ts = by_spk[s]
        if enrol_lists:
            enroll += [LabeledFile(str(data.audio_dir / f"{u}{data.ext}"), s) for u in enrol_lists[s]]
            probe += [LabeledFile(str(data.path(t)), s) for t in ts]
        else:
            half = len(ts) // 2
            enroll += [LabeledFile(str(data.path(t)), s) for t in ts[:half]]
            probe += [LabeledFile(str(data.path(t)), s) for t in ts[half:]]
    return enroll, probe


def reid_condition(enroll: list, probe: list, transform: Callable[[np.ndarray, int], np.ndarray] | None,
                   folder: Path, backend: str, seed: int) -> dict:
    """Re-identification of the probes (processed by ``transform`` first, written under ``folder``)."""
    from voiceguard.eval.risk import LabeledFile, get_embedder, reid_check

    if transform is not None:
        folder.mkdir(parents=True, exist_ok=True)
        processed = []
        for i, f in enumerate(probe):
            x = load_audio(f.path, SR, mono=True)[0][0]
            out = folder / f"{i:04d}_{Path(f.path).stem}.flac"
            save_audio(out, np.clip(transform(x, i), -1, 1)[None], SR, overwrite=True)
            processed.append(LabeledFile(str(out), f.speaker))
        probe = processed
    res = reid_check(enroll, probe, get_embedder(backend), seed=seed)
    ignorant = res.attackers[0]
    return {"result": res.to_dict(), "mated": ignorant.mated.tolist(), "nonmated": ignorant.nonmated.tolist()}


# --------------------------------------------------------------------------- environment
def environment() -> dict:
    """Versions and hardware, stated in every report."""
    import torch

    versions = {"voiceguard": __version__, "python": platform.python_version(), "numpy": np.__version__,
                "torch": torch.__version__}
    for mod in ("librosa", "sklearn", "resemblyzer", "speechbrain", "audioseal"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001  (absent or without a version: not stated)
            pass
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"versions": versions, "hardware": {"cpu": cpu, "cores": os.cpu_count(), "torch_threads":
                                               torch.get_num_threads(), "gpu": gpu, "platform": platform.platform()}}


__all__ = ["EvalData", "ReportConfigError", "ReportError", "StageCache", "asv_stage", "detector_identity",
           "asv_trials", "environment", "fingerprint", "perceptual_measures", "watermarker_identity", "reid_condition", "reid_sets", "resolve_data", "score_condition", "si_snr",
           "subset", "watermark_stage"]
