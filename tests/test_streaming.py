"""Batch output (issue #16, sections 7 and 4): rows stream as each file finishes, --output/--resume survive an
interrupted run, progress reaches a non-terminal stderr, and file names that are not UTF-8 never crash an
output (JSON/CSV stay valid UTF-8)."""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

from helpers import write_wav
from voiceguard.errors import OutputError
from voiceguard.progress import Progress, format_eta
from voiceguard.cli.streaming import from_output_row, resume_command
from voiceguard.writers import RowSink, printable, read_output_file, render

CAFE = os.fsdecode(b"caf\xe9.wav")  # a Latin-1 name: not UTF-8
EXE = Path(sys.executable).with_name("voiceguard")


def _speechlike(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    x = sum(np.sin(2 * np.pi * (120 + 10 * seed) * h * t) / h for h in range(1, 12))
    x *= np.clip(np.sin(2 * np.pi * 3 * t), 0, None) ** 0.5
    return (0.3 * x / np.abs(x).max() + 0.003 * rng.standard_normal(t.size)).astype(np.float32)[None, :]


# --------------------------------------------------------------------------- names that are not UTF-8
@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=40))
def test_printable_gives_valid_utf8_for_any_file_name_bytes(raw):
    name = os.fsdecode(raw)
    shown = printable(name)
    shown.encode("utf-8")  # never raises
    assert not any(unicodedata.category(c) in ("Cc", "Zl", "Zp", "Cs") for c in shown)  # one safe line
    try:
        text = raw.decode("utf-8")
        if not any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in text):
            assert shown == text  # valid UTF-8 names without control characters are unchanged
    except UnicodeDecodeError:
        assert "\\x" in shown  # the bad bytes are visible as \xNN escapes
    for fmt in ("table", "json", "jsonl", "csv"):  # every writer takes it, and JSON/CSV parse back to it
        text = render([{"path": name, "n": 1}], fmt, ["path", "n"])
        text.encode("utf-8")
        if fmt == "json":
            assert json.loads(text)[0]["path"] == shown
        elif fmt == "jsonl":
            assert json.loads(text)["path"] == shown
        elif fmt == "csv":
            assert next(csv.DictReader(io.StringIO(text)))["path"] == shown


def test_printable_example():
    assert printable(CAFE) == "caf\\xe9.wav" and printable("café.wav") == "café.wav"
    assert printable("x\ud800y") == "x\\ud800y"  # a lone surrogate not from the file system
    assert printable("a\nb\x1b[31m") == "a\\nb\\x1b[31m"  # a newline or a terminal escape in a name


@pytest.fixture(scope="module")
def odd_names(tmp_path_factory) -> Path:
    """A folder with a speech-like file under a Latin-1 name, one with a UTF-8 name, and a broken file whose
    name is not UTF-8 (its error row and message carry the name too)."""
    d = tmp_path_factory.mktemp("names")
    write_wav(d / "ok.wav", _speechlike(1.5, 1))
    os.rename(d / "ok.wav", os.path.join(d, CAFE))
    write_wav(d / "naïve.wav", _speechlike(1.5, 2))
    (d / os.fsdecode(b"bad\xff.wav")).write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    return d


_DRIVER = r"""
import json, os, sys
from voiceguard.cli import cli
folder, out = sys.argv[1], sys.argv[2]
codes = {}
for fmt in ("table", "csv", "jsonl", "json"):
    sys.stdout.flush()
    saved = os.dup(1)
    fd = os.open(os.path.join(out, fmt + ".out"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)  # the interpreter's own sys.stdout (its locale-chosen encoding) now writes to the file
    try:
        cli.main(["scan", folder, "--format", fmt, "--no-watermark", "--no-progress"], prog_name="voiceguard")
    except SystemExit as e:
        codes[fmt] = e.code
    sys.stdout.flush()
    os.dup2(saved, 1)
    os.close(fd)
existing = os.path.join(out, os.fsdecode(b"rows\xe9.jsonl"))  # a fatal error naming a non-UTF-8 file
open(existing, "w").close()
sys.stderr.write("--- fatal:\n")
sys.stderr.flush()
try:
    cli.main(["scan", folder, "-o", existing], prog_name="voiceguard")
except SystemExit as e:
    codes["fatal"] = e.code
print(json.dumps(codes))
"""


def _env(lang: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONIOENCODING", "PYTHONUTF8") and
           not k.startswith("LC_")}
    env["LANG"] = lang
    return env


@pytest.mark.parametrize("lang", ["C.UTF-8", "C"])
def test_scan_prints_non_utf8_names_escaped_in_every_format(odd_names, tmp_path, lang):
    """Regression (issue #16 §4): ``caf\\xe9.wav`` was an error row (UnicodeEncodeError) and, under LANG=C,
    stdout carried the raw byte (invalid UTF-8).  The CLI (its ``main`` in a fresh interpreter started with
    the locale, stdout a file) now gives valid UTF-8 with the name escaped in every format, scans the file
    normally, and its error printer writes one escaped line for a fatal error naming such a file."""
    r = subprocess.run([sys.executable, "-c", _DRIVER, str(odd_names), str(tmp_path)], capture_output=True,
                       env=_env(lang), timeout=600)
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-3000:]
    codes = json.loads(r.stdout.decode().splitlines()[-1])
    assert set(codes.values()) == {2} and len(codes) == 5, codes  # the broken file: an error row; nothing else
    stderr = r.stderr.decode("utf-8")  # stderr is valid UTF-8 too
    assert "Traceback" not in stderr and "\\udc" not in stderr
    fatal = stderr.split("--- fatal:\n")[1]  # the error printer: one line, the name escaped
    assert fatal.count("\n") == 1 and "rows\\xe9.jsonl: already exists" in fatal, fatal
    del codes["fatal"]
    out = {fmt: (tmp_path / f"{fmt}.out").read_bytes().decode("utf-8") for fmt in codes}  # strict UTF-8
    rows = {"jsonl": [json.loads(x) for x in out["jsonl"].splitlines()], "json": json.loads(out["json"]),
            "csv": list(csv.DictReader(io.StringIO(out["csv"])))}
    for fmt, got in rows.items():
        named = {Path(x["path"]).name: x for x in got}
        assert set(named) == {"caf\\xe9.wav", "naïve.wav", "bad\\xff.wav"}, (fmt, got)
        assert named["caf\\xe9.wav"]["status"] == "ok" and named["naïve.wav"]["status"] == "ok", (fmt, got)
        bad = named["bad\\xff.wav"]
        assert bad["status"] == "error" and "Unicode" not in bad["error"], (fmt, bad)
    assert "caf\\xe9.wav" in out["table"] and "bad\\xff.wav" in out["table"]


# --------------------------------------------------------------------------- RowSink
def test_sink_flushes_jsonl_and_csv_rows_one_by_one(tmp_path):
    for fmt in ("jsonl", "csv"):
        f = tmp_path / f"rows.{fmt}"
        sink = RowSink(fmt, ["path", "status"], output=f)
        for i in range(3):
            sink.write({"path": f"{i}.wav", "status": "ok"})
            rows, clean = read_output_file(f, fmt, "path")  # on disk before the next file and before close()
            assert clean and [r["path"] for r in rows] == [f"{k}.wav" for k in range(i + 1)]
        sink.close()


def test_sink_renders_table_and_json_at_close_atomically(tmp_path):
    for fmt in ("table", "json"):
        f = tmp_path / f"rows.{fmt}"
        sink = RowSink(fmt, ["path", "status"], output=f)
        sink.write({"path": "a.wav", "status": "ok"})
        assert not f.exists()
        sink.close()
        assert "a.wav" in f.read_text()


def test_sink_refuses_existing_file_without_resume_or_overwrite(tmp_path):
    f = tmp_path / "rows.jsonl"
    f.write_text('{"path": "a.wav"}\n')
    with pytest.raises(OutputError, match="already exists"):
        RowSink("jsonl", ["path"], output=f)
    sink = RowSink("jsonl", ["path"], output=f, overwrite=True)
    sink.write({"path": "b.wav"})
    sink.close()
    assert f.read_text() == '{"path": "b.wav"}\n'


def _rows(n):
    return [{"path": f"dir/{i}.wav", "status": "error" if i % 3 == 0 else "ok", "p": i / 7, "note": "a,\"b\""}
            for i in range(n)]


@settings(max_examples=120, deadline=None)
@given(n=st.integers(1, 6), frac=st.floats(0, 1), fmt=st.sampled_from(["jsonl", "csv"]))
def test_resume_after_a_cut_at_any_byte_keeps_the_complete_rows(tmp_path_factory, n, frac, fmt):
    """A kill can cut the file anywhere: --resume keeps every complete row, drops the cut one, rewrites the
    file cleanly and appends; the result equals an uninterrupted file."""
    d = tmp_path_factory.mktemp("cut")
    cols = ["path", "status", "p", "note"]
    full = d / f"full.{fmt}"
    sink = RowSink(fmt, cols, output=full)
    for r in _rows(n):
        sink.write(r)
    sink.close()
    data = full.read_bytes()
    cut = d / f"cut.{fmt}"
    cut.write_bytes(data[:int(frac * len(data))])
    sink = RowSink(fmt, cols, output=cut, resume=True)
    kept = [r["path"] for r in sink.previous]
    assert kept == [r["path"] for r in _rows(n)][:len(kept)]  # a prefix of the rows, in order
    for r in _rows(n):
        if r["path"] not in sink.done:
            sink.write(r)
    sink.close()
    assert cut.read_bytes() == data


def test_resume_refuses_a_file_that_is_not_this_commands_output(tmp_path):
    f = tmp_path / "rows.jsonl"
    f.write_text('{"path": "a.wav"}\nnot json\n{"path": "b.wav"}\n')
    with pytest.raises(OutputError, match="line 2"):
        RowSink("jsonl", ["path"], output=f, resume=True)
    g = tmp_path / "rows.csv"
    g.write_text("name,score\nx,1\n")
    with pytest.raises(OutputError, match="no 'path' column"):
        RowSink("csv", ["path"], output=g, resume=True)


def test_rows_read_back_from_csv_get_their_types():
    from voiceguard.api.scan import ScanRow

    row = from_output_row(ScanRow, {"path": "a.wav", "status": "ok", "verdict": "spoof", "p_spoof": "0.9",
                                    "sample_rate": "16000", "llr": "", "error": ""})
    assert (row.p_spoof, row.sample_rate, row.llr, row.error, row.verdict) == (0.9, 16000, None, None, "spoof")


def test_resume_command_line():
    assert resume_command(["scan", "my dir", "-o", "x.jsonl", "--overwrite"]) == \
        "voiceguard scan 'my dir' -o x.jsonl --resume"


# --------------------------------------------------------------------------- progress
class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_progress_prints_plain_lines_every_interval_when_not_a_terminal():
    clock, out = _Clock(), io.StringIO()
    p = Progress("scan", stream=out, interval=5, clock=clock)
    p.set_total(3000)
    for _ in range(19):  # 4 files/s: nothing before 5 s
        clock.t += 0.25
        p.advance()
    assert out.getvalue() == ""
    for _ in range(101):
        clock.t += 0.25
        p.advance()
    lines = out.getvalue().splitlines()
    assert lines[0] == "scan: 20/3000 files, 4.0 files/s, ETA 12 min", lines
    assert len(lines) == 6  # one per 5 s of the 30 s
    q = Progress("scan", stream=(quiet := io.StringIO()), interval=0, clock=clock, enabled=False)
    q.set_total(2)
    q.advance()
    assert quiet.getvalue() == ""


def test_progress_uses_a_bar_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    p = Progress("scan", stream=out)
    p.set_total(4)
    p.advance()
    p.close()
    assert "1/4" in out.getvalue() and "files/s" not in out.getvalue()


def test_format_eta():
    assert [format_eta(s) for s in (40, 660, 3 * 3600, float("inf"))] == ["40 s", "11 min", "3.0 h", "?"]


# --------------------------------------------------------------------------- interrupted runs, end to end
@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("clips")
    for i in range(6):
        write_wav(d / f"c{i}.wav", _speechlike(1.5, i))
    return d


def _keyboard_interrupt_after(n, real):
    def wrapped(*a, **kw):
        for i, row in enumerate(real(*a, **kw)):
            if i == n:
                raise KeyboardInterrupt
            yield row
    return wrapped


@pytest.mark.parametrize("fmt", ["csv"])  # jsonl: the SIGTERM test below; every cut: the RowSink test above
def test_scan_interrupted_then_resumed_equals_an_uninterrupted_run(clips, tmp_path, monkeypatch, fmt):
    """Regression (issue #16 §7): a killed scan lost every row.  Interrupted after 2 files it keeps them and
    exits 130 saying how to resume; --resume scans only the other files; the result equals one full run."""
    import voiceguard.cli.scan as dcli
    from voiceguard.cli import cli

    runner = CliRunner()
    base = ["scan", str(clips), "--format", fmt, "--no-watermark", "--no-progress"]
    full = tmp_path / f"full.{fmt}"
    r = runner.invoke(cli, base + ["-o", str(full)])
    assert r.exit_code in (0, 1, 4), r.output

    real = dcli.scan
    part = tmp_path / f"part.{fmt}"
    monkeypatch.setattr(dcli, "scan", _keyboard_interrupt_after(2, real))
    r = runner.invoke(cli, base + ["-o", str(part)])
    assert r.exit_code == 130, r.output
    assert "interrupted after 2 file(s)" in r.output and "--resume" in r.output
    assert len(read_output_file(part, fmt, "path")[0]) == 2

    seen: list[str] = []

    def spy(*a, **kw):
        for row in real(*a, **kw):
            seen.append(row.path)
            yield row
    monkeypatch.setattr(dcli, "scan", spy)
    r = runner.invoke(cli, base + ["-o", str(part), "--resume"])
    assert r.exit_code in (0, 1, 4), r.output
    assert "resuming: 2 file(s) already in" in r.output and "scanned 6 file(s)" in r.output
    assert len(seen) == 4 and not set(seen) & {x["path"] for x in read_output_file(part, fmt, "path")[0][:2]}
    assert part.read_text() == full.read_text()
    r = runner.invoke(cli, base + ["-o", str(part)])  # without --resume/--overwrite: refused
    assert r.exit_code == 2 and "already exists" in r.output


def test_resume_needs_an_output_file_and_a_streaming_format(clips, tmp_path):
    from voiceguard.cli import cli

    runner = CliRunner()
    r = runner.invoke(cli, ["scan", str(clips), "--resume"])
    assert r.exit_code == 2 and "--resume needs --output FILE" in r.output
    r = runner.invoke(cli, ["scan", str(clips), "-o", str(tmp_path / "x.json"), "--format", "json", "--resume"])
    assert r.exit_code == 2 and "--resume needs --format jsonl or csv" in r.output


def test_watermark_detect_killed_by_sigterm_keeps_rows_and_resumes(tmp_path):
    """A real SIGTERM to a folder-mode ``watermark detect`` once its first row is on disk: rows so far are
    kept (whole lines), exit 130 with the resume command; --resume completes the set, none twice."""
    d = tmp_path / "many"
    d.mkdir()
    for i in range(24):
        write_wav(d / f"f{i:02d}.wav", _speechlike(1.0, i % 7))
    out = tmp_path / "rows.jsonl"
    exe = [str(EXE)] if EXE.exists() else [sys.executable, "-m", "voiceguard.cli"]
    cmd = exe + ["watermark", "detect", str(d), "--engine", "spread-spectrum", "--format", "jsonl", "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not (out.exists() and out.read_bytes().count(b"\n") >= 1) and proc.poll() is None:
        assert time.monotonic() < deadline, "no row written"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    err = err.decode()
    assert proc.returncode == 130, err
    assert "continue with:" in err and "--resume" in err
    first = [json.loads(x)["path"] for x in out.read_text().splitlines()]
    assert 1 <= len(first) < 24
    r = subprocess.run(cmd + ["--resume"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "0 of 24 file(s) watermarked" in r.stderr
    paths = [json.loads(x)["path"] for x in out.read_text().splitlines()]
    assert sorted(paths) == sorted(str(p) for p in d.glob("*.wav")) and len(set(paths)) == 24
