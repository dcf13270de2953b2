"""Metrics: hand-checked vectors, brute-force references from the definitions, and official parity."""
from __future__ import annotations

import json

import numpy as np
import pytest

from voiceguard.errors import ScoreError
from voiceguard.metrics import cm as M

from helpers import run_cli

BONA = np.array([0.1, 0.6, 0.7, 0.9])
SPOOF = np.array([0.2, 0.3, 0.4, 0.8])


def test_eer_hand_computed():
    # sorted: .1b .2s .3s .4s | .6b .7b .8s .9b -> at threshold .4: FRR = 1/4, FAR = 1/4
    e, thr = M.eer(BONA, SPOOF)
    assert e == pytest.approx(0.25) and thr == pytest.approx(0.4)


def test_eer_extremes_and_polarity():
    bona, spoof = np.arange(10.0) + 100, np.arange(10.0)
    assert M.eer(bona, spoof)[0] == 0.0
    assert M.eer(spoof, bona)[0] == 1.0
    assert M.polarity_warning(bona, spoof) is None
    assert "inverted" in M.polarity_warning(spoof, bona)


def _brute_rates(bona, spoof, thr):
    return np.mean(bona <= thr), np.mean(spoof > thr)


def _brute_eer(bona, spoof):
    thresholds = np.concatenate([[min(bona.min(), spoof.min()) - 0.001], np.sort(np.concatenate([bona, spoof]))])
    best = min(thresholds, key=lambda t: abs(np.subtract(*_brute_rates(bona, spoof, t))))
    return np.mean(_brute_rates(bona, spoof, best))


@pytest.mark.parametrize("seed", range(5))
def test_eer_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    bona, spoof = rng.normal(1.0, 1.0, 300), rng.normal(-1.0, 1.5, 700)
    assert M.eer(bona, spoof)[0] == pytest.approx(_brute_eer(bona, spoof), abs=1e-12)


def _asv(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(3, 1, 400), rng.normal(-2, 1, 400), rng.normal(1.5, 2, 400)


@pytest.mark.parametrize("seed", range(3))
def test_min_tdcf_matches_definitions(seed):
    rng = np.random.default_rng(100 + seed)
    bona, spoof = rng.normal(1.0, 1.0, 200), rng.normal(-1.0, 1.0, 300)
    tar, non, spf = _asv(seed)
    asv = M.asv_error_rates(tar, non, spf)
    thr = asv.threshold
    assert asv.p_fa == pytest.approx(np.mean(non >= thr)) and asv.p_miss == pytest.approx(np.mean(tar < thr))
    assert asv.p_fa_spoof + asv.p_miss_spoof == pytest.approx(1.0)
    c = M.CostModel()
    assert (c.p_tar, c.p_non) == pytest.approx((0.95 * 0.99, 0.95 * 0.01))
    thresholds = np.concatenate([[min(bona.min(), spoof.min()) - 0.001], np.sort(np.concatenate([bona, spoof]))])
    legacy, revised = [], []
    for t in thresholds:
        pm, pf = _brute_rates(bona, spoof, t)
        # ASVspoof 2019 evaluation plan, eq. (legacy t-DCF)
        c1 = c.p_tar * (1 - asv.p_miss) - c.p_non * 10 * asv.p_fa
        c2 = 10 * c.p_spoof * (1 - asv.p_miss_spoof)
        legacy.append((c1 * pm + c2 * pf) / min(c1, c2))
        # ASVspoof 2021 evaluation plan (revised t-DCF)
        c0 = c.p_tar * asv.p_miss + c.p_non * 10 * asv.p_fa
        r1 = c.p_tar - c0
        r2 = 10 * c.p_spoof * asv.p_fa_spoof
        revised.append((c0 + r1 * pm + r2 * pf) / (c0 + min(r1, r2)))
    assert M.min_tdcf(bona, spoof, asv, "2019")[0] == pytest.approx(min(legacy), abs=1e-12)
    assert M.min_tdcf(bona, spoof, asv, "2021")[0] == pytest.approx(min(revised), abs=1e-12)
    # a perfect CM reaches the floor of the revised t-DCF: C0 / (C0 + min(C1, C2))
    perfect = M.min_tdcf(bona + 100, spoof, asv, "2021")[0]
    c0 = c.p_tar * asv.p_miss + c.p_non * 10 * asv.p_fa
    assert perfect == pytest.approx(c0 / (c0 + min(c.p_tar - c0, 10 * c.p_spoof * asv.p_fa_spoof)))


def test_dcf_and_cllr():
    assert M.bayes_threshold() == pytest.approx(-np.log(1.9))
    zeros = np.zeros(5)
    # an uninformative LLR of 0 for every trial costs exactly 1 bit ... (needs 3 distinct values overall)
    assert M.cllr(zeros, zeros) == pytest.approx(1.0)
    rng = np.random.default_rng(3)
    bona, spoof = rng.normal(2, 1, 500), rng.normal(-2, 1, 500)
    assert M.min_cllr(bona, spoof) <= M.cllr(bona, spoof)
    assert M.min_cllr(bona + 50, spoof) == pytest.approx(0.0, abs=1e-5)
    # minCllr is invariant to a monotonic transform of the scores; Cllr is not
    assert M.min_cllr(np.exp(bona), np.exp(spoof)) == pytest.approx(M.min_cllr(bona, spoof), abs=1e-9)
    # minDCF from its definition
    frr, far, _ = M.det_curve(bona, spoof)
    ref = np.min(0.95 * frr + 10 * 0.05 * far) / min(0.95, 0.5)
    assert M.min_dcf(bona, spoof)[0] == pytest.approx(ref)
    # actDCF at the Bayes threshold, from its definition
    t = -np.log(1.9)
    assert M.act_dcf(bona, spoof) == pytest.approx((0.95 * np.mean(bona < t) + 0.5 * np.mean(spoof >= t)) / 0.5)


def test_pav_matches_isotonic_regression():
    from sklearn.isotonic import IsotonicRegression

    y = np.random.default_rng(7).random(200)
    ref = IsotonicRegression().fit_transform(np.arange(200), y)
    np.testing.assert_allclose(M.pav(y), ref, atol=1e-12)


def test_bootstrap_is_seeded_and_brackets_the_eer():
    rng = np.random.default_rng(5)
    bona, spoof = rng.normal(1, 1, 300), rng.normal(-1, 1, 300)
    a = M.bootstrap_eer(bona, spoof, n_boot=200, seed=11)
    assert a == M.bootstrap_eer(bona, spoof, n_boot=200, seed=11)
    assert a != M.bootstrap_eer(bona, spoof, n_boot=200, seed=12)
    assert a[0] < M.eer(bona, spoof)[0] < a[1]


def test_rejects_bad_scores():
    with pytest.raises(ScoreError, match="1 of 4 bona fide scores are NaN or infinite"):
        M.eer(np.array([1.0, np.nan, 2, 3]), SPOOF)
    with pytest.raises(ScoreError, match="are NaN or infinite"):
        M.eer(BONA, np.array([np.inf, 1.0, 2.0]))
    with pytest.raises(ScoreError, match="only 2 distinct score value"):
        M.eer(np.array([1.0, 1.0, 0.0]), np.array([0.0, 0.0]))
    with pytest.raises(ScoreError, match="no spoof scores"):
        M.eer(BONA, np.array([]))


def test_per_attack_breakdown():
    bona = np.array([1.0, 2.0, 3.0, 4.0])
    spoof = np.array([-1.0, -2.0, 2.5, 3.5])
    res = M.eer_breakdown(bona, spoof, np.array(["A01", "A01", "A02", "A02"]))
    assert res["A01"].eer == 0.0 and res["A02"].eer == pytest.approx(0.5)
    assert res["A01"].n_spoof == 2 and res["A02"].n_bonafide == 4


# ---------------------------------------------------------------------------- official parity
REFERENCE = {  # ../shared/README.md, computed with the official ASVspoof evaluation code
    "mul": (1.0601, 0.0335, 0.0942),
    "add": (1.1586, 0.0374, 0.0978),
    "cat": (1.2354, 0.0388, 0.0991),
}


@pytest.mark.parametrize("variant", sorted(REFERENCE))
def test_reference_table_reproduced_by_cli(la19, variant):
    r = run_cli("eval", "eer", "--scores", str(la19 / f"RawGAT_ST_{variant}_eval_scores.txt"),
                "--protocol", str(la19 / "ASVspoof2019.LA.cm.eval.trl.txt"),
                "--asv-scores", str(la19 / "ASVspoof2019.LA.asv.eval.gi.trl.scores.txt"), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    eer_pct, t19, t21 = REFERENCE[variant]
    assert round(out["eer"] * 100, 4) == eer_pct
    assert round(out["min_tdcf_2019"], 4) == t19
    assert round(out["min_tdcf_2021"], 4) == t21
    assert round(out["asv"]["eer"] * 100, 4) == 2.4578
    assert (out["n_bonafide"], out["n_spoof"]) == (7355, 63882)
    assert sorted(out["per_attack"]) == [f"A{i:02d}" for i in range(7, 20)]


def test_cm_rows_one_row_per_eer():
    from voiceguard.metrics.scores import CM_COLUMNS, FA_COLUMNS, ScoredTrial, cm_rows, evaluate_cm

    rng = np.random.default_rng(5)
    rows = [ScoredTrial(f"U{i}", float(rng.normal(2 if i % 2 else -2)), "bonafide" if i % 2 else "spoof",
                        "-" if i % 2 else f"A0{i % 3}", f"C{i % 4 // 2}") for i in range(80)]
    m = evaluate_cm(rows, bootstrap=200, seed=1)
    flat = cm_rows(m)
    assert all(list(r) == list(CM_COLUMNS + FA_COLUMNS) for r in flat)  # two conditions: their false alarms too
    for r in flat:
        fa = m.per_condition_fa.get(r["name"]) if r["group"] == "condition" else None
        assert (r["fa_decision"], r["fa_eer"]) == ((fa.at_decision, fa.at_eer) if fa else (None, None))
    bona_c0 = [t.score for t in rows if t.label == "bonafide" and t.condition == "C0"]
    assert m.per_condition_fa["C0"].at_decision == np.mean(np.array(bona_c0) < 0)
    assert [(r["group"], r["name"]) for r in flat] == ([("pooled", "all")] + [("attack", a) for a in m.per_attack]
                                                       + [("condition", c) for c in m.per_condition])
    assert len(m.per_condition) == 2 and flat[0]["eer"] == m.eer.eer and flat[0]["min_cllr"] == m.min_cllr
    assert (flat[0]["eer_ci_low"], flat[0]["eer_ci_high"]) == m.eer.ci and flat[0]["min_tdcf_2019"] is None
    assert [r["eer"] for r in flat[1:]] == [e.eer for e in (*m.per_attack.values(), *m.per_condition.values())]
    assert all(r["min_dcf"] is None and r["eer_ci_low"] is None for r in flat[1:])
