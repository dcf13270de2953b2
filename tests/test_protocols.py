"""Protocol readers, writers and validation; counts on the real ASVspoof 2019 LA protocols."""
from __future__ import annotations

import pytest

from voiceguard import protocols as P
from voiceguard.errors import ProtocolError

LA19_COUNTS = {  # rows, bona fide, spoof, attacks (official ASVspoof 2019 LA figures)
    "train.trn": (25380, 2580, 22800, [f"A0{i}" for i in range(1, 7)]),
    "dev.trl": (24844, 2548, 22296, [f"A0{i}" for i in range(1, 7)]),
    "eval.trl": (71237, 7355, 63882, [f"A{i:02d}" for i in range(7, 20)]),
}


@pytest.mark.parametrize("split", sorted(LA19_COUNTS))
def test_real_la19_protocols(la19, split):
    path = la19 / f"ASVspoof2019.LA.cm.{split}.txt"
    assert P.detect_format(path) == "asvspoof2019"
    trials = P.read_protocol(path)
    s = P.summarize(trials)
    rows, nb, ns, attacks = LA19_COUNTS[split]
    assert (s.n_trials, s.n_bonafide, s.n_spoof) == (rows, nb, ns)
    assert sorted(s.attacks) == attacks
    assert all(t.attack == "-" for t in trials if t.is_bonafide)


def test_la19_roundtrip(tmp_path, la19):
    trials = P.read_asvspoof2019(la19 / "ASVspoof2019.LA.cm.dev.trl.txt")
    out = P.write_asvspoof2019(tmp_path / "dev.txt", trials)
    assert out.read_text() == (la19 / "ASVspoof2019.LA.cm.dev.trl.txt").read_text()


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_pa19_and_written_format(tmp_path):
    p = _write(tmp_path, "pa.txt", "PA_0079 PA_T_0000001 aaa - bonafide\nPA_0079 PA_T_0000002 bbc AB spoof\n")
    t = P.read_protocol(p)
    assert (t[1].condition, t[1].attack, t[1].label) == ("bbc", "AB", "spoof")
    assert P.format_asvspoof2019(t) == p.read_text()


def test_asvspoof2021_la_and_df(tmp_path):
    la = _write(tmp_path, "la.txt", "LA_0009 LA_E_9332881 alaw ita_tx A07 spoof notrim eval\n"
                                    "LA_0009 LA_E_1000001 none - bonafide bonafide notrim progress\n")
    t = P.read_protocol(la)
    assert P.detect_format(la) == "asvspoof2021"
    assert (t[0].condition, t[0].attack, t[0].label, t[0].extra["subset"]) == ("alaw", "A07", "spoof", "eval")
    assert t[1].is_bonafide
    df = _write(tmp_path, "df.txt", "LA_0043 DF_E_2000026 mp3m4a asvspoof A09 spoof notrim eval traditional_vocoder "
                                    "- - - -\n")
    d = P.read_protocol(df)[0]
    assert (d.condition, d.attack, d.extra["vocoder"], d.extra["source"]) == ("mp3m4a", "A09", "traditional_vocoder",
                                                                               "asvspoof")


def test_asvspoof5(tmp_path):
    p = _write(tmp_path, "a5.tsv", "E_2932 E_0000000001 F - - - AC3 A16 spoof -\n"
                                   "E_2932 E_0000000002 F C05 2 1234 bonafide - bonafide -\n"
                                   "E_2933 E_0000000003 M - 0 - bonafide - bonafide -\n")
    t = P.read_protocol(p)
    assert P.detect_format(p) == "asvspoof5"
    assert (t[0].attack, t[0].condition, t[0].extra["gender"]) == ("A16", "-", "F")
    assert (t[1].label, t[1].condition) == ("bonafide", "C05-2")
    assert t[2].condition == "-"


def test_in_the_wild_and_csv(tmp_path):
    itw = _write(tmp_path, "meta.csv", "file,speaker,label\n0.wav,Alec Guinness,spoof\n1.wav,Alec Guinness,bona-fide\n")
    t = P.read_protocol(itw)
    assert P.detect_format(itw) == "in-the-wild"
    assert [(x.utt_id, x.label, x.speaker) for x in t] == [("0", "spoof", "Alec Guinness"),
                                                          ("1", "bonafide", "Alec Guinness")]
    assert t[0].audio_path(tmp_path) == tmp_path / "0.wav"
    gen = _write(tmp_path, "list.csv", "path,label,attack,speaker,notes\na/x.wav,fake,tts1,s1,hello\nb/y.flac,real,,s2,\n")
    g = P.read_protocol(gen)
    assert [(x.utt_id, x.label, x.attack, x.speaker) for x in g] == [("x", "spoof", "tts1", "s1"),
                                                                     ("y", "bonafide", "-", "s2")]
    assert g[0].extra["notes"] == "hello"


def test_unknown_label_names_file_and_line(tmp_path):
    p = _write(tmp_path, "bad.txt", "S1 U1 - - bonafide\nS1 U2 - A01 maybe\n")
    with pytest.raises(ProtocolError, match=r"bad\.txt: line 2: unknown label 'maybe'"):
        P.read_protocol(p)


def test_duplicated_ids(tmp_path):
    p = _write(tmp_path, "dup.txt", "S1 U1 - - bonafide\nS1 U1 - A01 spoof\nS1 U2 - - bonafide\n")
    with pytest.raises(ProtocolError, match=r"dup\.txt: 1 duplicated utterance id\(s\): U1"):
        P.read_protocol(p)


def test_wrong_columns_and_empty(tmp_path):
    with pytest.raises(ProtocolError, match="line 1: expected SPEAKER UTT - ATTACK KEY"):
        P.read_asvspoof2019(_write(tmp_path, "short.txt", "S1 U1 bonafide\n"))
    with pytest.raises(ProtocolError, match="cannot tell the protocol format"):
        P.read_protocol(_write(tmp_path, "odd.txt", "a b c\n"))
    with pytest.raises(ProtocolError, match="no rows"):
        P.read_protocol(_write(tmp_path, "empty.txt", "\n"))
    with pytest.raises(ProtocolError, match="no such protocol file"):
        P.read_protocol(tmp_path / "missing.txt", "asvspoof2019")
    with pytest.raises(ProtocolError, match="missing \\['label'\\]"):
        P.read_protocol(_write(tmp_path, "nolabel.csv", "path,speaker\na.wav,s\n"))


def test_missing_audio_files_listed_and_counted(tmp_path):
    lines = "".join(f"S1 U{i} - - bonafide\n" for i in range(8))
    trials = P.read_protocol(_write(tmp_path, "p.txt", lines))
    (tmp_path / "U0.flac").write_bytes(b"x")
    with pytest.raises(ProtocolError, match=r"7 of 8 audio files are missing: .*U1\.flac, .*U5\.flac and 2 more"):
        P.check_audio_files(trials, tmp_path, source="p.txt")
