"""The ASVspoof-style corpus builder on synthetic speakers (tiny config): layout, splits, determinism, errors."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import soundfile as sf

from voiceguard.errors import MissingToolError
from voiceguard.eval.corpus import CorpusError, load_config, prepare_corpus
from voiceguard.eval.corpus.shortcuts import FEATURES
from voiceguard.protocols import read_protocol

from helpers import run_cli, synthetic_speaker_folder


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return synthetic_speaker_folder(tmp_path_factory.mktemp("speech") / "src")


@pytest.fixture(scope="module")
def corpus(source, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "c"
    card = prepare_corpus(source, out, "tiny", seed=3)
    assert card.counts["train"]["bonafide"] > 0
    return out


def _protocols(corpus: Path) -> dict[str, list]:
    return {s: read_protocol(corpus / "protocols" / f"VG.cm.{n}.txt")
            for s, n in (("train", "train.trn"), ("dev", "dev.trl"), ("eval", "eval.trl"))}


def test_layout_and_la19_format(corpus):
    protos = _protocols(corpus)
    for split, trials in protos.items():
        assert {t.label for t in trials} == {"bonafide", "spoof"}
        for line in (corpus / "protocols" / f"VG.cm.{dict(train='train.trn', dev='dev.trl', eval='eval.trl')[split]}.txt"
                     ).read_text().splitlines():
            spk, utt, dash, attack, key = line.split(" ")
            assert dash == "-" and utt.startswith(f"VG_{split[0].upper()}_") and key in ("bonafide", "spoof")
            assert (attack == "-") == (key == "bonafide")
        for t in trials:
            info = sf.info(corpus / "flac" / f"{t.utt_id}.flac")
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")


def test_speaker_disjoint_splits_and_attack_design(corpus):
    protos = _protocols(corpus)
    speakers = {s: {t.speaker for t in tr if t.is_bonafide} for s, tr in protos.items()}
    assert not speakers["train"] & speakers["dev"] and not speakers["train"] & speakers["eval"]
    assert not speakers["dev"] & speakers["eval"]
    attacks = {s: {t.attack for t in tr if not t.is_bonafide} for s, tr in protos.items()}
    assert attacks["dev"] == attacks["train"] == {"A01", "A02"}
    assert attacks["eval"] - attacks["train"]  # unseen attacks in eval
    card = json.loads((corpus / "corpus.json").read_text())
    assert card["systems"]["A16"]["same_as"] == "A02" and "eval" in card["systems"]["A16"]["splits"]


def test_card_and_shortcut_report(corpus):
    card = json.loads((corpus / "corpus.json").read_text())
    assert card["seed"] == 3 and card["config"]["name"] == "tiny"
    assert card["counts"]["eval"]["per_attack"]["A16"] == 2
    assert {"numpy", "librosa", "pyworld"} <= set(card["tool_versions"])
    assert card["sources"][0]["files"] == 12 and card["sources"][0]["speakers"] == 6
    for s, segs in card["splits"].items():
        assert len(segs) >= 2
    check = json.loads((corpus / "shortcut_check.json").read_text())
    assert set(check["pooled"]) == {"train", "dev", "eval"}
    assert set(check["pooled"]["eval"]) == set(FEATURES) >= {"duration_s", "leading_silence_s", "trailing_silence_s",
                                                             "rms_dbfs", "spectral_bandwidth_hz", "band_edge_db"}
    assert isinstance(check["pass"], bool)


def test_asv_lists(corpus):
    for split in ("dev", "eval"):
        enroll = (corpus / "protocols" / f"VG.asv.{split}.enroll.txt").read_text().split("\n")
        enrolled = {u for line in enroll if line for u in line.split()[1].split(",")}
        keys = [line.split() for line in (corpus / "protocols" / f"VG.asv.{split}.trl.txt").read_text().splitlines()]
        assert {k[3] for k in keys} == {"target", "nontarget", "spoof"}
        assert not enrolled & {k[1] for k in keys}  # enrollment utterances are never trials


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != "corpus.json":
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_is_byte_identical(source, corpus, tmp_path):
    again = prepare_corpus(source, tmp_path / "again", "tiny", seed=3)
    assert _digest(Path(again.out)) == _digest(corpus)
    other = prepare_corpus(source, tmp_path / "other", "tiny", seed=4)
    assert (Path(other.out) / "protocols" / "VG.cm.eval.trl.txt").read_bytes() != \
        (corpus / "protocols" / "VG.cm.eval.trl.txt").read_bytes()


def test_bad_inputs(tmp_path, source):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CorpusError, match="no audio files found"):
        prepare_corpus(empty, tmp_path / "o1", "tiny")
    junk = tmp_path / "junk"
    (junk / "a").mkdir(parents=True)
    (junk / "a" / "x.wav").write_text("not audio")
    with pytest.raises(CorpusError, match=r"found 0 speaker\(s\) with usable speech"):
        prepare_corpus(junk, tmp_path / "o2", "tiny")
    few = synthetic_speaker_folder(tmp_path / "few", n_speakers=3, files_per_speaker=1)
    with pytest.raises(CorpusError, match=r"found 3 speaker\(s\).*needs at least 6"):
        prepare_corpus(few, tmp_path / "o3", "tiny")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    with pytest.raises(CorpusError, match="not empty"):
        prepare_corpus(source, busy, "tiny")
    with pytest.raises(CorpusError, match="unknown corpus config 'nope'"):
        load_config("nope")


def test_missing_tts_engine_is_named(tmp_path, source, monkeypatch):
    cfg = tmp_path / "tts.yaml"
    cfg.write_text((Path(__file__).parents[1] / "eval/corpus/configs/tiny.yaml").read_text()
                   .replace("A01: {engine: world}", "A01: {engine: espeak, voice: en-us}"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng on this PATH
    with pytest.raises(MissingToolError, match="'espeak-ng' is not installed.*apt-get install espeak-ng"):
        prepare_corpus(source, tmp_path / "o", cfg)


def test_cli_build(source, tmp_path):
    r = run_cli("data", "build", "--source", str(source), "--out", str(tmp_path / "c"), "--config", "tiny")
    assert r.returncode == 0, r.stderr
    assert "shortcut check" in r.stdout and "eval" in r.stdout
    r = run_cli("data", "build", "--source", str(tmp_path / "nowhere"), "--out", str(tmp_path / "d"))
    assert r.returncode == 2 and "source is not a folder" in r.stderr and "Traceback" not in r.stderr
    assert os.path.isdir(tmp_path / "c" / "flac")
