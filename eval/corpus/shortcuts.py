"""Shortcut check: can a trivial one-feature classifier separate bona fide from spoof?

Features per utterance: duration, leading and trailing silence, RMS level, mean spectral
bandwidth.  For each, the EER of the feature used directly as a score (the better of both
polarities).  A corpus passes when every pooled EER is >= 25 %.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from voiceguard.audio import load_audio
from voiceguard.protocols import Trial

from voiceguard.metrics import cm as M

FEATURES = ("duration_s", "leading_silence_s", "trailing_silence_s", "rms_dbfs", "spectral_bandwidth_hz")
PASS_EER = 0.25


def utterance_features(x: np.ndarray, sr: int) -> dict[str, float]:
    import librosa

    _, (a, b) = librosa.effects.trim(x, top_db=30, frame_length=512, hop_length=128)
    bw = librosa.feature.spectral_bandwidth(y=x, sr=sr, n_fft=512, hop_length=256)[0]
    rms = librosa.feature.rms(y=x, frame_length=512, hop_length=256)[0]
    voiced = rms > rms.max() * 0.03
    return {"duration_s": x.size / sr, "leading_silence_s": a / sr, "trailing_silence_s": (x.size - b) / sr,
            "rms_dbfs": float(20 * np.log10(np.sqrt(np.mean(x ** 2)) + 1e-12)),
            "spectral_bandwidth_hz": float(np.mean(bw[voiced])) if voiced.any() else float(np.mean(bw))}


def _best_eer(bona: np.ndarray, spoof: np.ndarray) -> float:
    try:
        return min(M.eer(bona, spoof)[0], M.eer(-bona, -spoof)[0])
    except Exception:  # constant feature: nothing to separate
        return 0.5


def shortcut_check(corpus_dir: Path, trials_by_split: dict[str, list[Trial]]) -> dict:
    feats: dict[str, dict[str, float]] = {}
    for trials in trials_by_split.values():
        for t in trials:
            x, sr = load_audio(Path(corpus_dir) / "flac" / f"{t.utt_id}.flac", mono=True)
            feats[t.utt_id] = utterance_features(x[0], sr)
    result: dict = {"pass_eer": PASS_EER, "pooled": {}, "per_system": {}}
    ok = True
    for split, trials in trials_by_split.items():
        bona = [t for t in trials if t.is_bonafide]
        spoof = [t for t in trials if not t.is_bonafide]
        pooled = {}
        for f in FEATURES:
            b = np.array([feats[t.utt_id][f] for t in bona])
            s = np.array([feats[t.utt_id][f] for t in spoof])
            pooled[f] = round(_best_eer(b, s), 4)
            ok &= pooled[f] >= PASS_EER
        result["pooled"][split] = pooled
        per = {}
        for attack in sorted({t.attack for t in spoof}):
            s_t = [t for t in spoof if t.attack == attack]
            per[attack] = {f: round(_best_eer(np.array([feats[t.utt_id][f] for t in bona]),
                                              np.array([feats[t.utt_id][f] for t in s_t])), 4) for f in FEATURES}
        result["per_system"][split] = per
    result["pass"] = bool(ok)
    return result
