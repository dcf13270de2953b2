"""Voiceprint risk: metrics from their definitions, the backends' loading paths, the cache, the checks and CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from helpers import SHARED, asv_lists, run_cli, synthetic_speaker_folder
from voiceguard.errors import ModelCardError, RiskError
from voiceguard.registry import UnknownNameError
from voiceguard.metrics.cm import compute_eer
from voiceguard.eval.risk import embedders as E
from voiceguard.eval.risk.checks import (asv_check, compare_clips, read_asv_enrollment, read_asv_trials, reid_check,
                                         risk_level, watermark_check)
from voiceguard.eval.risk.embed import embed_arrays, embed_files
from voiceguard.eval.risk.labels import LabeledFile, check_labels, labels_from_csv, labels_from_folder
from voiceguard.metrics.asv import asv_metrics, linkability, rank_k_rates, snorm

LIBRI_TEST = SHARED / "data" / "speech" / "librispeech" / "test-other"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VOICEGUARD_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def resemblyzer():
    return E.load_embedder("resemblyzer")


@pytest.fixture(scope="module")
def speakers(tmp_path_factory) -> Path:
    return synthetic_speaker_folder(tmp_path_factory.mktemp("spk") / "speakers", n_speakers=4, files_per_speaker=3)


# --------------------------------------------------------------------------- metrics
def test_linkability_from_its_definition():
    rng = np.random.default_rng(0)
    same = rng.normal(0, 1, 5000)
    assert linkability(same, rng.normal(0, 1, 5000))[0] < 0.1  # same distributions: nothing to link
    assert linkability(rng.normal(10, 1, 500), rng.normal(0, 1, 500))[0] == pytest.approx(1.0)  # disjoint
    # hand-made histograms: 2 bins, mated 3/4 in bin 1, non-mated 1/4 in bin 1 -> LR 3 in bin 1, 1/3 in bin 0
    mated = np.array([0.1] * 5 + [0.9] * 15)
    non = np.array([0.1] * 15 + [0.9] * 5)
    d_sys, d, edges = linkability(mated, non, n_bins=2)
    assert d[0] == 0 and d[1] == pytest.approx(2 * 3 / 4 - 1)
    assert d_sys == pytest.approx(0.75 * 0.5)  # p(bin 1 | mated) * D(bin 1)


def test_asv_metrics_definitions():
    tgt = np.array([0.9, 0.8, 0.85, 0.7])
    non = np.array([0.1, 0.2, 0.3, 0.75])
    spoof = np.array([0.95, 0.2, 0.5, 0.6])
    m = asv_metrics(tgt, non, spoof)
    assert m.eer == pytest.approx(compute_eer(tgt, non)[0])
    assert m.p_fa_spoof == pytest.approx(np.mean(spoof >= m.threshold))
    assert m.spf_eer == pytest.approx(compute_eer(tgt, spoof)[0])
    assert m.sasv_eer == pytest.approx(compute_eer(tgt, np.concatenate([non, spoof]))[0])
    assert asv_metrics(tgt, non).p_fa_spoof is None


def test_rank_k_and_snorm():
    scores = np.array([[0.9, 0.1, 0.2], [0.5, 0.4, 0.6], [0.1, 0.2, 0.3]])
    r = rank_k_rates(scores, np.array([0, 1, 0]), ks=(1, 2, 3, 5))
    assert r == {1: pytest.approx(1 / 3), 2: pytest.approx(1 / 3), 3: 1.0}  # rank-5 dropped: only 3 speakers
    rng = np.random.default_rng(1)
    enr, tst, coh = (E.normalize_rows(rng.normal(size=(n, 8))) for n in (3, 4, 20))
    full = snorm(enr @ tst.T, enr, tst, coh)
    paired = snorm(np.sum(enr[:3] * tst[:3], 1), enr[:3], tst[:3], coh, paired=True)
    assert np.allclose(np.diag(full[:, :3]), paired)


def test_risk_level_reads_the_strongest_attacker():
    from voiceguard.eval.risk.checks import AttackerResult
    from voiceguard.metrics.asv import link_metrics

    rng = np.random.default_rng(0)
    weak = link_metrics(rng.normal(0, 1, 200), rng.normal(0, 1, 2000))
    strong = link_metrics(rng.normal(4, 1, 200), rng.normal(0, 1, 2000))
    a = AttackerResult("ignorant", "x", weak, {"rank1": 0.1}, None, 200, 10)
    b = AttackerResult("lazy-informed", "y", strong, {"rank1": 0.9}, None, 200, 10)
    assert risk_level((a,))[0] == "low"
    level, text = risk_level((a, b))
    assert level == "high" and "lazy-informed" in text and "rank-1 90.0 %" in text


# --------------------------------------------------------------------------- Resemblyzer backend
def test_resemblyzer_weights_are_pinned_and_verified(tmp_path):
    card = E.find_card("resemblyzer", [E.CARDS_DIR])
    assert card.sha256 == E.sha256_file(E._resemblyzer_weights())
    bad = tmp_path / "encoder.pt"
    bad.write_bytes(E._resemblyzer_weights().read_bytes())
    with pytest.raises(ModelCardError, match="sha256 mismatch"):
        E.ResemblyzerEmbedder(weights=bad, sha256="0" * 64)
    torch.save({"model_state": {"lstm.weight": torch.zeros(2)}}, bad)
    with pytest.raises(ModelCardError, match="not a Resemblyzer"):
        E.ResemblyzerEmbedder(weights=bad)


def test_resemblyzer_matches_the_reference_package(resemblyzer, speakers):
    from resemblyzer import VoiceEncoder, preprocess_wav

    wav = sf.read(speakers / "spk0" / "utt0.wav", dtype="float32")[0]
    ref = VoiceEncoder("cpu", verbose=False).embed_utterance(preprocess_wav(wav))
    ours = resemblyzer.embed(wav)
    assert ours.shape == (256,) and np.abs(ours - ref).max() < 1e-5
    batch = resemblyzer.embed_batch([wav, wav[: wav.size // 2]])  # batched partials = one at a time
    assert np.allclose(batch[0], ours, atol=1e-5)


def test_bad_audio_is_named(resemblyzer):
    with pytest.raises(E.AudioTooShortError, match="clip.wav.*too short"):
        resemblyzer.embed(np.ones(1000, np.float32) * 0.1, "clip.wav")
    with pytest.raises(E.EmptyAudioError, match="silent.wav.*silent"):
        resemblyzer.embed(np.zeros(16000, np.float32), "silent.wav")


# --------------------------------------------------------------------------- SpeechBrain ECAPA backend
HPARAMS = """\
n_mels: 24
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>
mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False
embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: [32, 32, 32, 32, 96]
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: 16
    lin_neurons: 48
modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
"""


def build_ecapa_folder(folder: Path, seed: int = 0) -> Path:
    """A SpeechBrain model folder laid out like spkrec-ecapa-voxceleb, with a randomly initialised small ECAPA."""
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hyperparams.yaml").write_text(HPARAMS)
    torch.manual_seed(seed)
    model = ECAPA_TDNN(24, channels=[32, 32, 32, 32, 96], kernel_sizes=[5, 3, 3, 3, 1], dilations=[1, 2, 3, 4, 1],
                       attention_channels=16, lin_neurons=48)
    torch.save(model.state_dict(), folder / "embedding_model.ckpt")
    return folder


def test_ecapa_loads_a_speechbrain_folder_and_embeds(tmp_path, speakers):
    from speechbrain.lobes.features import Fbank
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
    from speechbrain.processing.features import InputNormalization

    folder = build_ecapa_folder(tmp_path / "ecapa")
    emb = E.load_embedder("ecapa", source=folder)
    assert emb.model_sha256 == E.sha256_file(folder / "embedding_model.ckpt")
    wavs = [sf.read(speakers / f"spk{s}" / "utt0.wav", dtype="float32")[0] for s in range(2)]
    wavs[1] = wavs[1][:20000]
    out = emb.embed_batch(wavs)
    assert out.shape == (2, 48) and np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
    # the same network, built by hand from the checkpoint, gives the same embedding (padding is masked)
    ref = ECAPA_TDNN(24, channels=[32, 32, 32, 32, 96], kernel_sizes=[5, 3, 3, 3, 1], dilations=[1, 2, 3, 4, 1],
                     attention_channels=16, lin_neurons=48)
    ref.load_state_dict(torch.load(folder / "embedding_model.ckpt", weights_only=True))
    ref.eval()
    with torch.no_grad():
        x = torch.from_numpy(wavs[1])[None]
        feats = InputNormalization(norm_type="sentence", std_norm=False)(Fbank(n_mels=24)(x), torch.ones(1))
        direct = E.normalize_rows(ref(feats, torch.ones(1)).reshape(1, -1).numpy())[0]
    assert np.abs(direct - out[1]).max() < 1e-4
    with pytest.raises(ModelCardError, match="sha256 mismatch"):
        E.load_embedder("ecapa", source=folder, sha256="f" * 64)


def test_ecapa_errors_say_what_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelCardError, match="hyperparams.yaml"):
        E.load_embedder("ecapa", source=tmp_path)
    (tmp_path / "hyperparams.yaml").write_text(HPARAMS)
    with pytest.raises(ModelCardError, match="no embedding_model.ckpt"):
        E.load_embedder("ecapa", source=tmp_path)
    with pytest.raises(ModelCardError, match="could not fetch speechbrain/not-here.*huggingface-cli download"):
        E.load_embedder("ecapa", source="speechbrain/not-here", savedir=tmp_path / "sb")
    with pytest.raises(UnknownNameError, match="unknown speaker-embedding backend 'xvector'; known: ecapa, resemblyzer"):
        E.load_embedder("xvector")


def test_ecapa_refuses_a_checkpoint_with_code(tmp_path):
    folder = build_ecapa_folder(tmp_path / "ecapa")
    torch.save({"weights": torch.zeros(1), "callback": print}, folder / "embedding_model.ckpt")  # pickles a function
    with pytest.raises(ModelCardError, match="not a loadable weights-only checkpoint"):
        E.load_embedder("ecapa", source=folder)


# --------------------------------------------------------------------------- files and the cache
def test_embed_files_caches_by_content_and_reports_bad_files(resemblyzer, speakers, tmp_path):
    files = sorted(str(p) for p in speakers.rglob("*.wav"))[:4]
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, np.float32), 16000)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not audio")
    first = embed_files(files + [str(silent), str(broken)], resemblyzer)
    assert first.paths == tuple(files) and first.cached == 0
    assert {Path(p.path).name for p in first.problems} == {"silent.wav", "broken.wav"}
    again = embed_files(files, resemblyzer)
    assert again.cached == 4 and np.array_equal(again.embeddings, first.embeddings)
    renamed = tmp_path / "renamed.wav"
    renamed.write_bytes(Path(files[0]).read_bytes())
    assert embed_files([str(renamed)], resemblyzer).cached == 1  # content hash, not the name
    cache_files = sorted((tmp_path / "cache" / "embeddings").rglob("*.npy"))
    assert len(cache_files) == 4
    cache_files[0].write_bytes(b"garbage")  # a corrupt entry is recomputed, not trusted
    third = embed_files(files, resemblyzer)
    assert third.cached == 3 and np.allclose(third.embeddings, first.embeddings, atol=1e-6)
    arr = sf.read(files[0], dtype="float32")[0]
    a1 = embed_arrays([arr], resemblyzer, ["x"])
    assert a1.cached == 0 and embed_arrays([arr], resemblyzer, ["x"]).cached == 1
    assert np.allclose(a1.embeddings[0], first.embeddings[0], atol=1e-6)


# --------------------------------------------------------------------------- labels
def test_labels_and_their_errors(speakers, tmp_path):
    files = labels_from_folder(speakers)
    assert len(files) == 12 and {f.speaker for f in files} == {"spk0", "spk1", "spk2", "spk3"}
    with pytest.raises(RiskError, match="directly in the folder.*--speaker-from prefix"):
        flat = tmp_path / "flat"
        flat.mkdir()
        sf.write(flat / "1234-55-0001.wav", np.zeros(100, np.float32), 16000)
        labels_from_folder(flat)
    assert labels_from_folder(flat, "prefix")[0].speaker == "1234"
    csv = tmp_path / "labels.csv"
    csv.write_text("path,speaker\nspk0/utt0.wav,alice\nspk1/utt0.wav,bob\n")
    rows = labels_from_csv(csv, root=speakers)
    assert [r.speaker for r in rows] == ["alice", "bob"] and Path(rows[0].path).is_file()
    with pytest.raises(RiskError, match="at least 2"):
        check_labels(files[:3], what="enrolment set")
    with pytest.raises(RiskError, match="at least 2 files; too few for .*spk3.*utt0.wav"):
        check_labels(files[:10], what="enrolment set", min_per_speaker=2)
    clash = [files[0], LabeledFile(files[0].path, "other"), files[5]]
    with pytest.raises(RiskError, match="two different speakers"):
        check_labels(clash, what="probe set")
    with pytest.raises(RiskError, match="do not exist"):
        check_labels([LabeledFile(str(tmp_path / "nope.wav"), "a"), files[5]], what="probe set")


# --------------------------------------------------------------------------- checks
def test_asv_check_writes_scores_that_eval_eer_reads(resemblyzer, speakers, tmp_path):
    from voiceguard.metrics.scores import read_asv_scores

    enroll, trials, audio = asv_lists(speakers, tmp_path)
    out = tmp_path / "asv.txt"
    res = asv_check(read_asv_enrollment(enroll), read_asv_trials(trials), audio, resemblyzer, out=out)
    tgt, non, spoof = read_asv_scores(out)
    assert (tgt.size, non.size, spoof.size) == (8, 12, 4) and res.scored == 24
    assert res.metrics.eer == pytest.approx(compute_eer(tgt, non)[0], abs=1e-6)
    assert [a.attack for a in res.per_attack] == ["A99"] and res.per_attack[0].n == 4
    assert res.metrics.p_fa_spoof == pytest.approx(np.mean(spoof >= res.metrics.threshold), abs=1e-6)
    for k, written in zip(("target", "nontarget", "spoof"), (tgt, non, spoof)):  # the scores behind the metrics
        assert res.scores[k] == pytest.approx(written, abs=1e-6)
    assert "scores" not in res.to_dict()
    with pytest.raises(RiskError, match="exists"):
        asv_check(read_asv_enrollment(enroll), read_asv_trials(trials), audio, resemblyzer, out=out)
    normed = asv_check(read_asv_enrollment(enroll), read_asv_trials(trials), audio, resemblyzer,
                       cohort=[str(p) for p in sorted(audio.glob("spk3_*"))])
    assert normed.normalisation.startswith("s-norm (cohort 3")
    bad = tmp_path / "bad_trials.txt"
    bad.write_text("spk9 spk0_utt1 bonafide target\n")
    with pytest.raises(RiskError, match="no enrolment: spk9"):
        asv_check(read_asv_enrollment(enroll), read_asv_trials(bad), audio, resemblyzer)
    bad.write_text("spk0 spk0_utt1 bonafide target\nspk0 spk1_utt2 A99 spoof\n")
    with pytest.raises(RiskError, match="needs target and non-target trials.*1 target and 0 non-target"):
        asv_check(read_asv_enrollment(enroll), read_asv_trials(bad), audio, resemblyzer)
    bad.write_text("spk0 spk0_utt1 bonafide maybe\n")
    with pytest.raises(RiskError, match="line 1: unknown key 'maybe'"):
        read_asv_trials(bad)


def test_asv_inputs_and_file_lists(speakers, tmp_path):
    from voiceguard.eval.risk.checks import asv_inputs
    from voiceguard.eval.risk.labels import files_to_check, labeled_files

    enroll, trials, audio = asv_lists(speakers, tmp_path)
    inp = asv_inputs(enroll=enroll, trials=trials, audio_dir=audio, cohort=speakers / "spk3")
    assert inp.enrollment == read_asv_enrollment(enroll) and list(inp.trials) == read_asv_trials(trials)
    assert inp.audio_dir == audio and len(inp.cohort) == 3 and inp.n_files == 12
    assert asv_inputs(enroll=enroll, trials=trials, audio_dir=audio).cohort is None
    with pytest.raises(ValueError, match="give a corpus"):
        asv_inputs(enroll=enroll, trials=trials)
    with pytest.raises(ValueError, match="needs a cohort"):
        asv_inputs(enroll=enroll, trials=trials, audio_dir=audio, snorm=True)
    with pytest.raises(RiskError, match="not a voiceguard corpus"):
        asv_inputs(corpus=tmp_path)
    assert labeled_files(speakers) == labels_from_folder(speakers)
    plain = files_to_check(speakers, speaker_from="none")
    assert sorted(plain) == sorted(f.path for f in labels_from_folder(speakers))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RiskError, match="no audio files"):
        files_to_check(empty, speaker_from="none")


def test_load_embedder_and_catalogue(resemblyzer):
    assert E.load_embedder("resemblyzer").info() == resemblyzer.info()
    rows = E.embedder_catalogue()
    assert [r["name"] for r in rows] == sorted(E.EMBEDDERS) and all(r["description"] for r in rows)
    assert list(rows[0]) == list(E.CATALOGUE_COLUMNS)


def test_watermark_does_not_change_identity(resemblyzer, speakers):
    from voiceguard.watermark import load_watermarker

    files = labels_from_folder(speakers)
    res = watermark_check(files, load_watermarker("audioseal"), embedder=resemblyzer)
    # synthetic voices are only a proxy (real-speech figures: bench/bench_risk.py); the check's arithmetic is tested
    assert res.n_files == 12 and res.cosine_min > 0.9 and len(res.per_file) == 12
    assert res.cosine_mean == pytest.approx(np.mean([c for _, c in res.per_file]))
    assert res.eer_before is not None and res.eer_after is not None and res.n_target == 4 * 3 * 2

    class Transparent:  # marks nothing: identity must come out exactly preserved
        name = "transparent"

        def embed(self, audio, sr, message):
            return audio.copy()

    same = watermark_check(files, Transparent(), embedder=resemblyzer)
    assert same.passed and same.cosine_min > 0.9999 and same.eer_after == same.eer_before

    other = sf.read(speakers / "spk3" / "utt2.wav", dtype="float32")[0]

    class VoiceSwap:  # an "engine" that replaces the voice with another speaker's: the check must fail it
        name = "voice-swap"

        def embed(self, audio, sr, message):
            return np.resize(other, audio.shape)

    bad = watermark_check(files, VoiceSwap(), embedder=resemblyzer)
    assert not bad.passed and bad.cosine_mean < res.cosine_mean - 0.1


def test_reid_two_attackers_and_bad_labels(resemblyzer, speakers, tmp_path):
    files = labels_from_folder(speakers)
    enroll = [f for f in files if f.path.endswith("utt0.wav")]
    probe = [f for f in files if not f.path.endswith("utt0.wav")]
    res = reid_check(enroll, probe, resemblyzer, n_boot=50, seed=3)
    ign, lazy = res.attackers
    assert ign.scenario == "ignorant" and ign.n_probes == 8 and ign.n_speakers == 4
    assert lazy.enrollment.startswith("leave-one-out") and lazy.n_probes == 8
    assert ign.link.n_mated == 8 and ign.link.n_nonmated == 24 and ign.rank1_ci is not None
    assert res.risk in ("low", "medium", "high") and res.risk in res.explanation
    again = reid_check(enroll, probe, resemblyzer, n_boot=50, seed=3)
    assert again.to_dict() == res.to_dict()  # seeded bootstrap: reruns reproduce
    lazy_set = reid_check(enroll, probe, resemblyzer, lazy_enroll=enroll)
    assert lazy_set.attackers[1].link.eer == pytest.approx(ign.link.eer)
    ghost = tmp_path / "ghost.wav"
    ghost.write_bytes(Path(probe[0].path).read_bytes())
    with pytest.raises(RiskError, match="not in the enrolment set: ghost"):
        reid_check(enroll, probe + [LabeledFile(str(ghost), "ghost")], resemblyzer)
    with pytest.raises(RiskError, match="needs at least 2"):
        reid_check(enroll[:1], probe, resemblyzer)
    with pytest.raises(RiskError, match="at least 2 files; too few for .*spk0.*utt0.wav"):
        reid_check(enroll, probe, resemblyzer, min_enroll_files=2)


def test_compare_clips(resemblyzer, speakers):
    a, b, c = speakers / "spk0" / "utt0.wav", speakers / "spk0" / "utt1.wav", speakers / "spk3" / "utt0.wav"
    same, diff = compare_clips(a, b, resemblyzer), compare_clips(a, c, resemblyzer)
    assert same.cosine > diff.cosine
    assert same.threshold == resemblyzer.same_speaker_threshold
    t = (same.cosine + diff.cosine) / 2
    assert compare_clips(a, b, resemblyzer, threshold=t).same_speaker is True
    assert compare_clips(a, c, resemblyzer, threshold=t).same_speaker is False


# --------------------------------------------------------------------------- CLI
def test_cli_reid_compare_and_errors(speakers, tmp_path):
    enroll, probe = tmp_path / "enroll", tmp_path / "probe"
    for f in speakers.rglob("*.wav"):
        dest = (enroll if f.stem == "utt0" else probe) / f.parent.name
        dest.mkdir(parents=True, exist_ok=True)
        (dest / f.name).write_bytes(f.read_bytes())
    r = run_cli("risk", "reid", "--enroll", str(enroll), "--probe", str(probe), "--format", "json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert [a["scenario"] for a in d["attackers"]] == ["ignorant", "lazy-informed"]
    r = run_cli("risk", "reid", "--enroll", str(enroll / "spk0"), "--probe", str(probe))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "directly in the folder" in r.stderr
    r = run_cli("risk", "compare", str(speakers / "spk0" / "utt0.wav"), str(tmp_path / "missing.wav"))
    assert r.returncode == 2 and "missing.wav" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("risk", "asv")
    assert r.returncode == 2 and "--corpus" in r.stderr


@pytest.mark.skipif(not LIBRI_TEST.is_dir(), reason="LibriSpeech test-other not found (../shared is absent)")
def test_resemblyzer_separates_real_speakers(resemblyzer):
    """Two utterances each of 4 real readers: every same-speaker pair scores above every other pair."""
    spk = sorted(p for p in LIBRI_TEST.iterdir() if p.is_dir())[:4]
    files = [f for s in spk for f in sorted(s.glob("*.flac"))[:2]]
    emb = embed_files(files, resemblyzer).embeddings
    s = emb @ emb.T
    lab = np.repeat(np.arange(4), 2)
    iu = np.triu_indices(8, 1)
    same = lab[iu[0]] == lab[iu[1]]
    assert s[iu][same].min() > s[iu][~same].max()
