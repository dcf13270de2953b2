"""The executors (``voiceguard.executors``): batch work in this process or on Ray actors.

The scheduling rules (retry, split, a file that kills its worker every time) are tested on a stand-in for Ray,
always; the Ray tests start a private local instance (2 CPUs, 127.0.0.1 only) and are skipped when Ray (the
``ray`` extra, installed by ``.ci/run``) is absent.  Against Ray: scan, watermark embed/detect, detect score and
the report's condition scoring give the local executor's rows; a killed worker is restarted and the run still
has every file exactly once; an interrupted scan resumes from its output file.
"""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import speech, write_wav
from voiceguard.cli import cli as main
from voiceguard.executors import (ExecutorError, ExecutorSpec, _schedule, as_spec, ordered, ray_available, run_job,
                                  session)

needs_ray = pytest.mark.skipif(not ray_available(), reason="Ray is not installed (pip install 'voiceguard[ray]')")


# --------------------------------------------------------------------------- without Ray
class Doubler:
    """A toy job: each item doubled; ``"bad"`` is its own error result."""

    def open(self):
        return lambda items: ((x * 2) if x != "bad" else ("error", x) for x in items)

    def failed(self, item, reason):
        return ("failed", item, reason)


def test_local_executor_runs_in_input_order():
    assert list(run_job(Doubler(), [1, 2, "bad", 3])) == [(0, 2), (1, 4), (2, ("error", "bad")), (3, 6)]
    assert ordered(run_job(Doubler(), [5, 6], "local"), 2) == [10, 12]


def test_executor_spec_checks_its_values():
    assert as_spec(None).is_local and as_spec("local").is_local and not as_spec("ray").is_local
    for bad in (dict(kind="spark"), dict(kind="ray", workers=0), dict(kind="ray", cpus_per_worker=0),
                dict(kind="ray", batch_files=0), dict(kind="ray", max_retries=-1)):
        with pytest.raises(ExecutorError):
            ExecutorSpec(**bad)
    with pytest.raises(TypeError):
        as_spec(3)


class FakeRef:
    def __init__(self, value=None, error=None):
        self.value, self.error = value, error


class FakeRay:
    """The part of the Ray API ``_schedule`` uses.  An actor's ``run`` fails (as a worker that died) when its
    batch holds ``"poison"``, and so does every task queued on that actor behind it; results come back in
    submission order.  ``come_back=False``: a dead actor never restarts (its probes fail)."""

    class exceptions:
        class RayError(Exception):
            pass

    def __init__(self, come_back: bool = True):
        self.submitted: list[list] = []
        self.come_back = come_back
        self.killed = 0

    def actor(self):
        fake = self
        state = {"dying": None, "dead": False}  # the poison task in flight; dead for good

        class Run:
            @staticmethod
            def remote(job_box, items):
                fake.submitted.append(list(items))
                if state["dead"] or state["dying"] is not None:
                    return FakeRef(error=fake.exceptions.RayError("The actor died unexpectedly (queued)"))
                if "poison" in items:
                    state["dying"] = ref = FakeRef(error=fake.exceptions.RayError("The actor died unexpectedly"))
                    state["dead"] = not fake.come_back
                    return ref
                return FakeRef(([x * 2 for x in items], 0.01, 1234))

        class Ready:
            @staticmethod
            def remote(job_box):
                if state["dead"]:
                    return FakeRef(error=fake.exceptions.RayError("The actor is restarting"))
                state["dying"] = None
                return FakeRef(1234)

        return type("Actor", (), {"run": Run, "ready": Ready})()

    @staticmethod
    def wait(refs, num_returns=1, timeout=None):
        return refs[:1], refs[1:]

    @staticmethod
    def get(ref):
        if ref.error is not None:
            raise ref.error
        return ref.value

    def kill(self, actor, no_restart=False):
        self.killed += 1


def _fake_spec(**kw) -> ExecutorSpec:
    spec = ExecutorSpec("ray", **kw)
    spec.stats.update(tasks=0, compute_s=0.0, failures=0, split=0, restarts=0, lost=0, pids_seen=set())
    return spec


def test_a_file_that_kills_its_worker_every_time_is_its_own_error_row():
    ray = FakeRay()
    spec = _fake_spec(batch_files=3, max_retries=1)
    items = [1, 2, "poison", 4, 5, 6, 7]
    out = list(_schedule(ray, [ray.actor(), ray.actor()], [None], Doubler(), items, spec))
    got = dict(out)
    assert sorted(i for i, _ in out) == list(range(len(items)))  # every item exactly once
    assert [got[i] for i in (0, 1, 3, 4, 5, 6)] == [2, 4, 8, 10, 12, 14]
    assert got[2][:2] == ("failed", "poison") and "2 time(s)" in got[2][2] and "actor died" in got[2][2]
    # the batch twice (first try + 1 retry), then the file alone twice; the actor was probed back before more work
    assert spec.stats["split"] == 1 and spec.stats["failures"] == 4 and spec.stats["restarts"] >= 2
    assert ray.submitted.count([1, 2, "poison"]) == 2 and ray.submitted.count(["poison"]) == 2
    assert [1] in ray.submitted and [2] in ray.submitted  # its batch-mates were redone one by one


def test_tasks_queued_behind_a_dying_one_are_not_charged():
    ray = FakeRay()
    spec = _fake_spec(batch_files=1, max_retries=1)
    got = dict(_schedule(ray, [ray.actor()], [None], Doubler(), [1, "poison", 3, 4, 5], spec))
    assert [got[i] for i in (0, 2, 3, 4)] == [2, 6, 8, 10]
    assert got[1][:2] == ("failed", "poison")
    assert ray.submitted.count([3]) >= 2  # [3] died in the queue once, then ran
    assert spec.stats["failures"] == 2  # the poison file's two tries only


def test_when_no_worker_comes_back_every_remaining_file_is_an_error_row():
    ray = FakeRay(come_back=False)
    spec = _fake_spec(batch_files=2, max_retries=0, startup_timeout_s=0.2)
    got = dict(_schedule(ray, [ray.actor()], [None], Doubler(), ["poison", 2, 3, 4, 5], spec))
    assert sorted(got) == [0, 1, 2, 3, 4]  # every item exactly once, none lost
    assert all(v[0] == "failed" for v in got.values())
    assert "every Ray worker was lost" in got[4][2] and spec.stats["lost"] == 1 and ray.killed == 1


def test_executor_options_are_checked_on_the_command_line(tmp_path):
    f = write_wav(tmp_path / "a.wav", speech(1.0))
    r = CliRunner().invoke(main, ["scan", str(f), "--ray-address", "auto"])
    assert r.exit_code == 2 and "--ray-address goes with --executor ray" in r.output
    r = CliRunner().invoke(main, ["watermark", "detect", str(f), "--workers", "2"])
    assert r.exit_code == 2 and "--workers (Ray actors) goes with --executor ray" in r.output
    r = CliRunner().invoke(main, ["watermark", "embed", str(tmp_path), "--in-place", "--executor", "ray"])
    assert r.exit_code == 2 and "watermarked twice" in r.output
    assert f.read_bytes() == write_wav(tmp_path / "b.wav", speech(1.0)).read_bytes()  # the input untouched


def test_without_ray_the_ray_executor_is_one_error_line(tmp_path, monkeypatch):
    import voiceguard.executors as ex

    monkeypatch.setattr(ex, "ray_available", lambda: False)
    f = write_wav(tmp_path / "a.wav", speech(1.0))
    r = CliRunner().invoke(main, ["scan", str(f), "--executor", "ray", "--no-progress"])
    assert r.exit_code == 2 and "pip install 'voiceguard[ray]'" in r.output and "Traceback" not in r.output
    with pytest.raises(ExecutorError, match="needs Ray"):
        list(run_job(Doubler(), [1], "ray"))


def test_report_config_executor_key():
    from voiceguard.eval.report.config import ReportConfigError, parse_config

    base = {"name": "t", "data": {"path": "x"}, "detectors": ["vg-whisper"]}
    assert parse_config(base).executor.is_local
    cfg = parse_config({**base, "executor": {"kind": "ray", "address": "auto", "workers": 3, "batch_files": 4}})
    assert (cfg.executor.kind, cfg.executor.address, cfg.executor.workers, cfg.executor.batch_files) == \
        ("ray", "auto", 3, 4)
    for bad, msg in (({"kind": "dask"}, "local or ray"), ({"kind": "ray", "nodes": 2}, "unknown key"),
                     ({"workers": 2}, "go(es) with kind: ray"), ({"kind": "ray", "workers": 0}, ">= 1")):
        with pytest.raises(ReportConfigError, match=msg.replace("(", r"\(").replace(")", r"\)")):
            parse_config({**base, "executor": bad})


# --------------------------------------------------------------------------- on a local Ray instance
@pytest.fixture(scope="module")
def ray_cluster():
    """A private Ray instance on this machine for the module's tests (2 CPUs, 127.0.0.1)."""
    if not ray_available():
        pytest.skip("Ray is not installed (pip install 'voiceguard[ray]')")
    with session(ExecutorSpec("ray")):
        yield


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Speech of several lengths, a stereo file, a watermarked file, a silent file and a broken one."""
    from voiceguard.watermark import DEFAULT_ENGINE, load_watermarker

    d = tmp_path_factory.mktemp("inputs")
    for i, s in enumerate((1.0, 1.7, 2.5, 3.3, 4.1, 5.0)):
        write_wav(d / f"speech{i}.wav", speech(s))
    write_wav(d / "stereo.wav", speech(2.0, channels=2))
    wm = load_watermarker(DEFAULT_ENGINE)
    write_wav(d / "marked.wav", wm.embed(speech(4.0)[0], 16000, 0xBEEF)[None], subtype="FLOAT")
    write_wav(d / "silent.wav", np.zeros((1, 32000), np.float32))
    (d / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio")
    return d


def _same_rows(a: list[dict], b: list[dict], key: str = "path") -> None:
    """The same rows (by ``key``), values equal; floats to 2e-3 (the last rounded digit of a value computed with
    another thread count may differ)."""
    da, db = {r[key]: r for r in a}, {r[key]: r for r in b}
    assert sorted(da) == sorted(db) and len(da) == len(a) and len(db) == len(b)
    for k in da:
        assert da[k].keys() == db[k].keys(), k
        for f, v in da[k].items():
            if isinstance(v, float) and isinstance(db[k][f], float):
                assert abs(v - db[k][f]) <= 2e-3, (k, f, v, db[k][f])
            else:
                assert v == db[k][f], (k, f, v, db[k][f])


@needs_ray
def test_scan_on_ray_gives_the_local_rows(ray_cluster, inputs):
    import voiceguard

    local = [r.to_dict(True) for r in voiceguard.scan([inputs])]
    spec = ExecutorSpec("ray", workers=2, batch_files=2)
    remote = [r.to_dict(True) for r in voiceguard.scan([inputs], executor=spec)]
    _same_rows([{**r, "segments": None} for r in local], [{**r, "segments": None} for r in remote])
    by = {r["path"]: r for r in remote}
    assert by[str(inputs / "marked.wav")]["watermark"] == "0xBEEF"
    assert by[str(inputs / "silent.wav")]["verdict"] == "no-speech"
    assert by[str(inputs / "broken.wav")]["status"] == "error"
    for r in local:  # window scores too
        seg = [s["llr"] for s in r["segments"]]
        assert np.allclose(seg, [s["llr"] for s in by[r["path"]]["segments"]], atol=1e-4)
    assert spec.stats["workers"] == 2 and spec.stats["tasks"] == 5 and spec.stats["failures"] == 0


@needs_ray
def test_a_killed_worker_is_restarted_and_its_work_redone(ray_cluster):
    class Slow:  # defined here: Ray pickles it by value
        def open(self):
            import time

            def process(items):
                for x in items:
                    time.sleep(0.2)
                    yield x, os.getpid()
            return process

        def failed(self, item, reason):
            return item, reason

    spec = ExecutorSpec("ray", workers=2, batch_files=1)
    got: dict[int, object] = {}
    for i, (x, pid) in run_job(Slow(), list(range(30)), spec):
        assert i not in got and x == i and isinstance(pid, int)  # every item once, none failed
        got[i] = pid
        if len(got) == 1:
            os.kill(spec.stats["pids"][0], signal.SIGKILL)  # a worker with items still queued
    assert sorted(got) == list(range(30))
    assert spec.stats["failures"] >= 1 and spec.stats["restarts"] >= 1
    assert set(got.values()) - set(spec.stats["pids"]), "the restarted worker did no work"


@needs_ray
def test_a_killed_worker_is_restarted_and_every_file_comes_once(ray_cluster, inputs):
    import voiceguard
    from voiceguard.api.scan import ScanJob
    from voiceguard.detect.models import load_model

    files = sorted(p for p in inputs.iterdir() if p.name.startswith("speech")) * 2  # 12 items
    loaded = load_model(None)
    job = ScanJob(loaded, 0.0, "mean", None, 1, None)
    spec = ExecutorSpec("ray", workers=2, batch_files=1)
    got: dict[int, object] = {}
    for i, row in run_job(job, files, spec):
        assert i not in got
        got[i] = row
        if len(got) == 1:  # the first result: kill a worker that still has files queued
            os.kill(spec.stats["pids"][0], signal.SIGKILL)
    assert sorted(got) == list(range(len(files)))
    assert all(r.status == "ok" for r in got.values()) and spec.stats["failures"] >= 1
    local = {str(r.path): r for r in voiceguard.scan(files[:6], model=loaded, watermark=False, threshold=0.0)}
    for i, row in got.items():
        ref = local[str(files[i])]
        assert row.verdict == ref.verdict and abs(row.llr - ref.llr) <= 2e-3 and abs(row.p_spoof - ref.p_spoof) <= 2e-3


@needs_ray
def test_a_file_that_kills_its_worker_every_time_on_ray(ray_cluster):
    class Suicidal:  # defined here: Ray pickles it by value
        def open(self):
            def process(items):
                for x in items:
                    if x == "poison":
                        os._exit(1)
                    yield x.upper()
            return process

        def failed(self, item, reason):
            return f"error: {reason}"

    spec = ExecutorSpec("ray", workers=1, batch_files=4, max_retries=0)
    got = dict(run_job(Suicidal(), ["a", "b", "poison", "c"], spec))
    assert [got[i] for i in (0, 1, 3)] == ["A", "B", "C"]
    assert got[2].startswith("error: the worker failed on this file 1 time(s)")
    # at least the poison batch and the poison file alone; a batch-mate that finished just before the death may
    # have lost its reply with the process and be charged too (then split and redone: its rows above are right)
    assert spec.stats["split"] >= 1 and spec.stats["failures"] >= 2


@needs_ray
def test_ray_start_errors_come_before_any_output(ray_cluster, inputs, tmp_path):
    out = tmp_path / "rows.jsonl"
    r = CliRunner().invoke(main, ["scan", str(inputs), "--executor", "ray", "--workers", "64", "-o", str(out),
                                  "--format", "jsonl", "--no-progress"])
    assert r.exit_code == 2 and "64 worker(s) of 1 CPU need 64 CPUs" in r.output and "Traceback" not in r.output
    assert not out.exists()  # no empty output left to trip a rerun
    r = CliRunner().invoke(main, ["scan", str(inputs), "--workers", "65", "--no-progress"])
    assert r.exit_code == 2 and "at most 64 decoding threads locally" in r.output


@needs_ray
def test_scan_cli_on_ray_resumes_from_its_output(ray_cluster, inputs, tmp_path):
    out = tmp_path / "rows.jsonl"
    args = ["scan", str(inputs), "--executor", "ray", "--workers", "2", "--format", "jsonl", "-o", str(out),
            "--no-progress", "--no-watermark"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, r.output  # the broken file is an error row
    first = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(first) == 10 and "Traceback" not in r.output
    kept = out.read_text().splitlines()[:4]
    out.write_text("\n".join(kept) + '\n{"path": "cut mid-wri')  # as a run killed while writing
    r = CliRunner().invoke(main, args + ["--resume"])
    assert "resuming: 4 file(s)" in r.output
    again = [json.loads(line) for line in out.read_text().splitlines()]
    _same_rows(first, again)  # every file exactly once, the same values


@needs_ray
def test_watermark_embed_and_detect_on_ray(ray_cluster, inputs, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        write_wav(src / f"s{i}.wav", speech(2.0 + i))
    (src / "broken.wav").write_bytes(b"not audio")
    r = CliRunner().invoke(main, ["watermark", "embed", str(src), str(tmp_path / "out"), "--message", "0xBEEF",
                                  "--executor", "ray", "--workers", "2", "--format", "jsonl", "--no-progress"])
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert r.exit_code == 2 and len(rows) == 5  # broken.wav is its error row
    assert sorted(x["status"] for x in rows) == ["error"] + ["ok"] * 4
    r = CliRunner().invoke(main, ["watermark", "embed", str(src), str(tmp_path / "local"), "--message", "0xBEEF",
                                  "--format", "jsonl", "--no-progress"])
    local = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    strip = lambda rows: [{k: v for k, v in x.items() if k != "output"} for x in rows]  # noqa: E731
    _same_rows(strip(local), strip(rows), key="source")
    import soundfile as sf

    for i in range(4):  # the same marked audio
        a, b = sf.read(tmp_path / "local" / f"s{i}.wav")[0], sf.read(tmp_path / "out" / f"s{i}.wav")[0]
        assert a.shape == b.shape and np.abs(a - b).max() <= 1 / 32768
    det = []
    for executor in ("local", "ray"):
        r = CliRunner().invoke(main, ["watermark", "detect", str(tmp_path / "out"), "--executor", executor,
                                      "--format", "jsonl", "--no-progress"])
        det.append([json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")])
        assert r.exit_code == 1
    assert [x["message"] for x in det[1]] == ["0xBEEF"] * 4
    _same_rows(*det)


@needs_ray
def test_detect_score_and_report_scoring_on_ray(ray_cluster, inputs, tmp_path):
    from voiceguard.attacks import load_suite
    from voiceguard.detect.models import load_model
    from voiceguard.eval.report.detection import score_condition
    from voiceguard.protocols import Trial

    names = sorted(p.stem for p in inputs.glob("speech*.wav"))
    proto = tmp_path / "proto.txt"
    proto.write_text("".join(f"SPK {n} - {'A01 spoof' if i % 2 else '- bonafide'}\n" for i, n in enumerate(names)))
    files = []
    for executor in ("local", "ray"):
        out = tmp_path / f"{executor}.txt"
        r = CliRunner().invoke(main, ["detect", "score", "--protocol", str(proto), "--audio-dir", str(inputs),
                                      "--ext", ".wav", "--out", str(out), "--executor", executor])
        assert r.exit_code == 0, r.output
        files.append([line.split() for line in out.read_text().splitlines()])
    assert [x[:3] for x in files[0]] == [x[:3] for x in files[1]] and len(files[0]) == len(names)  # protocol order
    assert np.allclose([float(x[3]) for x in files[0]], [float(x[3]) for x in files[1]], atol=1e-4)

    class Data:  # the part of EvalData that score_condition reads
        @staticmethod
        def path(t):
            return inputs / f"{t.utt_id}.wav"

    trials = [Trial(n, "bonafide") for n in names]
    row = next(r for r in load_suite("audioseal-paper").rows if r.label == "white_noise_0.05")  # seeded per file
    loaded = load_model(None)
    a = score_condition(loaded, Data, trials, row, seed=7)
    spec = ExecutorSpec("ray", workers=2, batch_files=2)
    b = score_condition(loaded, Data, trials, row, seed=7, executor=spec)
    assert a["utt"] == b["utt"] == names and np.allclose(a["score"], b["score"], atol=1e-4)
    assert spec.stats["tasks"] >= 3 and len(spec.stats["pids_seen"]) >= 1  # it did run on the actors
