"""Our AASIST against the published reference implementation: logit parity and CPU throughput.

    python bench/bench_aasist.py --reference-dir /tmp/aasist_ref [--threads 2] [--batch 8] [--repeats 5]
    python bench/bench_aasist.py --reference-dir /tmp/aasist_ref --golden tests/data/aasist_reference_logits.json

``--reference-dir`` is a checkout of github.com/clovaai/aasist (its ``models/AASIST.py`` is imported
from there at run time, never copied). For AASIST and AASIST-L the published checkpoint is loaded
into both networks, which score the same fixed, seeded inputs; the two are timed in the same process,
interleaved (warm-up, then the median of ``--repeats``). Without ``--reference-dir`` only our logits
and timings are stored. Writes ``bench/results/aasist.json`` (with our logits, which
tests/test_aasist.py checks) and prints a markdown table.

``--golden PATH`` instead records the *reference's* logits on ``parity_inputs()`` (digital silence,
silence-padded and repeat-padded speech, plain speech: the inputs on which many graph nodes are equal
and graph pooling has to break ties) into a JSON file that tests/test_aasist.py checks our network and
the project's scoring path against, without the reference checkout; it prints our largest difference
per input and does no timing.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from voiceguard.detect.aasist import AASIST, AASIST_L, Aasist
from voiceguard.audio import SAMPLE_RATE
from voiceguard.detect.scoring import fit_window

REPO = Path(__file__).resolve().parents[1]
MODELS = {"AASIST": (AASIST, "aasist/AASIST"), "AASIST-L": (AASIST_L, "aasist/AASIST-L")}
PARITY_SPEECH = "data/speech/librispeech/train-clean-100/103-1240-0000.flac"  # under ../shared (14 s)


def fixed_inputs(n_samples: int = 64600) -> np.ndarray:
    """``[8, n_samples]`` float32, deterministic: white noise at four levels, two harmonic tones
    (one with vibrato and light noise), a chirp, and a harmonic tone in brown noise."""
    rng = np.random.default_rng(0)
    t = np.arange(n_samples) / SAMPLE_RATE

    def harmonic(f0: float, vibrato: float = 0.0) -> np.ndarray:
        phase = 2 * np.pi * np.cumsum(f0 * (1 + vibrato * np.sin(2 * np.pi * 5 * t))) / SAMPLE_RATE
        x = sum(np.sin(k * phase) / k for k in range(1, 11))
        return x / np.abs(x).max() * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2)

    brown = np.cumsum(rng.standard_normal(n_samples))
    brown = (brown - brown.mean()) / np.abs(brown - brown.mean()).max()
    chirp = np.sin(2 * np.pi * (100 * t + (4000 - 100) / (2 * t[-1]) * t ** 2))
    rows = [level * rng.standard_normal(n_samples) for level in (0.001, 0.01, 0.1, 0.5)]
    rows += [0.3 * harmonic(140.0), 0.3 * harmonic(220.0, 0.02) + 0.01 * rng.standard_normal(n_samples),
             0.2 * chirp, 0.25 * harmonic(110.0) + 0.1 * brown]
    return np.asarray(rows, dtype=np.float32)


def parity_inputs(shared: Path, n_samples: int = 64600) -> dict[str, np.ndarray]:
    """Named ``[n_samples]`` float32 inputs for the golden file: digital silence, speech padded with
    silence (before or after; the first case is issue #19's), clips repeat-padded by the project's
    ``fit_window`` (a 4.0 s clip that is mostly silence, and a 0.5 s clip), a tone padded with silence,
    and plain speech. The speech is ``PARITY_SPEECH`` from ``shared`` (``../shared``), read as float32."""
    speech = sf.read(shared / PARITY_SPEECH, dtype="float32")[0]
    tone = fixed_inputs(n_samples)[4]
    sec = SAMPLE_RATE

    def silence(n: int) -> np.ndarray:
        return np.zeros(n, dtype=np.float32)

    rows = {"zeros": silence(n_samples),
            "speech_1s+zeros": np.r_[speech[:sec], silence(n_samples - sec)],
            "speech_0.2s+zeros": np.r_[speech[:sec // 5], silence(n_samples - sec // 5)],
            "speech_3s+zeros": np.r_[speech[:3 * sec], silence(n_samples - 3 * sec)],
            "zeros+speech_1s": np.r_[silence(n_samples - sec), speech[sec:2 * sec]],
            "speech_1s+zeros_4.0s_clip_repeat_padded": fit_window(np.r_[speech[:sec], silence(3 * sec)], n_samples),
            "speech_0.5s_repeat_padded": fit_window(speech[:sec // 2], n_samples),
            "tone_1s+zeros": np.r_[tone[:sec], silence(n_samples - sec)],
            "speech": speech[:n_samples]}
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in rows.items()}


def write_golden(args: argparse.Namespace) -> dict:
    """The reference's logits on ``parity_inputs()`` per model, with our largest difference per input."""
    import hashlib
    import subprocess

    torch.set_num_threads(args.threads)
    inputs = parity_inputs(args.shared_dir)
    x = torch.from_numpy(np.stack(list(inputs.values())))
    commit = subprocess.run(["git", "-C", str(args.reference_dir), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or None
    golden: dict = {"about": "logits of the reference implementation (github.com/clovaai/aasist "
                             "models/AASIST.py) on bench_aasist.parity_inputs(); index 1 = bona fide",
                    "command": "python bench/bench_aasist.py --reference-dir CHECKOUT_OF_clovaai/aasist "
                               "--golden tests/data/aasist_reference_logits.json",
                    "reference_commit": commit, "torch": torch.__version__, "speech_file": PARITY_SPEECH,
                    "inputs": list(inputs), "models": {}}
    for name, (_, stem) in MODELS.items():
        path = args.weights_dir / f"{stem}.pth"
        reference = logits(load_reference(name, args.weights_dir, args.reference_dir), x, args.batch, reference=True)
        ours = logits(load_ours(name, args.weights_dir), x, args.batch)
        diff = (reference - ours).abs().amax(1)
        golden["models"][name] = {"checkpoint": f"{stem}.pth", "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                                  "logits": reference.tolist()}
        print(f"{name}: max abs logit diff, ours vs reference: "
              + ", ".join(f"{k} {d:.1e}" for k, d in zip(inputs, diff.tolist())))
    return golden


def load_ours(name: str, weights_dir: Path) -> Aasist:
    config, stem = MODELS[name]
    model = Aasist(config)
    model.load_state_dict(torch.load(weights_dir / f"{stem}.pth", map_location="cpu", weights_only=True))
    return model.eval()


def load_reference(name: str, weights_dir: Path, reference_dir: Path) -> torch.nn.Module:
    if str(reference_dir) not in sys.path:
        sys.path.insert(0, str(reference_dir))
    from models.AASIST import Model  # the reference checkout, imported from --reference-dir

    stem = MODELS[name][1]
    config = json.loads((weights_dir / f"{stem}.conf").read_text())["model_config"]
    model = Model(config)
    model.load_state_dict(torch.load(weights_dir / f"{stem}.pth", map_location="cpu", weights_only=True))
    return model.eval()


def logits(model: torch.nn.Module, x: torch.Tensor, batch: int, reference: bool = False) -> torch.Tensor:
    with torch.inference_mode():
        out = [model(x[i:i + batch]) for i in range(0, len(x), batch)]
    return torch.cat([o[1] if reference else o for o in out])


def timed(model: torch.nn.Module, x: torch.Tensor) -> float:
    with torch.inference_mode():
        start = time.perf_counter()
        model(x)
        return time.perf_counter() - start


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    x = torch.from_numpy(fixed_inputs())
    timing_batch = x[:args.batch] if args.batch <= len(x) else x.repeat(-(-args.batch // len(x)), 1)[:args.batch]
    result: dict = {"threads": args.threads, "batch": args.batch, "repeats": args.repeats,
                    "torch": torch.__version__, "reference_measured": args.reference_dir is not None,
                    "inputs": "bench_aasist.fixed_inputs(): 8 x 64600 samples", "models": {}}
    for name in MODELS:
        ours = load_ours(name, args.weights_dir)
        entry: dict = {"threads": args.threads, "batch": args.batch, "torch": torch.__version__,
                       "logits": logits(ours, x, args.batch).tolist()}
        models = {"ours": ours}
        if args.reference_dir is not None:
            reference = load_reference(name, args.weights_dir, args.reference_dir)
            models["reference"] = reference
            diff = (logits(reference, x, args.batch, reference=True) - torch.tensor(entry["logits"])).abs()
            entry["max_abs_diff"] = float(diff.max())
        times: dict[str, list[float]] = {k: [] for k in models}
        for rep in range(args.warmup + args.repeats):
            order = list(models) if rep % 2 == 0 else list(models)[::-1]  # interleaved, alternating order
            for key in order:
                seconds = timed(models[key], timing_batch)
                if rep >= args.warmup:
                    times[key].append(seconds)
        for key, values in times.items():
            entry[f"{key}_s"] = statistics.median(values)
        if "reference" in models:
            entry["speedup"] = entry["reference_s"] / entry["ours_s"]
        result["models"][name] = entry
    return result


def table(result: dict) -> str:
    lines = [f"AASIST on CPU, {result['threads']} threads, batch {result['batch']}, torch {result['torch']}", "",
             "| model | ours s/batch | reference s/batch | speedup | max abs logit diff |",
             "|---|---|---|---|---|"]
    for name, e in result["models"].items():
        ref = f"{e['reference_s']:.3f}" if "reference_s" in e else "not measured"
        speed = f"{e['speedup']:.2f}x" if "speedup" in e else "-"
        diff = f"{e['max_abs_diff']:.2e}" if "max_abs_diff" in e else "-"
        lines.append(f"| {name} | {e['ours_s']:.3f} | {ref} | {speed} | {diff} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference-dir", type=Path, help="checkout of github.com/clovaai/aasist (not measured if omitted)")
    ap.add_argument("--weights-dir", type=Path, default=REPO.parent / "shared" / "weights")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "aasist.json")
    ap.add_argument("--shared-dir", type=Path, default=REPO.parent / "shared", help="for --golden's speech file")
    ap.add_argument("--golden", type=Path, help="write the reference's logits on parity_inputs() here "
                                                "(needs --reference-dir; no timing)")
    args = ap.parse_args(argv)
    if args.golden is not None:
        if args.reference_dir is None:
            ap.error("--golden needs --reference-dir")
        golden = write_golden(args)
        args.golden.parent.mkdir(parents=True, exist_ok=True)
        args.golden.write_text(json.dumps(golden, indent=1) + "\n")
        print(f"\nwrote {args.golden}")
        return
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))
    if args.reference_dir is None:
        print("\nreference not measured (no --reference-dir): stored our logits and timings only")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
