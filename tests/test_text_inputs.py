"""Issue #16 section 6: every text input read through one reader (BOM, CRLF, UTF-16), protocol formats sniffed
from the content with --protocol-format everywhere, numeric CLI options validated, tied-score EER warning."""
from __future__ import annotations

import json
import os

import click
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings, strategies as st

from voiceguard import protocols as P
from voiceguard.cli import cli
from voiceguard.cli.options import FiniteFloatRange
from voiceguard.errors import ProtocolError, RiskError, ScoreError, VoiceguardError
from voiceguard.metrics import cm as M
from voiceguard.cli.eval import BootstrapCount
from voiceguard.metrics.scores import evaluate_score_file, read_asv_scores, read_cm_scores
from voiceguard.files import read_rows, read_text

BOM = "\ufeff"


def _invoke(*args: str):
    """In-process CLI run (fast): (exit code, stdout, stderr)."""
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def _scores(tmp_path, rng=None, n=40):
    rng = rng or np.random.default_rng(0)
    rows = [f"B{i} - bonafide {rng.normal(2, 1):.5f}\n" for i in range(n)]
    rows += [f"S{i} A0{1 + i % 2} spoof {rng.normal(0, 1):.5f}\n" for i in range(n)]
    proto = [f"SPK B{i} - - bonafide\n" for i in range(n)] + [f"SPK S{i} - A0{1 + i % 2} spoof\n" for i in range(n)]
    (tmp_path / "four.txt").write_text("".join(rows))
    (tmp_path / "two.txt").write_text("".join(f"{r.split()[0]} {r.split()[3]}\n" for r in rows))
    (tmp_path / "proto.txt").write_text("".join(proto))
    return tmp_path


# --------------------------------------------------------------------------- 1. byte-order marks (regressions)
def test_bom_score_file_and_protocol_join(tmp_path):
    """A BOM glued to the first id made it 'not in the protocol' (and the protocol's first id unknown)."""
    d = _scores(tmp_path)
    for name in ("two.txt", "proto.txt"):
        (d / name).write_text(BOM + (d / name).read_text(), encoding="utf-8")
    scores, _ = read_cm_scores(d / "two.txt")
    assert "B0" in scores and not any(u.startswith(BOM) for u in scores)
    assert P.read_protocol(d / "proto.txt")[0].speaker == "SPK"
    m = evaluate_score_file(d / "two.txt", d / "proto.txt")
    assert m.eer.n_bonafide == 40 and m.eer.n_spoof == 40


def test_bom_in_the_wild_meta_csv(tmp_path):
    """In-the-Wild meta.csv saved by a spreadsheet: the BOM hid the 'file' column."""
    p = tmp_path / "meta.csv"
    p.write_bytes(("\ufefffile,speaker,label\r\n0.wav,Alec Guinness,spoof\r\n1.wav,Alec Guinness,bona-fide\r\n")
                  .encode("utf-8"))
    assert P.detect_format(p) == "in-the-wild"
    t = P.read_protocol(p)
    assert [(x.utt_id, x.label, x.speaker) for x in t] == [("0", "spoof", "Alec Guinness"),
                                                          ("1", "bonafide", "Alec Guinness")]


def test_bom_headers_of_asvspoof5_and_score_files(tmp_path):
    a5 = tmp_path / "a5.tsv"
    a5.write_text(BOM + "SPEAKER_ID FLAC_FILE_NAME GENDER CODEC CODEC_Q CODEC_SEED ATTACK_TAG ATTACK_LABEL KEY TMP\n"
                  "E_1 E_01 F - - - AC3 A16 spoof -\nE_2 E_02 M - 0 - bonafide - bonafide -\n")
    assert [t.utt_id for t in P.read_protocol(a5)] == ["E_01", "E_02"]
    s = tmp_path / "s.txt"
    s.write_text(BOM + "filename cm-score\n# a comment\nE_01 -1.5\nE_02 2.5\n")
    assert read_cm_scores(s)[0] == {"E_01": -1.5, "E_02": 2.5}


def test_bom_in_asv_lists_label_csv_and_yaml(tmp_path):
    from voiceguard.attacks import load_suite
    from voiceguard.eval.risk.checks import read_asv_enrollment
    from voiceguard.eval.risk.labels import labels_from_csv

    enroll = tmp_path / "enroll.txt"
    enroll.write_text(BOM + "LA_0001 u1,u2\nLA_0002 u3\n")
    assert sorted(read_asv_enrollment(enroll)) == ["LA_0001", "LA_0002"]
    asv = tmp_path / "asv.txt"
    asv.write_text(BOM + "bonafide target 1\nbonafide nontarget 0\nA01 spoof 0.5\n")
    assert [a.tolist() for a in read_asv_scores(asv)] == [[1.0], [0.0], [0.5]]
    labels = tmp_path / "labels.csv"
    labels.write_text(BOM + "path;speaker\r\na.wav;s1\r\n")  # a spreadsheet's ';' CSV with a BOM
    assert [(f.speaker, f.key) for f in labels_from_csv(labels)] == [("s1", "bonafide")]
    suite = tmp_path / "suite.yaml"  # a YAML config saved as UTF-16 ("Unicode text")
    suite.write_bytes("name: mine\ndescription: d\nattacks:\n  - gain: {gain_db: -3}\n".encode("utf-16"))
    assert load_suite(suite).name == "mine"


def test_every_encoding_and_line_end_reads_the_same(tmp_path):
    text = "S1 U1 - - bonafide\n\n# comment\nS1 U2 - A01 spoof\n"
    want = [(1, ["S1", "U1", "-", "-", "bonafide"]), (4, ["S1", "U2", "-", "A01", "spoof"])]
    for i, (enc, end) in enumerate([("utf-8", "\n"), ("utf-8-sig", "\r\n"), ("utf-16", "\r\n"), ("utf-16-be", "\n"),
                                    ("utf-32", "\n"), ("utf-8", "\r")]):
        data = text.replace("\n", end)
        p = tmp_path / f"p{i}.txt"
        p.write_bytes((BOM + data).encode(enc) if enc == "utf-16-be" else data.encode(enc))
        assert list(read_rows(p, ProtocolError, "protocol file")) == want, (enc, end)


@pytest.mark.parametrize("content,fragment", [
    (b"S1 U1 - - bonafide\nS1 \xff\xfe U2 - - spoof\n", "line 2: not a text protocol file"),
    (b"S1 U1 - - bonafide\n\x00\x00\x00\n", "line 2: NUL byte"),
    (b"x" * ((1 << 20) + 10), "line 1 is longer than 1 MiB"),
])
def test_binary_input_is_a_clean_error(tmp_path, content, fragment):
    p = tmp_path / "bin.txt"
    p.write_bytes(content)
    with pytest.raises(ProtocolError, match=fragment) as e:
        P.read_protocol(p, "asvspoof2019")
    assert e.value.source == str(p)


def test_not_a_regular_file(tmp_path):
    link = tmp_path / "null.txt"
    os.symlink(os.devnull, link)
    with pytest.raises(ScoreError, match="not a regular file"):
        read_cm_scores(link)
    with pytest.raises(VoiceguardError, match="is a directory"):
        read_text(tmp_path, VoiceguardError, "config")


# --------------------------------------------------------------------------- 2. formats sniffed from the content
@pytest.mark.parametrize("name,text,fmt", [
    ("meta.txt", "file,speaker,label\n0.wav,A,spoof\n", "in-the-wild"),
    ("meta", "file;speaker;label\n0.wav;A;bona-fide\n", "in-the-wild"),
    ("list.tsv", "path\tlabel\nx.wav\treal\n", "csv"),
    ("list.dat", '"path","label"\n"x y.wav","fake"\n', "csv"),
    ("p.csv", "S1 U1 - - bonafide\n", "asvspoof2019"),  # a misnamed whitespace protocol
])
def test_format_from_content_not_suffix(tmp_path, name, text, fmt):
    p = tmp_path / name
    p.write_text(text)
    assert P.detect_format(p) == fmt
    assert len(P.read_protocol(p)) == 1


def test_unknown_format_points_to_the_option(tmp_path):
    p = tmp_path / "odd.txt"
    p.write_text("a b c\n")
    with pytest.raises(ProtocolError, match="line 1: cannot tell .* give it with --protocol-format"):
        P.read_protocol(p)


def test_protocol_format_option_on_every_protocol_command():
    want = {("eval", "eer"), ("data", "protocol"), ("detect", "train"), ("detect", "score"), ("risk", "watermark"),
            ("risk", "reid")}
    have = {path for path, cmd in _commands(cli) if any("--protocol-format" in p.opts for p in cmd.params)}
    assert want <= have
    for path, cmd in _commands(cli):
        for p in cmd.params:
            if "--protocol-format" in p.opts:
                assert list(p.type.choices) == list(P.PROTOCOL_FORMATS), path


def test_eval_eer_protocol_format(tmp_path):
    d = _scores(tmp_path)
    csv = d / "labels.list"  # no .csv suffix: sniffed; and forced with --protocol-format
    csv.write_text("path,label,attack\n" + "".join(
        f"{u}.flac,{'bonafide' if u.startswith('B') else 'spoof'},{'-' if u.startswith('B') else 'A01'}\n"
        for u in (ln.split()[0] for ln in (d / "two.txt").read_text().splitlines())))
    auto = _invoke("eval", "eer", "--scores", str(d / "two.txt"), "--protocol", str(csv), "--json")
    forced = _invoke("eval", "eer", "--scores", str(d / "two.txt"), "--protocol", str(csv), "--protocol-format",
                     "csv", "--json")
    assert auto[0] == forced[0] == 0 and json.loads(auto[1])["eer"] == json.loads(forced[1])["eer"]
    wrong = _invoke("eval", "eer", "--scores", str(d / "two.txt"), "--protocol", str(csv), "--protocol-format",
                    "asvspoof2019")
    assert wrong[0] == 2 and "expected SPEAKER UTT" in wrong[2] and str(csv) in wrong[2]


# --------------------------------------------------------------------------- 3. numeric options
@pytest.mark.parametrize("args,fragment", [
    (["--seed", "-5"], "'--seed': -5 is not in the range"),
    (["--bootstrap", "99999999999999999999"], "above the cap of 100000"),
    (["--bootstrap", "2000000"], "above the cap of 100000"),
    (["--bootstrap", "-1"], "-1 is negative"),
    (["--bootstrap", "1"], "too few for a 95 % interval"),
    (["--seed", "4294967296"], "'--seed': 4294967296 is not in the range"),
])
def test_eval_eer_option_ranges(tmp_path, args, fragment):
    code, _, err = _invoke("eval", "eer", "--scores", str(_scores(tmp_path) / "four.txt"), *args)
    assert code == 2 and fragment in err and "internal error" not in err


def test_bootstrap_interval_contains_the_eer_and_reports_progress(tmp_path):
    d = _scores(tmp_path)
    code, out, err = _invoke("eval", "eer", "--scores", str(d / "four.txt"), "--bootstrap", "200", "--json")
    j = json.loads(out)
    assert code == 0 and j["eer_ci"][0] <= j["eer"] <= j["eer_ci"][1]
    assert j["bootstrap"] == {"resamples": 200, "seed": 0, "confidence": 0.95, "method": "percentile"}
    calls = []
    M.bootstrap_eer(np.arange(30.0), np.arange(30.0) - 10, n_boot=5, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(i, 5) for i in range(1, 6)]  # the CLI turns these into voiceguard.progress lines
    with pytest.raises(ValueError, match="seed"):
        M.bootstrap_eer(np.arange(30.0), np.arange(30.0) - 10, n_boot=5, seed=-5)
    with pytest.raises(ValueError, match="n_boot"):
        M.bootstrap_eer(np.arange(30.0), np.arange(30.0) - 10, n_boot=-1)


def _commands(group, path=()):
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, path + (name,))
        else:
            yield path + (name,), cmd


def _numeric_params():
    out = []
    for path, cmd in _commands(cli):
        for p in cmd.params:
            if isinstance(p.type, (click.types.IntParamType, click.types.FloatParamType, BootstrapCount)):
                out.append((" ".join(path), p))
    return out


def test_every_numeric_option_is_bounded():
    """The kind behind `--seed -5` / `--bootstrap 1e20`: no numeric option of any command is unbounded."""
    params = _numeric_params()
    assert len(params) > 20
    for where, p in params:
        t = p.type
        if isinstance(t, click.types.FloatParamType):
            assert isinstance(t, FiniteFloatRange), (where, p.opts)
        elif not isinstance(t, BootstrapCount):
            assert isinstance(t, click.IntRange) and t.min is not None and t.max is not None, (where, p.opts)
            assert t.max < 2 ** 63, (where, p.opts)
        if "--seed" in p.opts:
            assert (t.min, t.max) == (0, 2 ** 32 - 1), where


_HUGE = st.sampled_from(["99999999999999999999", "-99999999999999999999", "1e400", "-1e400", "nan", "inf", "-inf",
                         "-1", "0", "1e-300", "2147483648", "18446744073709551616", " 3 ", "0x10", "1_000", ""])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_numeric_options_reject_or_accept_cleanly(data):
    where, p = data.draw(st.sampled_from(_numeric_params()))
    value = data.draw(st.one_of(_HUGE, st.integers().map(str), st.floats().map(repr)))
    ctx = click.Context(click.Command(where))
    try:
        v = p.type.convert(value, p, ctx)
    except click.BadParameter:
        return
    assert np.isfinite(v), (where, p.opts, value)
    if isinstance(p.type, BootstrapCount):
        assert v == 0 or M.BOOTSTRAP_MIN <= v <= M.BOOTSTRAP_MAX
    else:
        assert (p.type.min is None or v >= p.type.min) and (p.type.max is None or v <= p.type.max)


def test_data_help_no_longer_says_joins_later():
    code, out, _ = _invoke("data", "--help")
    assert code == 0 and "joins later" not in out and "build" in out


# --------------------------------------------------------------------------- 4. tied scores
def test_tied_scores_warn_and_keep_the_official_eer(tmp_path):
    rng = np.random.default_rng(1)
    bona = np.where(np.arange(100) < 40, 1.0, rng.normal(2, 1, 100))
    spoof = np.where(np.arange(100) < 40, 1.0, rng.normal(0, 1, 100))
    p = tmp_path / "tied.txt"
    p.write_text("".join(f"B{i} - bonafide {float(s)!r}\n" for i, s in enumerate(bona))
                 + "".join(f"S{i} A01 spoof {float(s)!r}\n" for i, s in enumerate(spoof)))
    code, out, err = _invoke("eval", "eer", "--scores", str(p), "--json")
    j = json.loads(out)
    assert code == 0 and j["eer"] == M.compute_eer(bona, spoof)[0]
    assert j["eer_ties"]["ill_defined"] and j["eer_ties"]["bonafide"] == pytest.approx(0.4)
    assert j["eer_ties"]["eer_other_order"] != j["eer"]
    warn = [ln for ln in err.splitlines() if "ill-defined" in ln]
    assert len(warn) == 1 and warn[0].startswith("voiceguard: warning: 40.0% of bona fide")
    untied = M.eer_ties(rng.normal(2, 1, 100), rng.normal(0, 1, 100))
    assert not untied.ill_defined and untied.eer_official == untied.eer_other_order


def test_label_file_told_from_protocol_by_content(tmp_path):
    from voiceguard.eval.risk.labels import is_label_csv

    (tmp_path / "a.csv").write_text("path,speaker\nx.wav,s\n")
    (tmp_path / "meta.csv").write_text(BOM + "file,speaker,label\nx.wav,s,spoof\n")
    (tmp_path / "p.txt").write_text("S1 U1 - - bonafide\n")
    assert is_label_csv(tmp_path / "a.csv")
    assert not is_label_csv(tmp_path / "meta.csv") and not is_label_csv(tmp_path / "p.txt")
    assert not is_label_csv(tmp_path / "missing.csv")
    with pytest.raises(RiskError, match="no such label file"):
        from voiceguard.eval.risk.labels import labels_from_csv
        labels_from_csv(tmp_path / "missing.csv")


def test_report_config_protocol_format_and_bom(tmp_path):
    from voiceguard.eval.report.config import ReportConfigError, load_report_config

    base = ("name: t\nseed: 0\ndetectors: [vg-specnet]\n"
            "data: {layout: protocol, path: d, protocol: meta.csv, audio_dir: a, protocol_format: %s}\n")
    good = tmp_path / "good.yaml"
    good.write_text(BOM + base % "in-the-wild", encoding="utf-8")
    assert load_report_config(good).data.protocol_format == "in-the-wild"
    bad = tmp_path / "bad.yaml"
    bad.write_text(base % "timit")
    with pytest.raises(ReportConfigError, match="data.protocol_format must be one of auto, asvspoof2019"):
        load_report_config(bad)
