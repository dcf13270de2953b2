"""The shared neural demo set as an evaluation layout: the CSV protocol with a ``system`` column, per-system EER,
the bona fide false-alarm rate per source corpus (metric, ``eval eer``, the report config)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from voiceguard.metrics import cm as M
from voiceguard.protocols import read_protocol, summarize

from helpers import REPO, SHARED, run_cli, tone, write_wav

NEURAL = SHARED / "data" / "neural"

# a hand-checked case: 5 bona fide trials from two corpora, 4 spoofs from two systems
#   sorted: -3s -2s -1bA -0.5s -0.2bB 0.8s 1bA 2bB 3bB; the DET point closest to FRR = FAR is the threshold
#   -0.5 (FRR 1/5, FAR 1/4): EER 0.225
BONA = {"a1": ("corpA", 1.0), "a2": ("corpA", -1.0), "b1": ("corpB", 2.0), "b2": ("corpB", -0.2),
        "b3": ("corpB", 3.0)}
SPOOF = {"x1": ("sysX", -3.0), "x2": ("sysX", -2.0), "y1": ("sysY", -0.5), "y2": ("sysY", 0.8)}


@pytest.fixture
def neural():
    """The shared neural demo set; skip cleanly without ../shared."""
    if not (NEURAL / "protocol.csv").is_file():
        pytest.skip(f"neural demo set not found under {NEURAL} (../shared is absent)")
    return NEURAL


def test_bonafide_false_alarms_hand_computed():
    bona = np.array([s for _, s in BONA.values()])
    groups = np.array([g for g, _ in BONA.values()])
    fa = M.bonafide_false_alarms(bona, groups, 0.0, -0.5)
    assert list(fa) == ["corpA", "corpB"]
    # below LLR 0: a2 (-1.0) of corpA, b2 (-0.2) of corpB; at or below -0.5: only a2
    assert fa["corpA"] == M.FalseAlarms(2, 0.5, 0.5)
    assert fa["corpB"] == M.FalseAlarms(3, pytest.approx(1 / 3), 0.0)
    # one group: at the EER threshold the false-alarm rate is the DET curve's miss rate there (1/5)
    spoof = np.array([s for _, s in SPOOF.values()])
    e, thr = M.eer(bona, spoof)
    assert (e, thr) == (pytest.approx(0.225), -0.5)
    assert M.bonafide_false_alarms(bona, np.full(5, "all"), 0.0, thr)["all"].at_eer == pytest.approx(0.2)
    assert M.bonafide_false_alarms(bona, groups, 0.0, 0.0)["corpB"].at_eer == pytest.approx(1 / 3)  # ties count
    with pytest.raises(ValueError, match="4 group labels for 5"):
        M.bonafide_false_alarms(bona, groups[:4], 0.0, thr)


def _write_case(tmp_path):
    """The hand-checked case as a demo-set-shaped CSV protocol and a 2-column score file."""
    proto = tmp_path / "protocol.csv"
    lines = ["path,label,system,source_repo,license"]
    lines += [f"bonafide/{g}/{u}.wav,bonafide,{g},some/repo,MIT" for u, (g, _) in BONA.items()]
    lines += [f"spoof/{g}/{u}.mp3,spoof,{g},other/repo,CC-BY-4.0" for u, (g, _) in SPOOF.items()]
    proto.write_text("\n".join(lines) + "\n")
    scores = tmp_path / "scores.txt"
    scores.write_text("".join(f"{u} {s}\n" for u, (_, s) in {**BONA, **SPOOF}.items()))
    return proto, scores


def test_csv_protocol_system_column(tmp_path):
    proto, _ = _write_case(tmp_path)
    trials = {t.utt_id: t for t in read_protocol(proto)}
    assert (trials["x1"].attack, trials["x1"].source, trials["x1"].path) == ("sysX", "-", "spoof/sysX/x1.mp3")
    assert (trials["a1"].attack, trials["a1"].source, trials["a1"].label) == ("-", "corpA", "bonafide")
    assert trials["a1"].extra["license"] == "MIT"
    s = summarize(list(trials.values()))
    assert (s.attacks, s.sources) == ({"sysX": 2, "sysY": 2}, {"corpA": 2, "corpB": 3})
    # a protocol without sources keeps its old summary
    assert "sources" not in summarize([t for t in trials.values() if not t.is_bonafide]).to_dict()


def test_eval_eer_per_system_and_per_corpus(tmp_path):
    proto, scores = _write_case(tmp_path)
    r = run_cli("eval", "eer", "--scores", str(scores), "--protocol", str(proto), "--format", "json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["eer"] == pytest.approx(0.225) and out["threshold"] == -0.5
    assert out["per_attack"] == {"sysX": 0.0, "sysY": pytest.approx(M.eer(np.array([1, -1, 2, -.2, 3.]),
                                                                          np.array([-.5, .8]))[0])}
    assert out["decision_threshold"] == 0.0
    assert out["per_source_false_alarms"] == {
        "corpA": {"n_bonafide": 2, "at_decision": 0.5, "at_eer": 0.5},
        "corpB": {"n_bonafide": 3, "at_decision": pytest.approx(1 / 3), "at_eer": 0.0}}
    r = run_cli("eval", "eer", "--scores", str(scores), "--protocol", str(proto), "--format", "csv")
    assert r.returncode == 0, r.stderr
    head, *rows = r.stdout.splitlines()
    assert head.endswith(",fa_decision,fa_eer")
    assert rows[-2].startswith("source,corpA,2,") and rows[-2].endswith(",0.5,0.5")
    r = run_cli("eval", "eer", "--scores", str(scores), "--protocol", str(proto))
    assert r.returncode == 0, r.stderr
    assert "per attack" in r.stdout and "sysY" in r.stdout
    assert "bona fide false alarms per source" in r.stdout
    assert any(ln.split() == ["corpB", "3", "33.3333", "0.0000"] for ln in r.stdout.splitlines())


def test_eval_eer_missing_scores_skip(tmp_path):
    proto, scores = _write_case(tmp_path)
    scores.write_text("".join(ln + "\n" for ln in scores.read_text().splitlines() if not ln.startswith("b3 ")))
    r = run_cli("eval", "eer", "--scores", str(scores), "--protocol", str(proto), "--json")
    assert r.returncode == 2 and "1 of 9 protocol trials have no score: b3" in r.stderr
    r = run_cli("eval", "eer", "--scores", str(scores), "--protocol", str(proto), "--missing", "skip", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["n_bonafide"] == 4 and out["per_source_false_alarms"]["corpB"]["n_bonafide"] == 2
    assert any("1 of 9 protocol trials have no score and are left out: b3" in w for w in out["warnings"])


def test_detect_score_lists_unreadable_and_writes_the_rest(tmp_path):
    """A truncated WAV is an error row (exit 2); the score file holds the readable files, and eval eer reads it
    with --missing skip."""
    proto = tmp_path / "protocol.csv"
    rows = ["path,label,system"]
    for i, (label, system) in enumerate([("bonafide", "corpA"), ("bonafide", "corpB"), ("spoof", "sysX"),
                                         ("spoof", "sysY"), ("bonafide", "corpA")]):
        (tmp_path / label).mkdir(exist_ok=True)
        write_wav(tmp_path / label / f"f{i}.wav", tone(1.0, freq=150.0 + 60 * i))
        rows.append(f"{label}/f{i}.wav,{label},{system}")
    bad = tmp_path / "bonafide" / "f4.wav"
    bad.write_bytes(bad.read_bytes()[:-8000])  # the header now promises more audio than the file holds
    proto.write_text("\n".join(rows) + "\n")
    out = tmp_path / "scores.txt"
    r = run_cli("detect", "score", "--protocol", str(proto), "--audio-dir", str(tmp_path), "--ext", "",
                "--out", str(out), "--workers", "1")
    assert r.returncode == 2, r.stderr
    assert "scored 4 of 5 trials" in r.stderr and "f4.wav: truncated" in r.stderr
    assert sorted(ln.split()[0] for ln in out.read_text().splitlines()) == ["f0", "f1", "f2", "f3"]
    assert [ln.split()[1] for ln in out.read_text().splitlines()] == ["-", "-", "sysX", "sysY"]


def test_real_protocol(neural):
    trials = read_protocol(neural / "protocol.csv")
    s = summarize(trials)
    assert (s.n_trials, s.n_spoof, s.n_bonafide) == (508, 368, 140)
    assert len(s.attacks) == 22 and len(s.sources) == 13 and s.sources["libritts"] == 23
    assert "unknown" not in s.attacks and "-" not in s.sources
    r = run_cli("data", "protocol", str(neural / "protocol.csv"), "--audio-dir", str(neural), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["n_trials"], len(out["attacks"]), len(out["sources"])) == (508, 22, 13)


def test_neural_demo_config():
    from voiceguard.eval.report import load_report_config

    cfg = load_report_config(REPO / "configs" / "neural-demo.yaml")
    assert (cfg.data.layout, cfg.data.protocol, cfg.data.ext, cfg.data.protocol_format) == (
        "protocol", "protocol.csv", "", "csv")
    assert cfg.watermark is None and cfg.risk is None and cfg.attack_suites == ()
    from voiceguard.detect.models import model_catalogue

    shipped = sorted(r["name"].split()[0] for r in model_catalogue() if r.get("weights") == "shipped")
    assert sorted(d.model for d in cfg.detectors) == shipped


def test_report_false_alarm_table(tmp_path):
    """The report renders the per-corpus false-alarm table from the detector metrics."""
    from voiceguard.eval.report.render import _false_alarm_blocks
    from voiceguard.eval.report.results import DetectorMetrics
    from voiceguard.metrics.scores import ScoredTrial, evaluate_cm

    rows = [ScoredTrial(u, s, "bonafide", "-", "-", g) for u, (g, s) in BONA.items()]
    rows += [ScoredTrial(u, s, "spoof", g) for u, (g, s) in SPOOF.items()]
    d = evaluate_cm(rows).to_dict()
    m = DetectorMetrics.from_dict(d)
    assert m.to_dict() == d  # read back exactly

    class Det:
        metrics = m

    class R:
        detection = {"vg": Det()}

    (_, text), (_, cols, table) = _false_alarm_blocks(R())
    assert "LLR decision threshold (0" in text
    assert cols == ["source", "bona fide", "vg @LLR", "vg @EER"]
    assert table[1] == {"source": "corpB", "bona fide": "3", "vg @LLR": "33.33", "vg @EER": "0.00"}
