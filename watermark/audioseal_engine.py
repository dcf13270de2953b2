"""The AudioSeal engine: audioseal's own ``AudioSealWM`` / ``AudioSealDetector`` behind the shared interface.

Defaults to the project's small model shipped in ``watermark/cards/`` (offline); the official cards
(``audioseal_wm_16bits`` + ``audioseal_detector_16bits``, and the streaming pair) load the same way
when their weights are cached or downloadable.

The AudioSeal format carries 16 raw bits, the message itself, with no room for a check value, so this
engine never reports a message (``message_status="unverified"``): its bits and per-bit confidences are in
the result.  The shipped model also needs frame-aligned input: it reads the message wrong after trims that
are not multiples of its 320-sample hop (issue #20), which only retraining on random sub-frame offsets can
fix.  ``spread-spectrum`` is the default engine for these reasons.
"""
from __future__ import annotations

import numpy as np

from voiceguard.audio import SAMPLE_RATE

from .base import HOP, Watermarker, register
from .models import DEFAULT_DETECTOR, DEFAULT_GENERATOR, eager, load_detector, load_generator, scale_to_snr


@register
class AudioSealEngine(Watermarker):
    name = "audioseal"
    chunk_seconds = 10.0  # detection runs on chunks this long ...
    context_seconds = 1.0  # ... with this much audio either side, dropped afterwards
    #: The shipped model misses marks in clips of 1.0 s or less (the 1 s detection window then spans the
    #: whole clip, weak edge frames included, and its mean falls below the calibrated 0.985); from 1.25 s
    #: on every tested clip is found, so 1.5 s leaves a margin. A generator card may set ``min_seconds``.
    min_seconds = 1.5

    def __init__(self, generator=None, detector=None, snr_db: float | None = None, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.detector = detector
        self.snr_db = snr_db  # scale each block's watermark to this level below the host (None: raw output)
        if detector is not None:
            self.nbits = int(detector.nbits)

    @classmethod
    def load(cls, *, need: str = "both", generator: str = DEFAULT_GENERATOR, detector: str = DEFAULT_DETECTOR,
             threshold: float | None = None, strength: float | None = None, snr_db: float | None = None,
             model: str | None = None) -> "AudioSealEngine":
        """Subclass contract (``load_watermarker("audioseal", ...)`` is the getter): the engine from card
        names or audioseal-format checkpoint paths, only the generator for ``need="embed"`` and only the
        detector for ``need="detect"``; the detector card's calibration supplies the threshold and the
        generator card the strength and ``snr_db`` unless given."""
        gen = load_generator(generator) if need in ("both", "embed") else (None, None, None)
        det = load_detector(detector) if need in ("both", "detect") else (None, None, None)
        det_card, gen_card = det[1], gen[1]
        calib = (det_card.extra.get("calibration") or {}) if det_card is not None else {}
        if threshold is None:
            threshold = float(calib.get("threshold", 0.5))
        if strength is None:
            strength = float(gen_card.extra.get("strength", 1.0)) if gen_card is not None else 1.0
        if snr_db is None and gen[2] is not None:
            snr_db = (gen_card.extra.get("snr_db") if gen_card is not None else None) or gen[2].get("snr_db")
        names = [c.name for c in (gen_card, det_card) if c is not None]
        engine = cls(gen[0], det[0], snr_db=snr_db, threshold=threshold, strength=strength, calibration=calib,
                     model=model or "+".join(names) or "audioseal")
        if gen_card is not None and gen_card.extra.get("min_seconds") is not None:
            engine.min_seconds = float(gen_card.extra["min_seconds"])
        return engine

    def watermark_blocks(self, x: np.ndarray, bits: np.ndarray) -> np.ndarray:
        import torch

        if self.generator is None:
            raise RuntimeError("this engine was loaded without a generator (detection only)")
        with torch.inference_mode(), eager():
            xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[:, None, :]
            msg = torch.from_numpy(np.asarray(bits, dtype=np.int64))[None, :].repeat(len(x), 1)
            w = self.generator.get_watermark(xt, message=msg)
            if self.snr_db is not None:  # as in training: the level follows the host, block by block
                w = scale_to_snr(w, xt, self.snr_db)
        return w[:, 0].numpy()

    def frame_scores(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame presence probability and bit logits; long audio in chunks with context either side,
        pooled to frames chunk by chunk (memory stays at one chunk's worth of per-sample outputs)."""
        import torch

        if self.detector is None:
            raise RuntimeError("this engine was loaded without a detector (embedding only)")
        chunk = int(self.chunk_seconds * SAMPLE_RATE)  # a multiple of HOP: frames never straddle chunks
        ctx = int(self.context_seconds * SAMPLE_RATE)
        n = len(x)
        presence, logits = [], []
        with torch.inference_mode(), eager():
            for s in range(0, n, chunk):
                a, b = max(0, s - ctx), min(n, s + chunk + ctx)
                xt = torch.from_numpy(np.ascontiguousarray(x[a:b], dtype=np.float32))[None, None, :]
                out = self.detector.detector(xt)[0]  # [2 + nbits, len]
                keep = slice(s - a, s - a + min(chunk, n - s))
                p = torch.softmax(out[:2, keep], dim=0)[1]
                bits = out[2:, keep]
                frames = p.shape[-1] // HOP
                if frames == 0:  # a tail shorter than one frame: dropped, unless it is all the audio
                    if s > 0:
                        continue
                    presence.append(p.mean(-1, keepdim=True).numpy())
                    logits.append(bits.mean(-1)[None].numpy())
                    continue
                presence.append(p[:frames * HOP].reshape(frames, HOP).mean(-1).numpy())
                logits.append(bits[:, :frames * HOP].reshape(self.nbits, frames, HOP).mean(-1).T.numpy())
        return np.concatenate(presence), np.concatenate(logits)
