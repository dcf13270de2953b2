"""Device check of the Whisper detectors' training: the same seeded run (``whisper-asp`` with the top encoder block
fine-tuned, ``finetune_layers=1``; no dropout, since the CPU and CUDA random streams differ) on the CPU and with
``--device cuda``, on the tests' toy corpus and a small random Whisper-shaped encoder (so it needs neither ../shared
nor the 75 MB wheel), then the two runs compared:

    python bench/cuda_finetune_check.py --out cuda_check.json

Prints and writes: seconds per run, dev EER per epoch on each device, and the largest difference between the two
runs' saved weights (relative to each tensor's largest value).  Exit 1 when CUDA is missing or the runs disagree
beyond float noise: the dev EER of an epoch differs, or a tensor by more than 10 % of its largest value (Adam divides
each step by the gradient's running RMS, so float-level gradient differences between the devices' kernels become
differences of up to a learning-rate-sized step per coordinate; measured on an H200: 4.2-7.2 % after 6 steps).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch


def random_encoder(path: Path, d: int = 64, heads: int = 2, layers: int = 2) -> Path:
    """An openai-whisper-format checkpoint (``dims`` + ``model_state_dict``) of a random encoder, seeded."""
    from voiceguard.detect.whisper import _torch_modules

    torch.manual_seed(0)
    enc = _torch_modules()(80, d, heads, layers)
    with torch.no_grad():
        enc.positional_embedding.normal_(0, 0.02)
    sd = {}
    for k, v in enc.state_dict().items():
        if ".qkv." in k:
            i = k.split(".")[1]
            q, kk, vv = v.chunk(3, 0)
            kind = k.rsplit(".", 1)[1]
            sd[f"encoder.blocks.{i}.attn.query.{kind}"] = q
            sd[f"encoder.blocks.{i}.attn.value.{kind}"] = vv
            if kind == "weight":
                sd[f"encoder.blocks.{i}.attn.key.weight"] = kk
            continue
        for a, b in ((".out.", ".attn.out."), (".fc1.", ".mlp.0."), (".fc2.", ".mlp.2.")):
            k = k.replace(a, b) if k.startswith("blocks.") else k
        sd["encoder." + k] = v
    dims = {"n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": d, "n_audio_head": heads, "n_audio_layer": layers}
    torch.save({"dims": dims, "model_state_dict": sd}, path)
    return path


def toy_corpus(root: Path) -> Path:
    """The training tests' toy corpus (tests/test_detect_train.py: bona fide = harmonic tones, spoof = noise)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from test_detect_train import toy_corpus as make

    return make(root, n=24)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("cuda_check.json"))
    ap.add_argument("--devices", default="cpu,cuda", help="the two devices compared (cpu,cpu checks the script)")
    args = ap.parse_args()
    first, second = args.devices.split(",")
    from voiceguard.detect.train import TrainConfig, TrainData, train_detector

    if "cuda" in args.devices and not torch.cuda.is_available():
        print("no CUDA device here", file=sys.stderr)
        sys.exit(1)
    result: dict = {"gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                    "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        enc = random_encoder(tmp / "enc.pt")
        corpus = toy_corpus(tmp / "corpus")
        data = TrainData(corpus / "train.txt", corpus / "flac", corpus / "dev.txt")
        weights = []
        for i, device in enumerate((first, second)):
            cfg = TrainConfig(model="whisper-asp", model_config={"encoder": str(enc), "finetune_layers": 1,
                                                                 "input_samples": 16000, "hidden": 16,
                                                                 "spec_n_ffts": [256], "dropout": 0.0},
                              epochs=4, batch_size=8, lr=3e-3, seed=0, views=2, workers=1, device=device)
            t0 = time.perf_counter()
            res = train_detector(cfg, data, tmp / f"run-{device}", progress=False, overwrite=True)
            result[f"{i}:{device}"] = {"seconds": round(time.perf_counter() - t0, 2), "best_epoch": res.best_epoch,
                              "dev_eer": [h.dev_eer for h in res.history]}
            weights.append(torch.load(res.checkpoint, map_location="cpu", weights_only=True))
    a, b = weights
    rel = {k: float((a[k].float() - b[k].float()).abs().max() / a[k].float().abs().max().clamp_min(1e-6))
           for k in a if a[k].is_floating_point()}
    diff = max(rel.values())
    result["max_relative_weight_difference"] = diff  # per tensor: max |cpu - cuda| / max |cpu|
    result["largest"] = dict(sorted(rel.items(), key=lambda kv: -kv[1])[:3])
    result["fine_tuned_block_saved"] = any(k.startswith("top.0.") for k in b)
    ok = result[f"0:{first}"]["dev_eer"] == result[f"1:{second}"]["dev_eer"] and diff < 0.1 and result["fine_tuned_block_saved"]
    result["agree"] = ok
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
