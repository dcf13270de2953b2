"""Speech-activity check on real speech: how many files of LibriSpeech test-other and of the neural
deepfake set (bona fide and spoof) silero-vad would call ``no-speech`` (must be 0), and the VAD's cost.

    python bench/bench_vad.py [--shared ../shared] [--out bench/results/vad.json]

Files are decoded at 16 kHz by the audio path (files scan rejects -- unreadable, shorter than 0.25 s -- are
listed as unreadable) and down-mixed by the channel rule (``voiceguard.vad.choose_mix``);
the VAD time excludes decoding and is given per minute of audio (one core: the VAD runs single-threaded).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=os.environ.get("VOICEGUARD_SHARED",
                                                        str(Path(__file__).resolve().parents[2] / "shared")))
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    from voiceguard.audio import SAMPLE_RATE, load_audio
    from voiceguard.detect.batch import MIN_SECONDS
    from voiceguard.errors import VoiceguardError
    from voiceguard.vad import MIN_SPEECH_SECONDS, choose_mix, load_vad

    shared = Path(args.shared)
    libri = sorted((shared / "data/speech/librispeech/test-other").rglob("*.flac"))
    neural_dir = shared / "data/neural"
    with open(neural_dir / "protocol.csv", newline="") as f:
        neural = [(neural_dir / r["path"], r["label"]) for r in csv.DictReader(f)]
    sets = {"librispeech-test-other": [(p, "bonafide") for p in libri],
            "neural-bonafide": [x for x in neural if x[1] == "bonafide"],
            "neural-spoof": [x for x in neural if x[1] == "spoof"]}
    load_vad()
    out: dict = {"min_speech_seconds": MIN_SPEECH_SECONDS, "sets": {}}
    total_audio = total_vad = 0.0
    for name, files in sets.items():
        least, no_speech, unreadable = [], [], []
        for path, _ in files:
            try:
                audio, _ = load_audio(path, SAMPLE_RATE, min_seconds=MIN_SECONDS, purpose="spoof detection")
            except VoiceguardError as e:  # unreadable or shorter than scan's minimum: an error row before the VAD
                unreadable.append(f"{path.relative_to(shared)}: {e.reason}")
                continue
            t = time.perf_counter()
            mix = choose_mix(audio, SAMPLE_RATE)
            total_vad += time.perf_counter() - t
            total_audio += audio.shape[1] / SAMPLE_RATE
            act = mix.activity
            least.append((act.speech_s, act.speech_s / max(act.duration_s, 1e-9), str(path.relative_to(shared))))
            if not act.has_speech:
                no_speech.append(str(path.relative_to(shared)))
        least.sort()
        out["sets"][name] = {"files": len(files), "no_speech": len(no_speech), "no_speech_files": no_speech,
                             "unreadable": unreadable,
                             "least_speech_s": least[0][0], "least_speech_file": least[0][2],
                             "least_speech_fraction": round(min(x[1] for x in least), 3)}
        print(f"{name}: {len(files)} files, {len(unreadable)} unreadable, {len(no_speech)} no-speech; least speech {least[0][0]:.2f} s "
              f"({least[0][2]}), lowest speech fraction {min(x[1] for x in least):.2f}")
    out["audio_minutes"] = round(total_audio / 60, 2)
    out["vad_seconds_per_audio_minute"] = round(total_vad / (total_audio / 60), 3)
    print(f"VAD: {out['vad_seconds_per_audio_minute']} s per minute of audio "
          f"({out['audio_minutes']} min, one thread)")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 1 if any(s["no_speech"] for s in out["sets"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
