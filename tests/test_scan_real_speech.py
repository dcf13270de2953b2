"""`voiceguard scan` with the shipped model on real LibriSpeech speech and vocoded copies of it.

The speech comes from ../shared (skipped without it); the spoofs are built by the corpus builder's
``tiny`` config (WORLD and Griffin-Lim copy-synthesis, WORLD voice conversion, MFCC inversion), the same
vocoder families the default model was trained and evaluated on. The speakers may overlap with the
model's training speakers: this is a check that the shipped model and scan work end to end on real
audio; the held-out figures are in the README (bench/bench_detectors.py).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import SHARED, run_cli
from voiceguard.eval.corpus import prepare_corpus
from voiceguard.protocols import read_protocol

LIBRI = SHARED / "data" / "speech" / "librispeech" / "test-other"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    if not LIBRI.is_dir():
        pytest.skip(f"{LIBRI} not found (../shared is absent)")
    src = tmp_path_factory.mktemp("libri")
    for speaker in sorted(d for d in LIBRI.iterdir() if d.is_dir()):  # 12 readers, two recordings each
        for f in sorted(speaker.rglob("*.flac"))[:2]:
            (src / f.name).symlink_to(f)
    out = tmp_path_factory.mktemp("corpus") / "c"
    prepare_corpus(src, out, "tiny", seed=5)
    return out


def test_scan_tells_real_from_vocoded_speech(corpus):
    labels = {t.utt_id: t.label for p in (corpus / "protocols").glob("VG.cm.*.txt") for t in read_protocol(p)}
    r = run_cli("scan", str(corpus / "flac"), "--format", "json")
    assert r.returncode == 1 and "Traceback" not in r.stderr  # spoofs were found, no file failed
    rows = json.loads(r.stdout)
    assert len(rows) == len(labels) >= 20
    truth = np.array([labels[row["path"].rsplit("/", 1)[1][:-5]] == "spoof" for row in rows])
    said_spoof = np.array([row["verdict"] != "bonafide" for row in rows])
    p_spoof = np.array([row["p_spoof"] for row in rows])
    accuracy = float(np.mean(said_spoof == truth))
    # measured with vg-specnet v2: accuracy 0.84, mean p_spoof 0.53 (spoof) vs 0.08 (bona fide); these
    # vocoders are the model's weak side (README results), so the bar is "clearly better than chance"
    assert accuracy >= 0.75, accuracy
    assert p_spoof[truth].mean() - p_spoof[~truth].mean() > 0.2
