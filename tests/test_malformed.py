"""Malformed and odd inputs through the real CLI (issue #16): a seeded generator (``tests/malformed.py``)
makes a few hundred cases from a small pool of encodings; ``scan``, ``watermark detect`` and ``watermark
embed`` run over them in batches (in-process, CliRunner) and, for FIFOs / symlinks to /dev/zero /
directories named x.wav, in a subprocess with a timeout.  Every outcome must be a valid JSON row or a
one-line error, with the documented exit code, no traceback, no NaN, no hang, inputs unchanged.

``VOICEGUARD_MALFORMED_SEED`` / ``VOICEGUARD_MALFORMED_N`` change the run (the bench runs thousands:
``python bench/bench_malformed.py``).  A failure lists each case with the command that writes it.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import replace

import pytest

import malformed as mf

SEED = int(os.environ.get("VOICEGUARD_MALFORMED_SEED", "16"))
N = int(os.environ.get("VOICEGUARD_MALFORMED_N", "200"))
POOL = 22  # one of each format family (ffmpeg encodes are the slow part)
MAX_SECONDS = 3.0

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")


@pytest.fixture(scope="module")
def cases() -> list[mf.Case]:
    pool = mf.build_pool(SEED, POOL, MAX_SECONDS)
    return mf.generate(SEED, N, pool)


def _assert_clean(rep: mf.Report) -> None:
    if rep.failures:
        lines = [f"{f.kind} [{f.command}] case {f.case}: {f.description} -- {f.detail[:300]}"
                 + (f"\n    reproduce: {f.reproduce}" if f.reproduce else "") for f in rep.failures[:40]]
        more = f"\n... and {len(rep.failures) - 40} more" if len(rep.failures) > 40 else ""
        pytest.fail(f"{len(rep.failures)} contract failure(s), by kind {dict(rep.by_kind())}:\n"
                    + "\n".join(lines) + more, pytrace=False)


def test_generator_is_deterministic_and_varied(cases):
    again = mf.generate(SEED, 30, mf.build_pool(SEED, POOL, MAX_SECONDS))
    assert [(c.name, c.data, c.description) for c in cases[:30]] == [(c.name, c.data, c.description) for c in again]
    families = {c.base.family for c in cases if c.base is not None}
    assert {"wav", "rf64", "flac", "ogg", "opus", "mp3", "m4a", "aiff", "wav-ffmpeg-adpcm"} <= families
    mutations = {c.mutation.split(":")[0] for c in cases}
    assert {"valid", "truncate", "bitflip", "header", "empty", "random-bytes", "wrong-ext", "special"} <= mutations
    assert any(not c.name.decode("utf-8", "replace").isascii() for c in cases)  # odd file names occur


def test_header_surgery_hits_the_field(tmp_path):
    """The header mutations change what a reader sees (so they test what they claim to)."""
    import numpy as np
    import soundfile as sf

    base = next(b for b in (mf.make_base(SEED, j, MAX_SECONDS) for j in range(POOL)) if b.family == "wav")
    rng = np.random.default_rng(0)
    path = tmp_path / "x.wav"
    path.write_bytes(mf.corrupt_header(base, "channels=65535", rng))
    with pytest.raises(Exception):
        with sf.SoundFile(path) as f:
            assert f.channels == base.channels
    flac = next(b for b in (mf.make_base(SEED, j, MAX_SECONDS) for j in range(POOL)) if b.family == "flac")
    path = tmp_path / "x.flac"
    path.write_bytes(mf.corrupt_header(flac, "total_samples=huge", rng))
    assert sf.info(path).frames == (1 << 36) - 1


def test_checks_catch_each_kind_of_fault(cases):
    """The checker itself: a fabricated scan outcome with one fault of each kind is caught kind by kind."""
    pool = mf.build_pool(SEED, POOL, MAX_SECONDS)
    ok = next(c for c in cases if c.regular and c.mutation == "valid")
    silence = replace(next(b for b in pool if b.family == "wav"), content="silence", frames=16000, sample_rate=16000)
    silent = mf.Case(SEED, POOL, 90001, "file", b"c90001.wav", b"", "silence", silence, "valid")
    rows = [
        f'{{"path": "/x/c{ok.index:05d}.wav", "status": "ok", "verdict": "bonafide", "p_spoof": NaN, "llr": 1.0, '
        f'"duration_s": {ok.base.seconds}}}',
        '{"path": "/x/c90001.wav", "status": "ok", "verdict": "bonafide", "p_spoof": 0.1, "llr": 2.0, '
        '"duration_s": 1.0}',
        '{"path": "/x/c90002.wav", "status": "error", "error": "unexpected failure while decoding (KeyError)"}',
    ]
    missing = mf.Case(SEED, POOL, 90003, "file", b"c90003.wav", b"x", "missing", None, "text")
    stray = mf.Case(SEED, POOL, 90002, "file", b"c90002.wav", b"x", "err", None, "text")
    run = mf.Run([], 0, "\n".join(rows) + "\n", "Note: Trying to resync...\nTraceback (most recent call last):\n",
                 1.0)
    rep = mf.Report()
    mf.check_scan(run, [ok, silent, stray, missing], [ok, silent, stray, missing], rep)
    kinds = rep.by_kind()
    for kind in ("nan-output", "no-speech-scored", "unexpected-failure", "missing-row", "exit-code",
                 "stray-stderr", "traceback"):
        assert kinds[kind] >= 1, (kind, dict(kinds))
    hung = mf.Report()
    mf.check_scan(mf.Run([], None, "", "", 60.0), [ok], [ok], hung)
    assert hung.by_kind() == {"hang": 1}
    before = {"a": "1", "c00001.wav": "2"}
    moved = mf.Report()
    mf.check_unchanged(before, {"a": "1", "c00001.wav": "3", ".tmp123": "x"}, "scan", [ok], moved)
    assert moved.by_kind() == {"modified-input": 1, "stray-file-in-input": 1}


def test_scan_batch(cases, tmp_path):
    """One in-process ``scan`` over a folder of the regular-file cases plus the non-audio-extension ones by
    name: one row each, documented exit code, no NaN, inputs unchanged."""
    rep = mf.Report(cases=N)
    mf.run_scan([c for c in cases if c.regular], str(tmp_path), rep, timeout=1200)
    _assert_clean(rep)


def test_scan_every_header_field(tmp_path):
    """Each header-field corruption (rate 0 / huge, channels 0 / 65535, frame counts and sizes huge...) on
    one file of each container: a row each, fast (no decoder may believe a 1 Hz rate or a 2^36-frame
    header and grind through it: the batch has 300 s)."""
    chosen = mf.header_cases(SEED, mf.reference_bases(SEED))
    assert len(chosen) > 60
    rep = mf.Report(cases=len(chosen))
    mf.run_scan(chosen, str(tmp_path), rep, timeout=300, extra=("--no-watermark",))
    _assert_clean(rep)


def test_scan_special_paths_in_a_subprocess(cases, tmp_path):
    """FIFOs, symlinks to /dev/zero, directories named x.wav, dangling links and non-UTF-8 names, by name,
    through the real entry point (a hang is caught by the timeout)."""
    chosen = [c for c in cases if not c.regular]
    chosen += [c for c in cases if c.regular and not mf._utf8(c.name)][:3]
    assert chosen
    rep = mf.Report(cases=len(chosen))
    mf.run_scan(chosen, str(tmp_path), rep, subprocess_mode=True, timeout=300, extra=("--no-watermark",))
    _assert_clean(rep)


def test_watermark_detect_batch(cases, tmp_path):
    """``watermark detect`` over a third of the cases (and every special path: detection runs in the
    main thread, so the in-process watchdog can interrupt a blocked read)."""
    chosen = [c for c in cases if c.index % 3 == 0 or not c.regular]
    rep = mf.Report(cases=len(chosen))
    mf.run_wm_detect(chosen, str(tmp_path), rep, timeout=900)
    _assert_clean(rep)


def test_watermark_embed_batch(cases, tmp_path):
    """Folder -> folder ``watermark embed`` over a sample: outputs only for ok rows, same format, rate,
    channels and length; nothing else left in the output folder."""
    chosen = [c for c in cases if c.regular and c.index % 8 == 1]
    rep = mf.Report(cases=len(chosen))
    mf.run_wm_embed(chosen, str(tmp_path), rep, timeout=900)
    _assert_clean(rep)


