"""`voiceguard eval report`: a tiny config end to end (corpus built from speech, two detectors, attacks, both
watermark engines, ASV and re-identification), determinism, the stage cache, config errors, the README block."""
from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np

import pytest
import yaml

from voiceguard.eval.report import (Report, ReportConfigError, ReportError, headline_markdown, load_report_config,
                                    parse_config, readme_block, run_report, update_readme)
from voiceguard.eval.report.render import README_BEGIN, README_END

from helpers import REPO, run_cli, synthetic_speaker_folder

TINY = {
    "name": "tiny",
    "seed": 0,
    "detectors": ["vg-specnet", {"label": "specnet-uncalibrated", "model": "specnet",
                                 "checkpoint": str(REPO / "detect" / "cards" / "vg-specnet.pt")}],
    "attacks": {"suites": [[{"none": {}}, {"label": "noise", "white_noise": {"sigma": 0.02}}]], "max_trials": 12},
    "watermark": {"engines": ["spread-spectrum", "audioseal"], "files": 2,
                  "suite": [{"none": {}}, {"lowpass": {"cutoff_hz": 3000}}]},
    "risk": {"asv": True, "reid": {"speakers": 3, "attacks": [{"label": "quiet", "gain": {"factor": 0.5}}]}},
}


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    return synthetic_speaker_folder(tmp_path_factory.mktemp("speech") / "src", n_speakers=8, files_per_speaker=3)


def _config(tmp: Path, speech: Path, **over) -> Path:
    data = {**TINY, "data": {"layout": "corpus", "path": str(tmp / "corpus"),
                             "build": {"source": str(speech), "config": "tiny"}}, **over}
    p = tmp / "tiny.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


#: reads of the shared embedding cache (~/.cache/voiceguard/embeddings) during the first report run
SHARED_CACHE_READS: list[str] = []


@pytest.fixture(scope="module")
def first(tmp_path_factory, speech):
    from voiceguard.eval.risk.embed import EmbeddingCache

    tmp = tmp_path_factory.mktemp("report")
    cfg = load_report_config(_config(tmp, speech))
    get = EmbeddingCache.get
    with pytest.MonkeyPatch.context() as mp:  # record whether the report reads embeddings other runs left
        mp.setattr(EmbeddingCache, "get", lambda self, key: SHARED_CACHE_READS.append(key) or get(self, key))
        return tmp, cfg, run_report(cfg, tmp / "out", log=lambda m: None)


def test_tiny_report_has_every_part(first):
    tmp, cfg, rep = first
    out = tmp / "out"
    r = rep.results
    assert (tmp / "corpus" / "protocols" / "VG.cm.eval.trl.txt").is_file()  # built on the first run
    assert set(r.detection) == {"vg-specnet", "specnet-uncalibrated"}
    det = r.detection["vg-specnet"]
    assert 0 <= det.metrics.eer <= 1 and det.metrics.min_tdcf_2021 is not None
    assert set(det.conditions) == {"custom1/none", "custom1/noise"}
    # the calibrated and the raw checkpoint are the same network: same EER, different LLR scale
    raw = r.detection["specnet-uncalibrated"]
    assert raw.metrics.eer == det.metrics.eer and not raw.calibrated and det.calibrated
    assert set(r.watermark) == {"spread-spectrum", "audioseal"}
    assert r.watermark["spread-spectrum"].attacks["none"].tpr == 1.0
    assert r.asv.metrics.n_target > 0 and r.tdcf_asv.startswith("voiceguard's own ASV")
    assert list(r.reid) == ["original", "watermarked (spread-spectrum)", "quiet"]
    names = {Path(f.file).name for f in rep.figures}
    assert names == {"det_curves.png", "per_attack_eer.png", "detector_attack_heatmap.png",
                     "watermark_attack_heatmap.png", "asv_scores.png", "reid_histograms.png"}
    for f in rep.figures:
        assert (out / f.file).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 6 and 'src="figures/' not in html  # self-contained
    md = (out / "report.md").read_text()
    for needle in ("min t-DCF", "seed 0", "torch", "Timings", "EER: the error rate"):
        assert needle in md
    assert json.loads((out / "report.json").read_text())["results"] == r.to_dict()
    assert (out / "work" / "scores" / "vg-specnet.eval.txt").is_file()  # official-format score file


def test_report_states_what_its_figures_depend_on(first):
    """Issue #16: the same corpus, config and seed gave other figures on another machine (the Opus condition's
    EER: another libopus). The report states the environment: package versions, torch threads and CPU kernels,
    ffmpeg, its codec libraries and a digest of each encoder's output, the corpus's TTS tools."""
    from voiceguard.attacks.codecs import codec_available
    from voiceguard.eval.report.environment import TORCH_THREADS

    tmp, cfg, rep = first
    env = rep.environment
    assert env.hardware.torch_threads == TORCH_THREADS and env.hardware.torch_cpu_kernels
    assert env.packages["torch"] and env.packages["numpy"] == np.__version__
    codecs = env.codecs
    assert codecs.ffmpeg and codecs.libav["libavcodec"].count(".") == 2
    for name in ("opus", "mp3", "mulaw", "gsm"):
        if codec_available(name):
            assert re.fullmatch(r"lib\w+:[0-9a-f]{16}|pcm_mulaw:[0-9a-f]{16}", codecs.bitstreams[name])
    if codec_available("opus") and sys.platform == "linux":  # Debian's ffmpeg links libopus dynamically
        assert codecs.libraries["libopus"].startswith("libopus 1.")
    assert env.corpus_tools["numpy"]  # the built corpus's card
    md = (tmp / "out" / "report.md").read_text()
    assert "## What the figures depend on" in md and f"{TORCH_THREADS} threads" in md
    if codec_available("opus"):
        assert codecs.bitstreams["opus"] in md
    assert not SHARED_CACHE_READS  # embeddings another run (of any version) left are never used


def test_report_json_is_the_typed_report_and_reads_back_exactly(first):
    """report.json is ``Report.to_dict()`` (same keys, values and order); read back with ``from_dict`` it gives
    the same JSON and the same results (the score arrays the figures used are not part of it)."""
    tmp, cfg, rep = first
    text = (tmp / "out" / "report.json").read_text()
    assert json.dumps(rep.to_dict(), indent=1) + "\n" == text
    back = Report.from_dict(json.loads(text))
    assert json.dumps(back.to_dict(), indent=1) + "\n" == text
    assert back.results == rep.results and back.figures == rep.figures and back.environment == rep.environment
    det = rep.results.detection["vg-specnet"]
    assert det.bonafide.size + det.spoof.size == det.metrics.n_bonafide + det.metrics.n_spoof
    assert back.results.detection["vg-specnet"].bonafide is None and rep.results.asv.scores["target"].size
    assert Report.load(tmp / "out").to_dict() == back.to_dict()


def test_committed_report_reads_back_exactly():
    """docs/report/report.json: from_dict -> to_dict is the same JSON, key order included, its environment block
    is read into fields, and the renderers read it."""
    from voiceguard.eval.report.render import report_blocks, to_markdown

    text = (REPO / "docs" / "report" / "report.json").read_text()
    report = Report.from_dict(json.loads(text))
    assert report.to_dict() == json.loads(text)
    assert json.dumps(report.to_dict(), indent=1) + "\n" == text
    assert report.results.detection["vg-specnet"].metrics.min_tdcf_2021 is not None
    assert "torch" in report.environment.packages and "## Spoof detectors" in to_markdown(report_blocks(report))
    older = json.loads(text)  # a report written before the environment block had packages, codecs, corpus tools
    older["environment"] = {k: v for k, v in older["environment"].items() if k in ("versions", "hardware")}
    assert Report.from_dict(older).to_dict() == older and Report.from_dict(older).environment.packages is None


def test_evaluate_is_the_front_door(first, tmp_path):
    """``voiceguard.api.evaluate`` takes a config file (or name, or ReportConfig) and returns the typed report;
    with the same work folder every stage is reused."""
    from voiceguard.api import evaluate

    tmp, cfg, rep = first
    got = evaluate(str(tmp / "tiny.yaml"), tmp_path / "o", work=tmp / "out" / "work", log=lambda m: None)
    assert isinstance(got, Report) and got.results == rep.results
    assert all(t.cached for k, t in got.timings.items() if k != "data")
    assert (tmp_path / "o" / "report.json").is_file()


def test_one_seeding_rule_and_the_cache_names_the_code_that_computes():
    from voiceguard.eval.report import stage

    assert stage.file_seed(0, 5) == 5 and stage.file_seed(3, 2) == 3 * 100_003 + 2
    for mod in ("stage", "data", "detection", "watermark", "risk"):
        assert f"voiceguard.eval.report.{mod}" in stage._CACHED_CODE
    for mod in ("cm", "asv", "watermark", "scores"):
        assert f"voiceguard.metrics.{mod}" in stage._CACHED_CODE
    assert len(stage._code_digest()) == 16  # every module named exists


def test_thread_count_is_fixed_during_a_report_and_restored(first, tmp_path):
    import torch

    from voiceguard.eval.report.environment import TORCH_THREADS

    tmp, cfg, rep = first
    before = torch.get_num_threads()
    torch.set_num_threads(1 if TORCH_THREADS != 1 else 3)
    try:
        want = torch.get_num_threads()
        again = run_report(cfg, tmp_path / "o", tmp / "out" / "work", log=lambda m: None)
        assert torch.get_num_threads() == want  # restored
    finally:
        torch.set_num_threads(before)
    assert again.environment.hardware.torch_threads == TORCH_THREADS
    assert all(t.cached for k, t in again.timings.items() if k != "data")  # same environment key


def test_stage_cache_key_names_the_environment(tmp_path):
    """A stage computed under another codec build (or packages, threads, CPU kernels) is recomputed."""
    from voiceguard.eval.report.environment import codec_bitstreams
    from voiceguard.eval.report.stage import Stage, StageCache

    calls = []
    stage = Stage("s", {"x": 1}, lambda: calls.append(1) or {"v": len(calls)})
    for env, cached in (({"opus": "libopus:aaaa"}, False), ({"opus": "libopus:aaaa"}, True),
                        ({"opus": "libopus:bbbb"}, False)):
        cache = StageCache(tmp_path, log=lambda m: None, environment=env)
        cache.run(stage)
        assert cache.timings["s"]["cached"] is cached, env
    assert len(calls) == 2
    exe = shutil.which("ffmpeg")
    if exe:  # encoding is deterministic run to run: the digests are stable
        assert codec_bitstreams(exe) == codec_bitstreams(exe)


def test_same_config_and_seed_reproduce_the_numbers(first, tmp_path):
    tmp, cfg, rep = first
    again = run_report(cfg, tmp_path / "out2", log=lambda m: None)  # fresh work folder: nothing cached
    assert not any(t.cached for t in again.timings.values())
    assert json.dumps(again.results.to_dict(), sort_keys=True) == json.dumps(rep.results.to_dict(), sort_keys=True)
    for f in rep.figures:
        assert (tmp_path / "out2" / f.file).read_bytes() == (tmp / "out" / f.file).read_bytes()
    assert headline_markdown(again, "cmd") == headline_markdown(rep, "cmd")


def test_reruns_reuse_the_cache_and_resume_a_lost_stage(first, tmp_path):
    tmp, cfg, rep = first
    work = tmp / "out" / "work"
    (work / "cache" / "watermark.audioseal.json").unlink()  # as if the run was killed before this stage
    logs: list[str] = []
    again = run_report(cfg, tmp_path / "o", work, log=logs.append)
    ran = [k for k, t in again.timings.items() if not t.cached]
    assert ran == ["data", "watermark.audioseal"], ran
    assert again.results == rep.results
    assert any("watermark.audioseal: running" in m for m in logs)
    forced = run_report(cfg, tmp_path / "f", work, force=True, log=lambda m: None)
    assert not any(t.cached for t in forced.timings.values())


def test_a_changed_seed_is_a_new_evaluation(first, tmp_path):
    tmp, cfg, rep = first
    other = parse_config({**cfg.raw, "seed": 1, "detectors": ["vg-specnet"], "risk": None, "watermark": None},
                         "seed1")
    with pytest.raises(ReportError, match="built with config 'tiny' and seed 0, the report config asks for 'tiny' "
                                          "and seed 1"):
        run_report(other, tmp_path / "o", tmp / "out" / "work", log=lambda m: None)  # not the corpus seed 1 builds
    data = {k: v for k, v in cfg.raw["data"].items() if k != "build"}  # an existing corpus, used as it is
    other = parse_config({**cfg.raw, "data": data, "seed": 1, "detectors": ["vg-specnet"], "risk": None,
                          "watermark": None}, "seed1")
    got = run_report(other, tmp_path / "o", tmp / "out" / "work", log=lambda m: None)
    assert got.results.data.n_trials == rep.results.data.n_trials
    assert got.timings["detect.vg-specnet.clean"].cached  # same trials, same model
    assert not got.timings["detect.vg-specnet.custom1.noise"].cached  # attack seeds differ


def test_recalibrated_card_is_rescored_and_probes_are_not_enrolment_files(first, tmp_path):
    from voiceguard.eval.report.data import resolve_data
    from voiceguard.eval.report.risk import reid_sets

    tmp, cfg, rep = first
    card = yaml.safe_load((REPO / "detect" / "cards" / "vg-specnet.yaml").read_text())
    shutil.copy(REPO / "detect" / "cards" / "vg-specnet.pt", tmp_path / "vg-specnet.pt")
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(card))
    one = {**cfg.raw, "detectors": [{"label": "mine", "model": str(tmp_path / "mine.yaml")}], "risk": None,
           "watermark": None, "attacks": {}}
    work = tmp_path / "work"
    first_run = run_report(parse_config(one, "a"), tmp_path / "a", work, log=lambda m: None)
    card["calibration"]["scale"] = 2 * card["calibration"]["scale"]  # same weights, new calibration
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(card))
    again = run_report(parse_config(one, "b"), tmp_path / "b", work, log=lambda m: None)
    assert not again.timings["detect.mine.clean"].cached
    a, b = first_run.results.detection["mine"].metrics, again.results.detection["mine"].metrics
    assert a.eer == b.eer and a.cllr != b.cllr  # EER ignores calibration, Cllr does not
    enroll, probe = reid_sets(resolve_data(cfg, log=lambda m: None), 3, 0)
    assert probe and not {f.path for f in enroll} & {f.path for f in probe}


@pytest.mark.parametrize("change, message", [
    ({"colour": 1}, "unknown key(s) colour"),
    ({"data": {"layout": "timit", "path": "x"}}, "data.layout must be one of"),
    ({"data": {"layout": "corpus"}}, "data.path is required"),
    ({"data": {"layout": "protocol", "path": "x", "protocol": "p.txt", "audio_dir": "a", "asv_trials": "t.txt"}},
     "asv_enroll and data.asv_trials go together"),
    ({"detectors": []}, "detectors must be a non-empty list"),
    ({"detectors": ["vg-specnet", "vg-specnet"]}, "labels must be unique"),
    ({"attacks": {"suites": [[{"white_noise": {"loudness": 3}}]]}}, "unknown parameter"),
    ({"attacks": {"suites": ["no-such-suite"]}}, "unknown attack suite"),
    ({"watermark": {"files": 0}}, "watermark.files must be an integer >= 1"),
    ({"risk": {"reid": {"speakers": 1}}}, "risk.reid.speakers must be 0"),
    ({"watermark": {"engines": ["wavmark"]}}, "unknown engine(s) wavmark"),
    ({"watermark": {"engines": None}}, "watermark.engines must be a list"),
    ({"attacks": {"suites": [[{"mp3": "32k"}]]}}, "parameters of 'mp3' must be a mapping"),
    ({"attacks": {"suites": [[{"white_noise": {"sigma": [0.01, 0.02]}}, {"white_noise": {"sigma": [0.1, 0.2]}}]]}},
     "repeated condition label(s) white_noise"),
    ({"risk": {"reid": {"speakers": 2, "attacks": [{"label": "original", "gain": {"factor": 0.5}}]}}},
     "label(s) original are the report's own"),
    ({"name": "../x"}, "name must be letters"),
    ({"detectors": ["vg-specnet", {"label": "vg-specnet!", "model": "vg-specnet"}]}, "labels must be unique"),
    ({"risk": {"backend": "xvector"}}, "risk.backend must be one of"),
])
def test_config_errors_name_the_problem(change, message):
    base = {**TINY, "data": {"layout": "corpus", "path": "c"}}
    with pytest.raises(ReportConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_config({**base, **change}, "cfg.yaml")


def test_shipped_configs_parse_and_env_vars_expand(monkeypatch, tmp_path):
    monkeypatch.delenv("VOICEGUARD_CORPUS", raising=False)
    mini = load_report_config("mini-la")
    assert mini.data.path == "reports/corpus-default" and mini.data.build_config == "default"
    assert [s.name for s in mini.attack_suites] == ["asvspoof21-la"] and mini.risk.reid_speakers == 20
    assert load_report_config(REPO / "configs" / "mini-la.yaml").raw == mini.raw
    monkeypatch.delenv("VOICEGUARD_LA", raising=False)
    with pytest.raises(ReportConfigError, match="VOICEGUARD_LA is not set"):
        load_report_config("asvspoof2019-la")
    monkeypatch.setenv("VOICEGUARD_LA", str(tmp_path))
    la = load_report_config("asvspoof2019-la")
    assert la.data.asv_scores.endswith("ASVspoof2019.LA.asv.eval.gi.trl.scores.txt")
    assert [d.label for d in la.detectors] == ["vg-specnet", "aasist-la19", "aasist-l-la19"]


def test_cli_reports_a_missing_dataset_in_one_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "data": {"layout": "asvspoof2019-la", "path": str(tmp_path / "LA")}}))
    r = run_cli("eval", "report", "--config", str(cfg), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "eval protocol not found" in r.stderr and "ASVspoof2019.LA.cm.eval.trl.txt" in r.stderr
    r = run_cli("eval", "report", "--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "no such config file" in r.stderr
    cfg.write_text(yaml.safe_dump({**TINY, "detectors": [{"model": "specnet", "checkpoint": str(tmp_path / "w.pt")}],
                                   "data": {"layout": "corpus", "path": str(tmp_path / "c")}}))
    r = run_cli("eval", "report", "--config", str(cfg), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "w.pt" in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()  # nothing ran


def test_update_readme_replaces_only_the_marked_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_BEGIN}\nold table\n{README_END}\nrest\n")
    update_readme(readme, "| new | table |\n")
    assert readme.read_text() == f"intro\n{README_BEGIN}\n| new | table |\n{README_END}\nrest\n"
    assert readme_block(readme) == "| new | table |"
    readme.write_text("no markers\n")
    with pytest.raises(Exception, match="needs exactly one"):
        update_readme(readme, "x")
    assert readme.read_text() == "no markers\n"  # untouched


def test_readme_headline_is_the_committed_reports_block():
    """The README's results block is generated from docs/report/report.json, not typed by hand."""
    report = json.loads((REPO / "docs" / "report" / "report.json").read_text())
    command = "voiceguard eval report --config configs/mini-la.yaml --out docs/report"
    assert readme_block(REPO / "README.md") == headline_markdown(report, command).strip()


def _official_trees(corpus: Path, tmp: Path) -> tuple[Path, Path]:
    """The tiny corpus's eval set laid out as the official ASVspoof 2019 LA download (with synthetic organisers'
    ASV scores) and as an In-the-Wild release (WAV files + meta.csv): same audio, other layouts."""
    import numpy as np
    import soundfile as sf

    la = tmp / "LA"
    for d in ("ASVspoof2019_LA_eval", "ASVspoof2019_LA_cm_protocols", "ASVspoof2019_LA_asv_protocols",
              "ASVspoof2019_LA_asv_scores"):
        (la / d).mkdir(parents=True)
    shutil.copytree(corpus / "flac", la / "ASVspoof2019_LA_eval" / "flac")
    prot = corpus / "protocols"
    shutil.copy(prot / "VG.cm.eval.trl.txt", la / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.eval.trl.txt")
    enroll = (prot / "VG.asv.eval.enroll.txt").read_text().splitlines()
    asvp = la / "ASVspoof2019_LA_asv_protocols"
    (asvp / "ASVspoof2019.LA.asv.eval.female.trn.txt").write_text("\n".join(enroll[:1]) + "\n")
    (asvp / "ASVspoof2019.LA.asv.eval.male.trn.txt").write_text("\n".join(enroll[1:]) + "\n")
    shutil.copy(prot / "VG.asv.eval.trl.txt", asvp / "ASVspoof2019.LA.asv.eval.gi.trl.txt")
    rng = np.random.default_rng(7)
    rows = ([f"bonafide target {v:.4f}" for v in rng.normal(3, 1, 60)]
            + [f"bonafide nontarget {v:.4f}" for v in rng.normal(-2, 1, 60)]
            + [f"A07 spoof {v:.4f}" for v in rng.normal(1, 1.5, 60)])
    asv_scores = la / "ASVspoof2019_LA_asv_scores" / "ASVspoof2019.LA.asv.eval.gi.trl.scores.txt"
    asv_scores.write_text("\n".join(rows) + "\n")

    itw = tmp / "itw" / "release_in_the_wild"
    itw.mkdir(parents=True)
    meta = ["file,speaker,label"]
    for i, line in enumerate((prot / "VG.cm.eval.trl.txt").read_text().splitlines()):
        spk, utt, _, _, key = line.split()
        audio, sr = sf.read(corpus / "flac" / f"{utt}.flac", dtype="int16")
        sf.write(itw / f"{i}.wav", audio, sr, subtype="PCM_16")  # same samples as the FLAC
        meta.append(f"{i}.wav,{spk},{'bona-fide' if key == 'bonafide' else 'spoof'}")
    (itw / "meta.csv").write_text("\n".join(meta) + "\n")
    return la, itw.parent


def test_official_layouts_give_the_same_numbers_as_the_corpus(first, tmp_path):
    """ASVspoof 2019 LA layout: t-DCF from the organisers' ASV scores, equal to `eval eer --asv-scores` on the
    report's own score file; In-the-Wild layout (protocol + WAV): the same audio gives the same EER."""
    tmp, cfg, rep = first
    la, itw = _official_trees(tmp / "corpus", tmp_path)
    base = {"name": "official", "seed": 0, "detectors": ["vg-specnet"]}
    la_cfg = parse_config({**base, "data": {"layout": "asvspoof2019-la", "path": str(la)},
                           "risk": {"asv": True}})
    got = run_report(la_cfg, tmp_path / "out-la", log=lambda m: None).results
    assert got.tdcf_asv.startswith("organisers' ASV scores")
    m = got.detection["vg-specnet"].metrics
    want = rep.results.detection["vg-specnet"].metrics
    assert m.eer == want.eer  # same audio, same detector
    assert m.min_tdcf_2021 != want.min_tdcf_2021  # other ASV scores, so another t-DCF
    ref = run_cli("eval", "eer", "--scores", str(tmp_path / "out-la" / "work" / "scores" / "vg-specnet.eval.txt"),
                  "--asv-scores", str(la / "ASVspoof2019_LA_asv_scores" /
                                      "ASVspoof2019.LA.asv.eval.gi.trl.scores.txt"), "--json")
    assert ref.returncode == 0, ref.stderr
    ref = json.loads(ref.stdout)
    assert m.min_tdcf_2021 == pytest.approx(ref["min_tdcf_2021"], abs=1e-12)
    assert m.min_tdcf_2019 == pytest.approx(ref["min_tdcf_2019"], abs=1e-12)
    assert got.asv.metrics.eer == rep.results.asv.metrics.eer  # own ASV on the same lists

    itw_cfg = parse_config({**base, "data": {"layout": "protocol", "path": str(itw),
                                             "protocol": "release_in_the_wild/meta.csv",
                                             "audio_dir": "release_in_the_wild", "ext": ""}, "risk": {}})
    out = run_report(itw_cfg, tmp_path / "out-itw", log=lambda m: None)
    r = out.results
    assert r.detection["vg-specnet"].metrics.eer == want.eer
    assert r.tdcf_asv is None and r.detection["vg-specnet"].metrics.min_tdcf_2021 is None
    assert "min_tdcf_2021" not in r.to_dict()["detection"]["vg-specnet"]["metrics"]  # absent, as before
    assert "no ASV enrolment and trial lists" in r.asv_skipped
    md = (tmp_path / "out-itw" / "report.md").read_text()
    assert "ASV check skipped: the data has no ASV enrolment" in md and "ASV scores for the t-DCF: none" in md
