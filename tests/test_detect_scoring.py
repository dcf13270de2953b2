"""Sliding-window scoring, calibration, segments, and batched scoring of many files."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import write_wav
from voiceguard.detect.batch import score_files
from voiceguard.detect.scoring import (Calibration, fit_calibration, fit_window, merge_flagged, score_file,
                                       spoof_probability, summarize_windows, window_starts, windows)
from voiceguard.audio import SAMPLE_RATE



def test_windows_cover_the_whole_signal():
    assert window_starts(100, 40, 20) == [0, 20, 40, 60]
    assert window_starts(110, 40, 20) == [0, 20, 40, 60, 70]  # last window ends at the last sample
    assert window_starts(30, 40, 20) == [0]
    x = np.arange(25, dtype=np.float32)
    w = fit_window(x, 60)  # repeat-padded, as the ASVspoof models expect
    assert w.size == 60 and np.array_equal(w[25:50], x)
    batch, starts = windows(np.arange(110, dtype=np.float32), 40, 20)
    assert batch.shape == (5, 40) and batch[-1, -1] == 109


class Energy:
    """A stand-in detector: windows louder than 0.5 RMS look 'spoof'."""

    input_samples = 8000

    def score_batch(self, batch):
        return 0.5 - np.sqrt(np.mean(np.asarray(batch) ** 2, axis=1))


def partial(seconds=6.0, loud=(2.0, 3.0)):
    x = np.full(int(seconds * SAMPLE_RATE), 0.1, dtype=np.float32)
    x[int(loud[0] * SAMPLE_RATE):int(loud[1] * SAMPLE_RATE)] = 0.9
    return x


def test_partial_spoof_is_flagged_where_it_happens():
    det = Energy()
    fs = score_file(partial(), SAMPLE_RATE, det.score_batch, win=det.input_samples, hop=4000)
    assert fs.verdict == "partial-spoof"  # mean over the file is bona fide, some windows are not
    spans = merge_flagged(fs.segments)
    assert len(spans) == 1
    start, end = spans[0]
    assert 1.0 <= start <= 2.0 and 3.0 <= end <= 3.6  # windows overlapping the loud part, merged
    assert score_file(partial(), SAMPLE_RATE, det.score_batch, win=8000, hop=4000, aggregate="min").verdict == "spoof"
    clean = score_file(np.full(6 * SAMPLE_RATE, 0.1, np.float32), SAMPLE_RATE, det.score_batch, win=8000)
    assert clean.verdict == "bonafide" and not clean.flagged


def test_calibration_gives_llrs_and_probabilities():
    rng = np.random.default_rng(0)
    bona, spoof = rng.normal(2, 1, 4000), rng.normal(-2, 1, 4000)
    cal = fit_calibration(bona, spoof)
    # two unit-variance Gaussians at +-2: the true LLR is 4 * s, so scale ~4 and offset ~0
    assert cal.scale == pytest.approx(4.0, rel=0.1) and abs(cal.offset) < 0.2
    assert abs(cal.eer_threshold) < 0.1
    assert np.mean(spoof > cal.fa_thresholds["0.01"]) <= 0.01
    assert spoof_probability(0.0) == pytest.approx(0.5)
    assert spoof_probability(np.log(9)) == pytest.approx(0.1)
    assert spoof_probability(0.0, prior_bonafide=0.9) == pytest.approx(0.1)
    assert Calibration.from_dict(cal.to_dict()) == cal


def test_summarize_windows_threshold_moves_the_verdict():
    raw = np.array([1.0, -0.5, 1.0])
    assert summarize_windows(raw, [0, 100, 200], 300, SAMPLE_RATE, 100).verdict == "partial-spoof"
    assert summarize_windows(raw, [0, 100, 200], 300, SAMPLE_RATE, 100, threshold=-1.0).verdict == "bonafide"
    assert summarize_windows(raw, [0, 100, 200], 300, SAMPLE_RATE, 100, threshold=1.0).verdict == "spoof"


def test_score_files_keeps_order_and_reports_bad_files(tmp_path):
    good = [write_wav(tmp_path / f"g{i}.wav", partial(3.0 + i, loud=(0, 0)), SAMPLE_RATE) for i in range(5)]
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    sources = [good[0], bad, *good[1:], tmp_path / "missing.wav"]
    out = list(score_files(Energy(), sources, batch_windows=4))
    assert [o.source for o in out] == [str(s) for s in sources]
    assert [o.result is None for o in out] == [False, True, False, False, False, False, True]
    assert "bad.wav" not in (out[1].error or "x") and out[1].error  # the reason; the path is in .source
    assert out[2].duration_s == pytest.approx(4.0, abs=1e-3)


def test_long_files_are_scored_in_bounded_batches(tmp_path):
    class Recording(Energy):
        def __init__(self):
            self.sizes = []

        def score_batch(self, batch):
            self.sizes.append(len(batch))
            return super().score_batch(batch)

    det = Recording()
    x = partial(seconds=20.0, loud=(5.0, 6.0))
    write_wav(tmp_path / "long.wav", x[None])
    write_wav(tmp_path / "short.wav", x[None, :SAMPLE_RATE])
    out = list(score_files(det, [tmp_path / "short.wav", tmp_path / "long.wav"], batch_windows=4, workers=1))
    assert max(det.sizes) <= 4 and sum(det.sizes) == len(window_starts(SAMPLE_RATE, 8000, 4000)) + len(window_starts(x.size, 8000, 4000))
    expected = score_file(x, SAMPLE_RATE, Energy().score_batch, win=8000, hop=4000)
    assert [s.start_s for s in out[1].result.segments] == [s.start_s for s in expected.segments]
    assert out[1].result.score == pytest.approx(expected.score, abs=1e-4)
    assert out[1].result.verdict == "partial-spoof"
