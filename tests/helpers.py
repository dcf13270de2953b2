"""Shared fixtures: synthetic audio, the ../shared reference material, a CLI runner."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VOICEGUARD_SHARED", REPO.parent / "shared"))
LA19 = SHARED / "data" / "asvspoof2019"


@pytest.fixture
def la19() -> Path:
    """The real ASVspoof 2019 LA protocol / score files; skip cleanly without ../shared."""
    if not (LA19 / "ASVspoof2019.LA.cm.eval.trl.txt").is_file():
        pytest.skip(f"ASVspoof 2019 reference files not found under {LA19} (../shared is absent)")
    return LA19


def tone(seconds: float = 1.0, sr: int = 16000, channels: int = 1, freq: float = 440.0,
         amp: float = 0.5) -> np.ndarray:
    """A float32 [channels, n] sine (each channel a different frequency) plus a little noise."""
    t = np.arange(int(round(seconds * sr))) / sr
    rng = np.random.default_rng(0)
    rows = [amp * np.sin(2 * np.pi * freq * (c + 1) * t) + 0.01 * rng.standard_normal(t.size)
            for c in range(channels)]
    return np.asarray(rows, dtype=np.float32)


def write_wav(path: Path, audio: np.ndarray, sr: int = 16000, subtype: str = "PCM_16") -> Path:
    sf.write(path, audio.T, sr, subtype=subtype)
    return path


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed ``voiceguard`` entry point in a subprocess (real exit code and stderr)."""
    exe = Path(sys.executable).with_name("voiceguard")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "voiceguard.cli"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, cwd=cwd)


def synthetic_speaker_folder(root: Path, n_speakers: int = 6, files_per_speaker: int = 2, seconds: float = 3.0,
                             sr: int = 16000) -> Path:
    """Folders of 'speech-like' audio (harmonic source, formant filter, syllable envelope), one per speaker."""
    from scipy.signal import lfilter

    root.mkdir(parents=True, exist_ok=True)
    for s in range(n_speakers):
        rng = np.random.default_rng(100 + s)
        f0 = 100 + 25 * s
        (root / f"spk{s}").mkdir(exist_ok=True)
        for k in range(files_per_speaker):
            n = int(seconds * sr)
            t = np.arange(n) / sr
            vib = f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t + k))
            phase = 2 * np.pi * np.cumsum(vib) / sr
            src = sum(np.sin(h * phase) / h for h in range(1, 30))
            x = lfilter([1.0], [1.0, -1.3 + 0.05 * s, 0.8], src + 0.05 * rng.standard_normal(n))
            env = np.clip(np.sin(2 * np.pi * (3 + 0.3 * k) * t), 0, None) ** 0.5
            x = 0.3 * x * env / np.abs(x).max()
            sf.write(root / f"spk{s}" / f"utt{k}.wav", x.astype(np.float32), sr)
    return root


SPEECH_EXAMPLE = REPO / "examples" / "hello_espeak.flac"  # 5.8 s of synthetic (espeak) speech, 16 kHz


def speech(seconds: float = 2.0, sr: int = 16000, channels: int = 1) -> np.ndarray:
    """A float32 ``[channels, n]`` cut of the shipped speech example (silero-vad finds speech in any cut of
    0.5 s or more), resampled to ``sr``; extra channels are scaled copies (0.8, 0.6, ...), in phase."""
    from voiceguard.audio import resample

    x, native = sf.read(SPEECH_EXAMPLE, dtype="float32")
    x = resample(x[: int(round(seconds * native))], native, sr)
    return np.stack([x * (1 - 0.2 * c) for c in range(channels)]).astype(np.float32)


def write_score_files(root: Path) -> Path:
    """Seeded CM scores of 60 trials (20 bona fide, 40 spoof of attacks A01/A02) in ``root``: ``proto.txt``
    (LA19 protocol), ``four.txt`` ('utt attack key score'), ``two.txt`` ('utt score'), and ``asv.txt`` (ASV
    scores 'SOURCE KEY SCORE', 50 each of target, non-target and spoof)."""
    rng = np.random.default_rng(0)
    proto, four, two = [], [], []
    for i in range(60):
        bona = i % 3 == 0
        attack = "-" if bona else f"A0{1 + i % 2}"
        label = "bonafide" if bona else "spoof"
        s = rng.normal(2 if bona else -2, 1.5)
        proto.append(f"S{i % 5} U{i} - {attack} {label}\n")
        four.append(f"U{i} {attack} {label} {s}\n")
        two.append(f"U{i} {s}\n")
    (root / "proto.txt").write_text("".join(proto))
    (root / "four.txt").write_text("".join(four))
    (root / "two.txt").write_text("".join(two))
    asv = [f"bonafide target {rng.normal(3, 1)}\n" for _ in range(50)]
    asv += [f"bonafide nontarget {rng.normal(-3, 1)}\n" for _ in range(50)]
    asv += [f"A01 spoof {rng.normal(1, 2)}\n" for _ in range(50)]
    (root / "asv.txt").write_text("".join(asv))
    return root


def asv_lists(speakers: Path, root: Path) -> tuple[Path, Path, Path]:
    """An ASV enrolment + trial list over 4 synthetic speakers (``synthetic_speaker_folder``, 3 clips each):
    utt0 enrols, utt1/utt2 test; spoof trials are another speaker's audio claiming the identity (a crude
    stand-in for a conversion attack).  Returns (enrol list, trial list, audio folder of ``SPK_UTT.flac``)."""
    from voiceguard.audio import SAMPLE_RATE

    audio = root / "flac"
    audio.mkdir()
    for p in speakers.rglob("*.wav"):
        sf.write(audio / f"{p.parent.name}_{p.stem}.flac", sf.read(p, dtype="float32")[0], SAMPLE_RATE)
    spk = [f"spk{i}" for i in range(4)]
    (root / "enroll.txt").write_text("".join(f"{s} {s}_utt0\n" for s in spk))
    lines = []
    for i, s in enumerate(spk):
        lines += [f"{s} {s}_utt1 bonafide target", f"{s} {s}_utt2 bonafide target"]
        lines += [f"{s} {o}_utt1 bonafide nontarget" for o in spk if o != s]
        lines += [f"{s} {spk[(i + 1) % 4]}_utt2 A99 spoof"]
    (root / "trials.txt").write_text("\n".join(lines) + "\n")
    return root / "enroll.txt", root / "trials.txt", audio
