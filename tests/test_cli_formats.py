"""``--format table|json|jsonl|csv`` (and its alias ``--json``) on the commands of eval, data, attacks and risk.

The default (table) output of each command is compared with the text the commands printed before the
format option existed, captured once from the earlier code for these fixed inputs.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import asv_lists, synthetic_speaker_folder, tone, write_wav, write_score_files
from voiceguard.cli import cli
from voiceguard.errors import VoiceguardWarning


def make_inputs(root: Path) -> None:
    """Score files, protocols, a tone and a two-condition suite, all fixed (seeded)."""
    write_score_files(root)
    (root / "p.txt").write_text("S1 U1 - - bonafide\nS2 U2 - A01 spoof\nS2 U3 - A02 spoof\n")
    write_wav(root / "tone.wav", tone(1.0))
    (root / "suite.yaml").write_text("name: mini\ndescription: two dsp conditions\nattacks:\n"
                                     "  - label: quiet\n    gain: {factor: 0.5}\n"
                                     "  - label: low\n    lowpass: {cutoff_hz: 2000}\n")


def invoke(*args: str) -> tuple[str, str]:
    """Run the CLI in-process: (stdout, stderr); the command must succeed."""
    r = CliRunner().invoke(cli, list(args))
    assert r.exit_code == 0, (r.output, r.exception)
    return r.stdout, r.stderr


def check_formats(args: list[str], columns: list[str]) -> dict | list:
    """``--format json`` parses and equals ``--json``; ``jsonl`` is one object per line and ``csv`` the same
    rows under a header of ``columns``.  Returns the JSON document."""
    text, _ = invoke(*args, "--format", "json")
    doc = json.loads(text)
    assert invoke(*args, "--json")[0] == text
    lines = invoke(*args, "--format", "jsonl")[0].splitlines()
    rows = [json.loads(line) for line in lines]
    assert rows and all(isinstance(r, dict) for r in rows)
    records = list(csv.reader(io.StringIO(invoke(*args, "--format", "csv")[0])))
    assert records[0] == columns and len(records) == len(rows) + 1
    return doc


# --------------------------------------------------------------------------- eval, data, attacks
CASES = {
    "eer4": ["eval", "eer", "--scores", "four.txt"],
    "eer2": ["eval", "eer", "--scores", "two.txt", "--protocol", "proto.txt", "--asv-scores", "asv.txt",
             "--bootstrap", "200", "--seed", "1"],
    "protocol": ["data", "protocol", "p.txt"],
    "suite_file": ["attacks", "suite", "suite.yaml"],
    "suite": ["attacks", "suite", "asvspoof21-df"],
    "apply": ["attacks", "apply", "lowpass", "tone.wav", "out.wav", "-p", "cutoff_hz=3000", "--overwrite"],
    "run_suite": ["attacks", "run-suite", "suite.yaml", "tone.wav", "outdir", "--overwrite"],
    "backends": ["risk", "backends"],
}
CM = ["group", "name", "n_bonafide", "n_spoof", "eer", "threshold", "eer_ci_low", "eer_ci_high", "min_tdcf_2019",
      "min_tdcf_2021", "min_dcf", "min_cllr", "act_dcf", "cllr"]
COLUMNS = {"eer4": CM, "eer2": CM, "protocol": ["label", "attack", "n"], "suite_file": ["label", "attack", "params"],
           "suite": ["label", "attack", "params"],
           "apply": ["output", "attack", "parameters", "in_seconds", "out_seconds"],
           "run_suite": ["label", "status", "output", "detail"], "backends": ["name", "description"]}
EER_TAIL = ("\n"
            "per attack (all bona fide vs the attack's spoofs):\n"
            "attack  n_spoof  EER %  \n"
            "------  -------  -------\n"
            "A01     20       5.0000 \n"
            "A02     20       10.0000\n")
# the output of the commands before --format (captured from the earlier code)
GOLDEN = {
    "eer4": ('four.txt: 20 bona fide, 40 spoof\n'
        'EER          6.2500 %   threshold -0.0273444\n'
        'minDCF       0.1700   minCllr 0.2391   (scores read as LLRs: actDCF 0.2450, Cllr 0.3779)\n'
        + EER_TAIL),
    "eer2": ('two.txt: 20 bona fide, 40 spoof\n'
        'EER          6.2500 %   threshold -0.0273444  (95% CI 1.2188-15.0000 %, 200 resamples, seed 1)\n'
        'min t-DCF    0.1841 (2019 legacy)   0.1877 (2021 revised)   ASV EER 0.0000 % at threshold -1.57902\n'
        'minDCF       0.1700   minCllr 0.2391   (scores read as LLRs: actDCF 0.2450, Cllr 0.3779)\n'
        + EER_TAIL),
    "protocol": ('p.txt: 3 trials, 1 bona fide, 2 spoof, 2 speakers\n'
        'attack  n\n'
        '------  -\n'
        'A01     1\n'
        'A02     1\n'),
    "suite_file": ('mini: two dsp conditions\n'
        'label  attack   params             \n'
        '-----  -------  -------------------\n'
        "quiet  gain     {'factor': 0.5}    \n"
        "low    lowpass  {'cutoff_hz': 2000}\n"),
    "suite": ('asvspoof21-df: Compression conditions in the spirit of ASVspoof 2021 DF (C1-C9): MP3, M4A (AAC) and OGG (Vorbis) at a low and a high bitrate, and the cascades MP3 -> M4A and OGG -> M4A.\n'
        'label           attack  params                                                                  \n'
        '--------------  ------  ------------------------------------------------------------------------\n'
        'DF-C1-none      none    {}                                                                      \n'
        "DF-C2-mp3-low   mp3     {'bitrate': '24k'}                                                      \n"
        "DF-C3-mp3-high  mp3     {'bitrate': '128k'}                                                     \n"
        "DF-C4-m4a-low   aac     {'bitrate': '24k'}                                                      \n"
        "DF-C5-m4a-high  aac     {'bitrate': '128k'}                                                     \n"
        "DF-C6-ogg-low   vorbis  {'bitrate': '48k'}                                                      \n"
        "DF-C7-ogg-high  vorbis  {'bitrate': '96k'}                                                      \n"
        "DF-C8-mp3-m4a   chain   {'steps': [{'mp3': {'bitrate': '64k'}}, {'aac': {'bitrate': '64k'}}]}   \n"
        "DF-C9-ogg-m4a   chain   {'steps': [{'vorbis': {'bitrate': '64k'}}, {'aac': {'bitrate': '64k'}}]}\n"),
    "apply": ("out.wav: lowpass {'cutoff_hz': 3000, 'order': 5} (1.00 s -> 1.00 s)\n"),
    "run_suite": ('label  status  output            detail\n'
        '-----  ------  ----------------  ------\n'
        'quiet  ok      outdir/quiet.wav  1.00 s\n'
        'low    ok      outdir/low.wav    1.00 s\n'),
    "backends": ('ecapa        SpeechBrain ECAPA-TDNN (192-d for the VoxCeleb model), cosine-ready after L2 normalisation.\n'
        "resemblyzer  Resemblyzer's GE2E voice encoder (256-d); partial 1.6 s windows averaged per utterance.\n"),}


@pytest.fixture
def inputs(tmp_path, monkeypatch) -> Path:
    make_inputs(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("name", list(CASES))
def test_default_output_is_unchanged(inputs, name):
    assert invoke(*CASES[name])[0] == GOLDEN[name]


@pytest.mark.parametrize("name", list(CASES))
def test_json_jsonl_csv(inputs, name):
    doc = check_formats(CASES[name], COLUMNS[name])
    if name.startswith("eer"):  # the JSON object of the earlier --json
        assert doc["eer"] == pytest.approx(0.0625) and sorted(doc["per_attack"]) == ["A01", "A02"]
        assert ("min_tdcf_2019" in doc) == (name == "eer2") and ("eer_ci" in doc) == (name == "eer2")
        rows = [json.loads(x) for x in invoke(*CASES[name], "--format", "jsonl")[0].splitlines()]
        assert [(r["group"], r["name"]) for r in rows] == [("pooled", "all"), ("attack", "A01"), ("attack", "A02")]
        assert rows[0]["eer"] == doc["eer"] and rows[0]["min_dcf"] == doc["min_dcf"] and rows[1]["min_dcf"] is None
    elif name == "protocol":
        assert doc == {"n_trials": 3, "n_bonafide": 1, "n_spoof": 2, "n_speakers": 2, "attacks": {"A01": 1, "A02": 1}}
    elif name == "suite_file":
        assert doc == {"name": "mini", "description": "two dsp conditions",
                       "rows": [{"label": "quiet", "attack": "gain", "params": {"factor": 0.5}},
                                {"label": "low", "attack": "lowpass", "params": {"cutoff_hz": 2000}}]}
    elif name == "apply":
        assert doc["output"] == "out.wav" and doc["parameters"] == {"cutoff_hz": 3000, "order": 5}
        assert doc["in_seconds"] == doc["out_seconds"] == 1.0
    elif name == "run_suite":
        assert [(r["label"], r["status"], r["output"]) for r in doc] == [("quiet", "ok", "outdir/quiet.wav"),
                                                                         ("low", "ok", "outdir/low.wav")]
    elif name == "backends":
        assert [r["name"] for r in doc] == ["ecapa", "resemblyzer"]


def test_attacks_list_formats(inputs):
    from voiceguard.attacks import list_suites
    from voiceguard.attacks.files import attack_catalogue

    cols = ["name", "params", "length", "torch", "available", "description"]
    rows = attack_catalogue()
    # the layout the command printed before --format, checked line by line (availability depends on ffmpeg)
    out = invoke("attacks", "list")[0]
    lines = out.splitlines()
    assert lines[0].split() == cols and set(lines[1].replace(" ", "")) == {"-"}
    assert [line.split()[0] for line in lines[2:2 + len(rows)]] == [r["name"] for r in rows]
    assert len(rows) >= 30 and {"mp3", "white_noise", "rawboost"} <= {r["name"] for r in rows}
    assert lines[2 + len(rows):] == ["", f"suites: {', '.join(list_suites())} (voiceguard attacks suite NAME)"]
    assert check_formats(["attacks", "list"], cols) == rows


def test_data_protocol_format_still_reads_a_protocol_format_with_a_warning(inputs):
    out, err = invoke("data", "protocol", "p.txt", "--format", "asvspoof2019")
    assert out == GOLDEN["protocol"]
    assert err.count("\n") == 1 and err.startswith("voiceguard: warning: --format asvspoof2019 as a protocol "
                                                   "format is deprecated: use --protocol-format asvspoof2019")
    assert invoke("data", "protocol", "p.txt", "--protocol-format", "asvspoof2019") == (GOLDEN["protocol"], "")
    # csv names both an output and a protocol format: it is the output format now
    assert invoke("data", "protocol", "p.txt", "--format", "csv")[0] == "label,attack,n\nbonafide,-,1\nspoof,A01,1\n" \
                                                                        "spoof,A02,1\n"
    r = CliRunner().invoke(cli, ["data", "protocol", "p.txt", "--format", "asvspoof5", "--protocol-format",
                                 "asvspoof2019"])
    assert r.exit_code == 2 and "contradicts --protocol-format asvspoof2019" in r.output


def test_legacy_protocol_format_warns():
    from voiceguard.cli.options import legacy_protocol_format

    assert legacy_protocol_format("json", "csv") == ("json", "csv")
    with pytest.warns(VoiceguardWarning, match="deprecated"):
        assert legacy_protocol_format("in-the-wild", "auto") == ("table", "in-the-wild")


CORPUS_TABLE = ("split  bonafide  spoof  speakers  hours   attacks          \n"
                "-----  --------  -----  --------  ------  -----------------\n"
                "train  8         6      2         0.0070  A01:3 A02:3      \n"
                "dev    8         4      2         0.0060  A01:2 A02:2      \n"
                "eval   8         6      2         0.0070  A03:2 A04:2 A16:2\n"
                "c: built in 12 s; shortcut check passed\n")  # `data build --config tiny --seed 3` on 6 speakers


def test_data_build_formats(inputs, monkeypatch):
    import voiceguard.eval.corpus as corpus
    from voiceguard.eval.corpus import CorpusCard

    counts = {"train": {"bonafide": 8, "spoof": 6, "speakers": 2, "per_attack": {"-": 8, "A01": 3, "A02": 3},
                        "hours": 0.007},
              "dev": {"bonafide": 8, "spoof": 4, "speakers": 2, "per_attack": {"-": 8, "A01": 2, "A02": 2},
                      "hours": 0.006},
              "eval": {"bonafide": 8, "spoof": 6, "speakers": 2, "per_attack": {"-": 8, "A03": 2, "A04": 2, "A16": 2},
                       "hours": 0.007}}
    card = CorpusCard("c", counts, True, 12.3)
    monkeypatch.setattr(corpus, "prepare_corpus", lambda *a, **k: card)  # the build itself: tests/test_corpus.py
    args = ["data", "build", "--source", ".", "--out", "c", "--config", "tiny", "--seed", "3"]
    assert invoke(*args)[0] == CORPUS_TABLE
    assert check_formats(args, ["split", "bonafide", "spoof", "speakers", "hours", "attacks"]) == card.to_dict()
    assert invoke(*args, "--format", "jsonl")[0].splitlines()[2] == json.dumps(
        {"split": "eval", "bonafide": 8, "spoof": 6, "speakers": 2, "hours": 0.007, "attacks": "A03:2 A04:2 A16:2"})


# --------------------------------------------------------------------------- risk (real speaker embeddings)
RISK_GOLDEN = {
    "asv": ('ASV (resemblyzer, cosine, normalisation: none): 24 of 24 trials scored (8 target, 12 non-target, 4 spoof)\n'
        'ASV EER      0.00 %   threshold 0.9329\n'
        'at the ASV EER threshold: P_miss 0.00 %   P_fa non-target 8.33 %   P_fa spoof 0.00 %\n'
        'SPF-EER      0.00 %   SASV-EER 0.00 %\n'
        '\n'
        'spoof acceptance per attack (share of spoofs the ASV accepts as the claimed speaker):\n'
        'attack  n  accepted %  mean_score  fools_asv\n'
        '------  -  ----------  ----------  ---------\n'
        'A99     4  0.0000      0.8366      no       \n'),
    "compare": ('cosine 0.9917: same speaker (threshold 0.7154)\n'),
    "reid": ('attacker       enrolment                           probes  speakers  EER %   95% CI   d_sys   min_cllr  rank-1 %  rank-5 %\n'
        '-------------  ----------------------------------  ------  --------  ------  -------  ------  --------  --------  --------\n'
        'ignorant       original enrolment audio            8       4         0.0000  0.0-0.0  0.2632  0.0000    100.0000  -       \n'
        'lazy-informed  leave-one-out within the probe set  8       4         0.0000  0.0-0.0  0.2000  0.0000    100.0000  -       \n'
        '\n'
        'risk: high: speakers in the probe set are re-identifiable from enrolment audio (strongest attacker ignorant: EER 0.0 %, rank-1 100.0 % over 4 speakers (chance 25.0 %), D_sys 0.26)\n'),}


@pytest.fixture(scope="module")
def voices(tmp_path_factory):
    """4 synthetic speakers x 3 clips, ASV lists over them, enrol/probe folders; one embedding cache."""
    root = tmp_path_factory.mktemp("voices")
    spk = synthetic_speaker_folder(root / "speakers", n_speakers=4, files_per_speaker=3)
    asv_lists(spk, root)
    for f in spk.rglob("*.wav"):
        part = root / ("enroll" if f.stem == "utt0" else "probe") / f.parent.name
        part.mkdir(parents=True, exist_ok=True)
        (part / f.name).write_bytes(f.read_bytes())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VOICEGUARD_CACHE", str(root / "cache"))
        mp.chdir(root)
        yield root


RISK_CASES = {
    "asv": (["risk", "asv", "--enroll", "enroll.txt", "--trials", "trials.txt", "--audio-dir", "flac"],
            ["attack", "n", "accepted", "mean_score", "fools_asv", "eer", "threshold", "p_miss", "p_fa_nontarget",
             "p_fa_spoof", "spf_eer", "sasv_eer"]),
    "compare": (["risk", "compare", "speakers/spk0/utt0.wav", "speakers/spk0/utt1.wav"],
                ["a", "b", "cosine", "threshold", "same_speaker"]),
    "reid": (["risk", "reid", "--enroll", "enroll", "--probe", "probe", "--bootstrap", "200"],
             ["attacker", "enrolment", "probes", "speakers", "eer", "eer_ci_low", "eer_ci_high", "d_sys", "min_cllr",
              "rank1", "rank5"]),
}


@pytest.mark.parametrize("name", list(RISK_CASES))
def test_risk_formats(voices, name):
    args, columns = RISK_CASES[name]
    assert invoke(*args)[0] == RISK_GOLDEN[name]
    doc = check_formats(args, columns)
    rows = [json.loads(x) for x in invoke(*args, "--format", "jsonl")[0].splitlines()]
    if name == "asv":
        assert doc["scored"] == 24 and [r["attack"] for r in rows] == ["all", "A99"]
        assert rows[0]["eer"] == doc["metrics"]["eer"] and rows[1]["n"] == doc["per_attack"][0]["n"] == 4
    elif name == "compare":
        assert doc["same_speaker"] is True and rows[0]["cosine"] == doc["cosine"]
    else:
        assert [r["attacker"] for r in rows] == [a["scenario"] for a in doc["attackers"]] == ["ignorant",
                                                                                            "lazy-informed"]
        assert rows[0]["eer_ci_low"] == doc["attackers"][0]["link"]["eer_ci"][0]


def _watermark_result(passed: bool):
    from voiceguard.eval.risk.checks import WatermarkRiskResult

    if passed:
        return WatermarkRiskResult({"backend": "resemblyzer"}, "audioseal", 12, 0.99123, 0.97011, 0.9755, 0.0125,
                                   0.025, 24, 108, True, (("a.wav", 0.99), ("b.wav", 0.98)))
    return WatermarkRiskResult({"backend": "resemblyzer"}, "voice-swap", 3, 0.5, 0.25, 0.3, None, None, 0, 0, False,
                               (("c.wav", 0.5),))


WATERMARK_GOLDEN = {  # printed by the earlier code for the two results above
    True: ("12 files, engine audioseal, backend resemblyzer\n"
           "cosine original vs watermarked: mean 0.9912   min 0.9701   5th percentile 0.9755   (goal: mean >= 0.98)\n"
           "ASV EER before 1.25 %   after 2.50 %   (24 target / 108 non-target pairs; after = test side "
           "watermarked)\n"
           "verdict: identity preserved\n"),
    False: ("3 files, engine voice-swap, backend resemblyzer\n"
            "cosine original vs watermarked: mean 0.5000   min 0.2500   5th percentile 0.3000   (goal: mean >= "
            "0.98)\n"
            "verdict: IDENTITY CHANGED\n"),
}


@pytest.mark.parametrize("passed", [True, False])
def test_risk_watermark_formats(voices, monkeypatch, passed):
    import voiceguard.eval.risk.checks as checks

    res = _watermark_result(passed)
    monkeypatch.setattr(checks, "watermark_check", lambda *a, **k: res)  # the check itself: tests/test_risk.py
    args = ["risk", "watermark", "speakers", "--engine", "spread-spectrum"]
    assert invoke(*args)[0] == WATERMARK_GOLDEN[passed]
    doc = check_formats(args, ["path", "cosine"])
    assert doc == json.loads(json.dumps(res.to_dict()))
    assert invoke(*args, "--format", "csv")[0].splitlines()[1:] == [f"{p},{c}" for p, c in res.per_file]
