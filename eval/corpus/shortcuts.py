"""Shortcut check: can a trivial one-feature classifier separate bona fide from spoof?

Features per utterance (``FEATURES``), each a corpus shortcut a detector could learn instead of spoofing
artefacts: duration, leading and trailing silence, loudness (whole-file RMS and active-speech level),
bandwidth (mean spectral bandwidth; share of energy above 4 kHz and above 7 kHz), the rate of origin (the
energy just below the 8 kHz Nyquist against the band beneath it: a resampler's roll-off from 22.05 / 24 kHz
leaves a trace there) and codec traces (the share of spectral holes, time-frequency bins of active frames
60 dB below the frame's peak, as perceptual codecs leave).

For each feature, the EER of the feature used directly as a score (the better of both polarities), on the
clean utterances pooled per split and for each system of a split (that system's spoofs against the split's
bona fide), and pooled within each channel condition (both classes through the same channel).  A corpus
fails when a pooled or per-channel EER is below ``pass_eer`` or a per-system EER below ``system_eer``;
``failures`` names the split, the system (or ``pooled`` / ``channel X``) and the feature.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from voiceguard.audio import load_audio
from voiceguard.metrics import cm as M
from voiceguard.protocols import Trial

FEATURES = ("duration_s", "leading_silence_s", "trailing_silence_s", "rms_dbfs", "active_level_dbfs",
            "spectral_bandwidth_hz", "energy_above_4k_db", "energy_above_7k_db", "band_edge_db",
            "spectral_holes")
PASS_EER = 0.25
SYSTEM_EER = 0.10
CLEAN = frozenset({"clean", "-"})  # the protocol condition of an utterance without a channel


def utterance_features(x: np.ndarray, sr: int) -> dict[str, float]:
    """The ``FEATURES`` of one utterance (float32 mono ``[n]`` at ``sr`` Hz); seconds, dB, Hz or a share."""
    import librosa

    _, (a, b) = librosa.effects.trim(x, top_db=30, frame_length=512, hop_length=128)
    power = np.abs(librosa.stft(x, n_fft=512, hop_length=256)) ** 2  # (257, frames)
    freqs = librosa.fft_frequencies(sr=sr, n_fft=512)
    bw = librosa.feature.spectral_bandwidth(S=np.sqrt(power), sr=sr, n_fft=512, hop_length=256)[0]
    rms = np.sqrt(np.mean(power, axis=0))
    voiced = rms > rms.max() * 0.03 if rms.max() > 0 else np.ones_like(rms, dtype=bool)
    p = power[:, voiced] + 1e-20
    total = float(np.sum(p))

    def share_db(lo: float, hi: float = np.inf) -> float:
        return float(10 * np.log10(np.sum(p[(freqs >= lo) & (freqs < hi)]) / total + 1e-12))

    edge = float(10 * np.log10((np.sum(p[(freqs >= 0.95 * sr / 2)]) + 1e-12)
                               / (np.sum(p[(freqs >= 0.82 * sr / 2) & (freqs < 0.95 * sr / 2)]) + 1e-12)))
    holes = float(np.mean(10 * np.log10(p / p.max(axis=0, keepdims=True)) < -60))
    frame_rms = librosa.feature.rms(y=x, frame_length=512, hop_length=256)[0]
    active = frame_rms[frame_rms > frame_rms.max() * 0.03] if frame_rms.max() > 0 else frame_rms
    return {"duration_s": x.size / sr, "leading_silence_s": a / sr, "trailing_silence_s": (x.size - b) / sr,
            "rms_dbfs": float(20 * np.log10(np.sqrt(np.mean(x ** 2)) + 1e-12)),
            "active_level_dbfs": float(20 * np.log10(np.sqrt(np.mean(active ** 2)) + 1e-12)),
            "spectral_bandwidth_hz": float(np.mean(bw[voiced])) if voiced.any() else float(np.mean(bw)),
            "energy_above_4k_db": share_db(4000.0), "energy_above_7k_db": share_db(7000.0),
            "band_edge_db": edge, "spectral_holes": holes}


def failure_line(failure: dict) -> str:
    """One failure of the check as a line: ``eval A08: spectral_holes alone gives EER 8.6 %``."""
    return (f"{failure['split']} {failure['system']}: {failure['feature']} alone gives EER "
            f"{100 * failure['eer']:.1f} %")


def _best_eer(bona: np.ndarray, spoof: np.ndarray) -> float:
    try:
        return min(M.eer(bona, spoof)[0], M.eer(-bona, -spoof)[0])
    except Exception:  # constant feature: nothing to separate
        return 0.5


def _eers(feats: dict[str, dict[str, float]], bona: list[Trial], spoof: list[Trial]) -> dict[str, float]:
    return {f: round(_best_eer(np.array([feats[t.utt_id][f] for t in bona]),
                               np.array([feats[t.utt_id][f] for t in spoof])), 4) for f in FEATURES}


def _file_features(path: str) -> dict[str, float]:
    x, sr = load_audio(path, mono=True)
    return utterance_features(x[0], sr)


def shortcut_check(corpus_dir: Path, trials_by_split: dict[str, list[Trial]], pass_eer: float = PASS_EER,
                   system_eer: float = SYSTEM_EER, workers: int = 1) -> dict:
    """The check over a built corpus (``flac/<utt_id>.flac``): ``{"pass_eer", "system_eer", "pooled": {split:
    {feature: eer}}, "per_system": {split: {system: {feature: eer}}}, "per_channel": {split: {condition:
    {feature: eer}}}, "failures": [{split, system, feature,
    eer}], "pass"}`` (``system`` is ``"pooled"`` for a pooled failure).  Features are computed in ``workers``
    processes."""
    ids = [t.utt_id for trials in trials_by_split.values() for t in trials]
    paths = [str(Path(corpus_dir) / "flac" / f"{u}.flac") for u in ids]
    if workers > 1 and len(paths) > 64:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:  # see build
            feats = dict(zip(ids, pool.map(_file_features, paths, chunksize=32)))
    else:
        feats = dict(zip(ids, map(_file_features, paths)))
    result: dict = {"pass_eer": pass_eer, "system_eer": system_eer, "features": list(FEATURES), "pooled": {},
                    "per_system": {}, "per_channel": {}}
    failures = []
    for split, trials in trials_by_split.items():
        clean = [t for t in trials if t.condition in CLEAN]
        bona = [t for t in clean if t.is_bonafide]
        spoof = [t for t in clean if not t.is_bonafide]
        result["pooled"][split] = pooled = _eers(feats, bona, spoof)
        failures += [{"split": split, "system": "pooled", "feature": f, "eer": e} for f, e in pooled.items()
                     if e < pass_eer]
        per = {}
        for attack in sorted({t.attack for t in spoof}):
            per[attack] = _eers(feats, bona, [t for t in spoof if t.attack == attack])
            failures += [{"split": split, "system": attack, "feature": f, "eer": e} for f, e in per[attack].items()
                         if e < system_eer]
        result["per_system"][split] = per
        channels = {}
        for cond in sorted({t.condition for t in trials} - CLEAN):
            group = [t for t in trials if t.condition == cond]
            b, s = [t for t in group if t.is_bonafide], [t for t in group if not t.is_bonafide]
            if b and s:
                channels[cond] = _eers(feats, b, s)
                failures += [{"split": split, "system": f"channel {cond}", "feature": f, "eer": e}
                             for f, e in channels[cond].items() if e < pass_eer]
        if channels:
            result["per_channel"][split] = channels
    result["failures"] = sorted(failures, key=lambda f: f["eer"])
    result["pass"] = not failures
    return result


def check_corpus(corpus_dir: str | Path, pass_eer: float | None = None, system_eer: float | None = None,
                 workers: int = 1) -> dict:
    """``shortcut_check`` over a corpus built before (its ``protocols/VG.cm.*.txt`` and ``flac/``), e.g. to
    run today's features on an older build.  Thresholds default to the ones in the corpus's ``corpus.json``
    config, else ``PASS_EER`` / ``SYSTEM_EER``.  Raises ``ProtocolError`` / ``AudioError`` naming a bad file."""
    import json

    from voiceguard.protocols import read_protocol

    try:
        config = json.loads((Path(corpus_dir) / "corpus.json").read_text()).get("config", {})
    except (OSError, ValueError, AttributeError):
        config = {}
    pass_eer = float(config.get("shortcut_pass_eer", PASS_EER)) if pass_eer is None else pass_eer
    system_eer = float(config.get("shortcut_system_eer", SYSTEM_EER)) if system_eer is None else system_eer
    proto = Path(corpus_dir) / "protocols"
    names = {"train": "train.trn", "dev": "dev.trl", "eval": "eval.trl"}
    return shortcut_check(Path(corpus_dir), {s: read_protocol(proto / f"VG.cm.{n}.txt") for s, n in names.items()},
                          pass_eer, system_eer, workers)
