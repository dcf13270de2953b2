"""The CLI end to end in subprocesses: real exit codes, one-line errors, never a traceback."""
from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import run_cli, speech, tone, write_score_files, write_wav


def _assert_clean_error(r, *fragments):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("voiceguard: error: "), r.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def test_version_and_groups():
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("voiceguard, version ")
    r = run_cli("--help")
    for group in ("scan", "data", "detect", "watermark", "attacks", "eval", "risk", "demo"):
        assert f"  {group} " in r.stdout


@pytest.fixture
def scores(tmp_path):
    return write_score_files(tmp_path)


def test_eer_json_four_and_two_columns_agree(scores):
    a = run_cli("eval", "eer", "--scores", str(scores / "four.txt"), "--json")
    b = run_cli("eval", "eer", "--scores", str(scores / "two.txt"), "--protocol", str(scores / "proto.txt"),
                "--asv-scores", str(scores / "asv.txt"), "--json", "--bootstrap", "200", "--seed", "1")
    assert a.returncode == 0 and b.returncode == 0, (a.stderr, b.stderr)
    ja, jb = json.loads(a.stdout), json.loads(b.stdout)
    assert ja["eer"] == jb["eer"] and 0 <= ja["eer"] < 0.5
    assert {"eer", "threshold", "n_bonafide", "n_spoof", "per_attack"} <= set(ja)
    assert (ja["n_bonafide"], ja["n_spoof"]) == (20, 40) and sorted(ja["per_attack"]) == ["A01", "A02"]
    assert "min_tdcf_2019" not in ja and jb["min_tdcf_2019"] > 0 and jb["min_tdcf_2021"] > 0
    assert jb["eer_ci"][0] <= jb["eer"] <= jb["eer_ci"][1]
    t = run_cli("eval", "eer", "--scores", str(scores / "four.txt"))
    assert t.returncode == 0 and "EER" in t.stdout and "A02" in t.stdout


@pytest.mark.parametrize("content,args,fragments", [
    ("U1 0.5\nU2 0.7\nU3 0.1\n", [], ["needs --protocol"]),
    ("U1 A01 spoof 0.5\nU2 - bonafide 1.0\nU3 - bonafide abc\n", [], ["line 3: score 'abc' is not a number"]),
    ("U1 A01 spoof 0.5\nU2 - bonafide nan\nU3 - bonafide 0.1\n", [], ["line 2: score 'nan' is not a finite number"]),
    ("U1 A01 spoof 1\nU2 - bonafide 1\nU3 - bonafide 1\n", [], ["only 1 distinct score value"]),
    ("U1 A01 spoof 1 extra\n", [], ["expected 2 columns"]),
    ("U1 A01 maybe 1\n", [], ["line 1: unknown label 'maybe'"]),
    ("U1 A01 spoof 0.5\nU1 - bonafide 1.0\n", [], ["1 duplicated utterance id(s): U1"]),
])
def test_eer_bad_scores(tmp_path, content, args, fragments):
    p = tmp_path / "s.txt"
    p.write_text(content)
    _assert_clean_error(run_cli("eval", "eer", "--scores", str(p), *args), str(p), *fragments)


def test_eer_bad_companions(scores, tmp_path):
    _assert_clean_error(run_cli("eval", "eer", "--scores", str(tmp_path / "none.txt")), "no such score file")
    partial = tmp_path / "partial.txt"
    partial.write_text("".join((scores / "two.txt").read_text().splitlines(True)[:10]))
    _assert_clean_error(run_cli("eval", "eer", "--scores", str(partial), "--protocol", str(scores / "proto.txt")),
                        "50 of 60 protocol trials have no score")
    asv = tmp_path / "asv.txt"
    asv.write_text("bonafide target 1\nbonafide nontarget 0\n")
    _assert_clean_error(run_cli("eval", "eer", "--scores", str(scores / "four.txt"), "--asv-scores", str(asv)),
                        "no spoof trials")


def test_eer_polarity_warning(scores, tmp_path):
    flipped = tmp_path / "flipped.txt"
    flipped.write_text("".join(f"{u} {a} {k} {-float(s)}\n" for u, a, k, s in
                               (ln.split() for ln in (scores / "four.txt").read_text().splitlines())))
    r = run_cli("eval", "eer", "--scores", str(flipped), "--json")
    assert r.returncode == 0 and "scores look inverted" in r.stderr


def test_data_protocol(tmp_path):
    p = tmp_path / "p.txt"
    p.write_text("S1 U1 - - bonafide\nS2 U2 - A01 spoof\nS2 U3 - A02 spoof\n")
    r = run_cli("data", "protocol", str(p), "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == {
        "n_trials": 3, "n_bonafide": 1, "n_spoof": 2, "n_speakers": 2, "attacks": {"A01": 1, "A02": 1}}
    _assert_clean_error(run_cli("data", "protocol", str(p), "--audio-dir", str(tmp_path)),
                        "3 of 3 audio files are missing")


def test_scan_reports_every_bad_file_and_goes_on(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    write_wav(d / "good.wav", speech(1.0, 16000, 2))
    write_wav(d / "good2.flac", speech(2.0, 8000), 8000)
    (d / "text.wav").write_text("not audio at all\n" * 10)
    (d / "empty.wav").write_bytes(b"")
    x = tone(0.5)
    x[0, 100] = np.nan
    write_wav(d / "nan.wav", x, subtype="FLOAT")
    write_wav(d / "wide.wav", tone(0.1, channels=12))
    data = write_wav(d / "cut.wav", tone(1.0)).read_bytes()
    (d / "cut.wav").write_bytes(data[:5000])
    r = run_cli("scan", str(d), str(tmp_path / "missing.wav"), "--format", "json")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    rows = {row["path"].split("/")[-1]: row for row in json.loads(r.stdout)}
    assert rows["good.wav"]["status"] == "ok" and rows["good.wav"]["channels"] == 2
    assert rows["good.wav"]["duration_s"] == 1.0 and rows["good2.flac"]["sample_rate"] == 8000
    expected = {"text.wav": "not a readable audio file", "empty.wav": "file is empty",
                "nan.wav": "contains NaN or infinite samples", "wide.wav": "12 channels are not supported",
                "cut.wav": "truncated", "missing.wav": "no such file or folder"}
    for name, fragment in expected.items():
        assert rows[name]["status"] == "error" and fragment in rows[name]["error"], rows[name]
    for name in ("good.wav", "good2.flac"):
        row = rows[name]
        assert row["verdict"] in ("bonafide", "spoof", "partial-spoof") and 0 <= row["p_spoof"] <= 1
        assert row["model"] == "vg-whisper" and row["error"] is None
    assert "scanned 8 file(s) with vg-whisper" in r.stderr and "6 error(s)" in r.stderr


def test_scan_exit_codes_follow_the_threshold(tmp_path):
    write_wav(tmp_path / "a.wav", speech(0.6))
    write_wav(tmp_path / "b.wav", speech(2.5, 22050), 22050)
    r = run_cli("scan", str(tmp_path / "*.wav"), "--format", "csv", "--threshold", "-1000")
    assert r.returncode == 0 and r.stdout.startswith("path,status,verdict,p_spoof,llr,duration_s,sample_rate")
    assert r.stdout.count(",bonafide,") == 2
    r = run_cli("scan", str(tmp_path), "--format", "jsonl", "--threshold", "1000")
    assert r.returncode == 1 and [json.loads(x)["verdict"] for x in r.stdout.splitlines()] == ["spoof"] * 2
    r = run_cli("scan", str(tmp_path), "--threshold", "fa:0.5")
    assert r.returncode == 2 and "no threshold for a false-alarm rate of 0.5" in r.stderr
    r = run_cli("scan", str(tmp_path), "--hop", "10")
    assert r.returncode == 2 and "leaves gaps" in r.stderr
    assert "Traceback" not in r.stderr


def test_usage_error_is_not_a_traceback():
    r = run_cli("eval", "eer")
    assert r.returncode == 2 and "Missing option '--scores'" in r.stderr and "Traceback" not in r.stderr
