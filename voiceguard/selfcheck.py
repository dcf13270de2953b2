"""Import check of the compiled dependency stack: ``python -m voiceguard.selfcheck``.

A torch / torchaudio pair built for different releases imports torch fine and then fails on
``import torchaudio`` (undefined symbol), which breaks everything built on torchaudio (SpeechBrain
ECAPA, the resample / filter torch twins of the attacks, the watermark trainer's mel loss). This
module imports each compiled dependency and runs one real operation of each, so ``.ci/setup.sh``
(and therefore CI) fails at install time on a broken set instead of deep inside a test.
"""

from __future__ import annotations

import sys


def run_checks() -> list[str]:
    """Import torch, torchaudio, speechbrain, onnxruntime and soxr and run one op of each.

    Returns:
        One line per check, ``"name version: what ran"``.

    Raises:
        ImportError, OSError, RuntimeError: whatever the broken package raises, unchanged.
    """
    import numpy as np
    import torch
    import torchaudio
    import torchaudio.functional as taf

    lines = []
    x = torch.randn(1, 16000)
    y = taf.resample(x, 16000, 8000)
    assert y.shape == (1, 8000), y.shape
    lines.append(f"torch {torch.__version__} + torchaudio {torchaudio.__version__}: resample 16 -> 8 kHz")

    import speechbrain
    from speechbrain.lobes.features import Fbank

    feats = Fbank(n_mels=40)(x)
    assert feats.shape[-1] == 40 and torch.isfinite(feats).all()
    lines.append(f"speechbrain {speechbrain.__version__}: 40-band Fbank")

    import onnxruntime

    lines.append(f"onnxruntime {onnxruntime.__version__}: providers {','.join(onnxruntime.get_available_providers())}")

    import soxr

    z = soxr.resample(np.zeros(16000, dtype=np.float32), 16000, 22050)
    assert len(z) == 22050
    lines.append(f"soxr {soxr.__version__}: resample 16 -> 22.05 kHz")
    return lines


def main() -> int:
    """Print the checks; exit 1 with the failing import's message when one fails."""
    try:
        for line in run_checks():
            print(f"selfcheck: {line}")
    except Exception as exc:  # noqa: BLE001 - the point is to report any failure in one line
        print(f"selfcheck: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
