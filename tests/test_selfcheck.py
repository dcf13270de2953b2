"""The dependency stack loads and works: torchaudio and speechbrain each run a real op (issue #16)."""
from __future__ import annotations

import subprocess
import sys

import torch

from voiceguard.selfcheck import run_checks


def test_torchaudio_and_speechbrain_run_an_op():
    lines = run_checks()
    assert any(line.startswith("torch ") and "torchaudio" in line for line in lines)
    assert any(line.startswith("speechbrain ") for line in lines)
    import torchaudio.functional as taf

    x = torch.sin(2 * torch.pi * 440 * torch.arange(16000) / 16000).unsqueeze(0)
    y = taf.resample(x, 16000, 8000)
    assert abs(float(y.abs().max()) - 1.0) < 0.05


def test_selfcheck_module_exits_zero():
    r = subprocess.run([sys.executable, "-m", "voiceguard.selfcheck"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "speechbrain" in r.stdout


def test_lock_pins_a_matching_torch_torchaudio_pair():
    from helpers import REPO

    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if line.startswith(("torch==", "torchaudio==")):
            name, version = line.split()[0].split("==")
            pins[name] = version
    assert pins["torch"] == pins["torchaudio"], pins
