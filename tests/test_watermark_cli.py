"""The watermark CLI end to end (real subprocesses: exit codes, stderr, files on disk)."""
from __future__ import annotations

import json

import numpy as np
import soundfile as sf
from helpers import run_cli, synthetic_speaker_folder
from test_watermark import speechlike

DSP = ("--engine", "spread-spectrum")


def _write(path, x, sr, subtype="PCM_16"):
    sf.write(path, np.asarray(x).T, sr, subtype=subtype)
    return path


def test_embed_then_detect_round_trips_a_message_keeping_the_format(tmp_path):
    src = _write(tmp_path / "in.flac", np.stack([speechlike(4.0, 44100), speechlike(4.0, 44100, 1)]), 44100,
                 "PCM_24")
    before = src.read_bytes()
    out = tmp_path / "out" / "marked.flac"
    r = run_cli("watermark", "embed", str(src), str(out), "--message", "0xBEEF", *DSP)
    assert r.returncode == 0 and "watermarked 1 file(s)" in r.stderr and "0xBEEF" in r.stdout
    assert src.read_bytes() == before
    info_in, info_out = sf.info(src), sf.info(out)
    assert (info_out.samplerate, info_out.channels, info_out.frames, info_out.subtype) == \
        (44100, 2, info_in.frames, "PCM_24")
    r = run_cli("watermark", "detect", str(out), str(src), "--expect", "0xBEEF", "--format", "json", *DSP)
    assert r.returncode == 1, r.stderr
    rows = {row["path"].split("/")[-1]: row for row in json.loads(r.stdout)}
    assert rows["marked.flac"]["detected"] and rows["marked.flac"]["message"] == "0xBEEF"
    assert rows["marked.flac"]["bits_matched"] == 16 and rows["marked.flac"]["p_value"] < 1e-4
    assert not rows["in.flac"]["detected"] and rows["in.flac"]["message"] is None
    assert "1 of 2 file(s) watermarked" in r.stderr
    r = run_cli("watermark", "detect", str(src), *DSP)
    assert r.returncode == 0 and "0 of 1 file(s) watermarked" in r.stderr


def test_embed_never_overwrites_unless_asked(tmp_path):
    src = _write(tmp_path / "a.wav", speechlike(2.0), 16000)
    dst = _write(tmp_path / "b.wav", speechlike(1.0), 16000)
    old = dst.read_bytes()
    r = run_cli("watermark", "embed", str(src), str(dst), *DSP)
    assert r.returncode == 2 and "already exists (pass --overwrite" in r.stdout and dst.read_bytes() == old
    r = run_cli("watermark", "embed", str(src), str(src), *DSP)
    assert r.returncode == 2 and "pass --in-place" in r.stdout
    r = run_cli("watermark", "embed", str(src), str(dst), "--overwrite", "--message", "7", *DSP)
    assert r.returncode == 0 and dst.read_bytes() != old
    before = src.read_bytes()
    r = run_cli("watermark", "embed", str(src), "--in-place", "--message", "0x0102", *DSP)
    assert r.returncode == 0 and src.read_bytes() != before
    r = run_cli("watermark", "detect", str(src), "--format", "jsonl", *DSP)
    assert r.returncode == 1 and json.loads(r.stdout)["message"] == "0x0102"
    assert not list(tmp_path.glob("*.tmp*")) and not list(tmp_path.glob(".*"))  # no temp files left


def test_folder_mode_keeps_going_past_bad_files(tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    _write(src / "one.wav", speechlike(2.0), 16000)
    _write(src / "sub" / "two.ogg", speechlike(1.5, 22050), 22050, "VORBIS")
    (src / "bad.wav").write_text("not audio\n" * 20)
    r = run_cli("watermark", "embed", str(src), str(tmp_path / "out"), "--format", "json", *DSP)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    rows = {row["source"].split("/")[-1]: row for row in json.loads(r.stdout)}
    assert rows["one.wav"]["status"] == "ok" and rows["two.ogg"]["status"] == "ok"
    assert rows["bad.wav"]["status"] == "error" and "not a readable audio file" in rows["bad.wav"]["error"]
    assert (tmp_path / "out" / "one.wav").is_file() and (tmp_path / "out" / "sub" / "two.ogg").is_file()
    assert sf.info(tmp_path / "out" / "sub" / "two.ogg").samplerate == 22050
    assert "watermarked 2 file(s)" in r.stderr and "1 error(s)" in r.stderr


def test_bad_options_are_one_line_errors(tmp_path):
    src = _write(tmp_path / "a.wav", speechlike(1.0), 16000)
    for args, fragment in [(("--message", "0x1FFFF"), "does not fit in 16 bits"),
                           (("--message", "hello"), "not a number"),
                           ((str(tmp_path / "o.wav"), "--in-place"), "not both")]:
        r = run_cli("watermark", "embed", str(src), *args, *DSP)
        assert r.returncode == 2 and fragment in r.stderr and "Traceback" not in r.stderr
    r = run_cli("watermark", "embed", str(src))
    assert r.returncode == 2 and "no output given" in r.stderr
    r = run_cli("watermark", "detect", str(tmp_path / "missing.wav"), *DSP)
    assert r.returncode == 2 and "no such file or folder" in r.stdout


def test_train_resume_export_and_load(tmp_path):
    data = synthetic_speaker_folder(tmp_path / "speech", n_speakers=2, files_per_speaker=1, seconds=2.0)
    (data / "junk.wav").write_text("junk")
    out = tmp_path / "run"
    common = ("--data", str(data), "--out", str(out), "--n-filters", "4", "--dimension", "16", "--batch-size", "2",
              "--threads", "1")
    r = run_cli("watermark", "train", *common, "--steps", "2")
    assert r.returncode == 0, r.stderr
    assert "skipped" in r.stderr and "junk.wav" in r.stderr
    assert (out / "generator.pth").is_file() and (out / "detector.pth").is_file()
    assert len((out / "log.jsonl").read_text().splitlines()) == 2
    r = run_cli("watermark", "train", *common, "--steps", "3")
    assert r.returncode == 2 and "--resume" in r.stderr
    with open(out / "log.jsonl", "a") as f:  # a step logged after the last checkpoint, then the run was killed
        f.write(json.dumps({"step": 3, "loss": 9.9}) + "\n")
    r = run_cli("watermark", "train", *common, "--steps", "3", "--resume")
    assert r.returncode == 0 and "trained to step 3" in r.stdout
    assert [json.loads(x)["step"] for x in (out / "log.jsonl").read_text().splitlines()] == [1, 2, 3]
    r = run_cli("watermark", "train", *common[:-2], "--threads", "1", "--steps", "4", "--resume", "--lr", "1")
    assert r.returncode == 2 and "another config" in r.stderr
    r = run_cli("watermark", "export", str(out), "--to", str(tmp_path / "cards"), "--generator-name", "g",
                "--detector-name", "d")
    assert r.returncode == 0
    import yaml

    card = yaml.safe_load((tmp_path / "cards" / "g.yaml").read_text())
    assert card["kind"] == "watermark-generator" and len(card["sha256"]) == 64 and card["training"]["steps"] == 3
    from voiceguard.watermark import load_watermarker

    wm = load_watermarker("audioseal", generator=str(tmp_path / "cards" / "g.pth"),
                          detector=str(tmp_path / "cards" / "d.pth"))
    assert wm.embed(speechlike(2.0), 16000, 3).shape == (32000,)


def test_folder_embed_into_a_subfolder_of_the_input_never_marks_its_own_outputs(tmp_path):
    """Found in the #16 review: `watermark embed DIR DIR/out` marked DIR/out/*.wav again on a second run."""
    import soundfile as sf

    from test_watermark import speechlike
    from voiceguard.api import embed_files

    (tmp_path / "a.wav").parent.mkdir(exist_ok=True)
    sf.write(tmp_path / "a.wav", speechlike(1.0), 16000)
    first = list(embed_files(tmp_path, tmp_path / "out", 5, engine="spread-spectrum"))
    assert [r.status for r in first] == ["ok"] and (tmp_path / "out" / "a.wav").is_file()
    second = list(embed_files(tmp_path, tmp_path / "out", 5, engine="spread-spectrum", overwrite=True))
    assert len(second) == 1 and not (tmp_path / "out" / "out").exists()


def _invoke(*args: str):
    """The CLI in-process (click 8.2+: stdout and stderr apart), for the quick option checks below."""
    from click.testing import CliRunner

    from voiceguard.cli import cli

    return CliRunner().invoke(cli, list(args))


def test_output_format_options_json_alias_and_unknown_engine(tmp_path):
    src = _write(tmp_path / "a.wav", speechlike(2.0), 16000)
    marked = tmp_path / "m.wav"
    r = _invoke("watermark", "embed", str(src), str(marked), "--message", "0x0102", "--json", *DSP)
    assert r.exit_code == 0, r.output
    assert [row["message"] for row in json.loads(r.stdout)] == ["0x0102"]
    as_json = _invoke("watermark", "detect", str(marked), "--format", "json", *DSP)
    alias = _invoke("watermark", "detect", str(marked), "--json", *DSP)
    assert as_json.exit_code == alias.exit_code == 1 and alias.stdout == as_json.stdout
    assert json.loads(alias.stdout)[0]["message"] == "0x0102"
    table = _invoke("watermark", "detect", str(marked), *DSP)  # the default stays the table
    assert table.stdout.splitlines()[0].split() == ["path", "status", "detected", "probability", "message",
                                                    "message_status", "p_value", "segments", "error"]
    r = _invoke("watermark", "detect", str(marked), "--engine", "nope")
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr == "voiceguard: error: unknown watermark engine 'nope'; known: audioseal, spread-spectrum\n"
    r = _invoke("watermark", "detect", str(marked), "--engine", "audioseal", "--key", "3")
    assert r.exit_code == 2 and "takes no option 'key'" in r.stderr and len(r.stderr.splitlines()) == 1


def test_list_prints_the_cards_in_every_format():
    table = _invoke("watermark", "list")
    assert table.exit_code == 0 and table.stdout.splitlines()[0].split() == ["name", "kind", "weights", "message",
                                                                             "fpr"]
    assert table.stdout.endswith("\nengines: audioseal, spread-spectrum (default: spread-spectrum)\n")
    rows = {r["name"]: r for r in json.loads(_invoke("watermark", "list", "--json").stdout)}
    assert "vg_detector_16bits_small (default)" in rows
    # which engine checks its message, and which cannot (issue #20)
    assert rows["spread_spectrum (default engine)"]["message"].startswith("16 bits, checked")
    assert rows["vg_detector_16bits_small (default)"]["message"].startswith("16 bits, unchecked")
    assert _invoke("watermark", "list", "--format", "csv").stdout.splitlines()[0] == "name,kind,weights,message,fpr"


def test_calibrate_prints_json_by_default_and_other_formats_on_request(tmp_path):
    out = tmp_path / "cal.json"
    r = _invoke("watermark", "calibrate", "--windows", "100", "--out", str(out), *DSP)
    assert r.exit_code == 0, r.output
    assert r.stdout == out.read_text() and json.loads(r.stdout)["n_windows"] == 100  # unchanged default
    r = _invoke("watermark", "calibrate", "--windows", "100", "--format", "csv", *DSP)
    header, row = r.stdout.splitlines()
    assert header == "threshold,target_fpr,fpr,false_positives,n_windows,n_heldout,seed"
    assert row.split(",")[4:] == ["100", "100", "0"]
