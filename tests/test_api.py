"""The front door: ``import voiceguard; voiceguard.scan(...)`` (issue #17).  One scan implementation: the
CLI's rows are ``voiceguard.scan``'s rows; option errors are ``VoiceguardError``s; the root stays light."""
from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import speech, write_wav
import voiceguard
from voiceguard.api.scan import ScanOptionError
from voiceguard.errors import ModelCardError, VoiceguardError


@pytest.fixture(scope="module")
def loaded():
    return voiceguard.load_model()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    write_wav(d / "a.wav", speech(1.5))
    write_wav(d / "b.wav", np.zeros((1, 16000), np.float32))  # no speech
    write_wav(d / "c.wav", speech(2.5, 22050, channels=2), 22050)
    (d / "d.wav").write_bytes(b"RIFF not audio")
    return d


def test_scan_gives_the_rows_of_the_cli(clips, loaded):
    from voiceguard.cli import cli

    rows = list(voiceguard.scan([clips, clips / "missing.wav"], model=loaded, watermark=False))
    r = CliRunner().invoke(cli, ["scan", str(clips), str(clips / "missing.wav"), "--format", "jsonl",
                                 "--no-watermark", "--no-progress"])
    assert [json.loads(line) for line in r.stdout.splitlines()] == [row.to_dict() for row in rows]
    assert [(x.path.rsplit("/", 1)[-1], x.status, x.verdict) for x in rows][:2] == [
        ("missing.wav", "error", None), ("a.wav", "ok", rows[1].verdict)]
    assert rows[1].verdict in ("bonafide", "spoof", "partial-spoof")
    assert rows[2].verdict == "no-speech" and rows[4].status == "error"
    assert r.exit_code == voiceguard.exit_code(rows) == 2
    # no error among rows 1-3 and row 2 has no speech: 1 if a spoof is among them, else 4 (never 0 or 2)
    spoof = any(x.verdict in ("spoof", "partial-spoof") for x in rows[1:4])
    assert voiceguard.exit_code(rows[1:4]) == (1 if spoof else 4)
    # one path as a plain string; the model by card name; the unrounded score rides along, never written
    one, = voiceguard.scan(str(clips / "a.wav"), model="vg-whisper", watermark=False)
    assert one == rows[1] and one.p_spoof == round(one.score.p_spoof, 4) and one.mark is None
    assert "score" not in one.to_dict() and "mark" not in one.to_dict(segments=True)


def test_watermark_travels_with_its_file(tmp_path, loaded):
    """The decode step returns the watermark check with the audio (no side table keyed by path)."""
    from voiceguard.watermark import DetectionResult

    wm = voiceguard.load_watermarker()  # the default engine: a verified message, or "none"
    x, want = speech(2.0)[0], []
    for i, msg in enumerate((0xBEEF, None, 0x1234, None)):
        audio = x if msg is None else np.asarray(wm.embed(x, 16000, msg), np.float32)
        write_wav(tmp_path / f"{i}.wav", audio[None], subtype="FLOAT")
        alone = wm.detect(audio, 16000)
        want.append(alone.verdict if alone.detected else "none")
    assert want == ["0xBEEF", "none", "0x1234", "none"]
    rows = list(voiceguard.scan(tmp_path, model=loaded, watermark=wm, workers=2))
    assert [r.watermark for r in rows] == want and [w != "none" for w in want] == [True, False, True, False]
    assert all(isinstance(r.mark, DetectionResult) and r.wm_probability == round(r.mark.probability, 4)
               for r in rows)


def test_option_errors_are_voiceguard_errors_raised_at_the_call(clips, loaded):
    bad = [({"threshold": "abc"}, "'abc': expected 'default', an LLR number, 'eer' or 'fa:RATE'"),
           ({"threshold": float("nan")}, "the LLR threshold must be a finite number"),
           ({"threshold": "inf"}, "the LLR threshold must be a finite number"),
           ({"hop_seconds": 10}, "10 s leaves gaps: vg-whisper scores windows of 4 s"),
           ({"hop_seconds": -1.0}, "the hop must be a positive number of seconds"),
           ({"aggregate": "max"}, "aggregate must be one of mean, min")]
    for kwargs, message in bad:
        with pytest.raises(ScanOptionError, match=message) as e:
            voiceguard.scan(clips, model=loaded, watermark=False, **kwargs)  # not iterated: raised at once
        assert isinstance(e.value, VoiceguardError) and isinstance(e.value, ValueError)
    with pytest.raises(ModelCardError, match="no threshold for a false-alarm rate of 0.5"):
        voiceguard.scan(clips, model=loaded, threshold="fa:0.5", watermark=False)
    from voiceguard.api.scan import resolve_threshold

    assert resolve_threshold(-1.5, loaded) == resolve_threshold("-1.5", loaded) == -1.5
    assert resolve_threshold("eer", loaded) == pytest.approx(loaded.calibration.llr(loaded.calibration.eer_threshold))


def test_cli_reports_option_errors_as_usage_errors(clips):
    from voiceguard.cli import cli

    r = CliRunner().invoke(cli, ["scan", str(clips), "--threshold", "abc", "--no-progress"])
    assert r.exit_code == 2 and "Error: Invalid value: 'abc': expected 'default', an LLR number, 'eer' or 'fa:RATE'" in r.output
    r = CliRunner().invoke(cli, ["scan", str(clips), "--hop", "10", "--no-progress"])
    assert r.exit_code == 2 and "Invalid value for --hop: 10 s leaves gaps: vg-whisper scores windows of 4 s" \
        in r.output


def test_docstring_example_runs(clips):
    doc = voiceguard.api.scan.__doc__
    code = textwrap.dedent(doc.split("::\n", 1)[1]).strip() + "\n"
    assert code.startswith("import voiceguard\n") and '"incoming/"' in code
    out, env = io.StringIO(), {}
    with contextlib.redirect_stdout(out):
        exec(code.replace('"incoming/"', repr(str(clips))), env)  # noqa: S102 - the documented example itself
    assert len(out.getvalue().splitlines()) == len(env["rows"]) == 4 and env["code"] == 2


def test_root_forwards_the_api_lazily():
    import voiceguard.api
    from voiceguard.detect.models import load_model
    from voiceguard.watermark import load_watermarker

    assert list(voiceguard._API) == voiceguard.api.__all__  # add a new api name to voiceguard._API too
    for name in voiceguard.api.__all__:
        assert getattr(voiceguard, name) is getattr(voiceguard.api, name) and name in dir(voiceguard)
    assert voiceguard.load_model is load_model and voiceguard.load_watermarker is load_watermarker
    assert voiceguard.scan is voiceguard.api.scan and voiceguard.ScanRow.__name__ == "ScanRow"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        voiceguard.nope  # noqa: B018
    with pytest.raises(AttributeError):
        voiceguard.api.nope  # noqa: B018


def test_import_voiceguard_is_light():
    """``import voiceguard`` loads no numpy or torch; ``voiceguard.api`` (imported by every command at
    start-up) no torch or scikit-learn: the models load when a task runs."""
    code = ("import sys, voiceguard; heavy = lambda: sorted({'numpy', 'torch', 'sklearn'} & set(sys.modules)); "
            "print(heavy()); import voiceguard.api; voiceguard.scan; print(heavy())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["[]", "['numpy']"]
