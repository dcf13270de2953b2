"""Audio watermarking: embed a 16-bit message, detect it later (``voiceguard.watermark``).

    >>> from voiceguard.watermark import load_watermarker
    >>> wm = load_watermarker()                      # DEFAULT_ENGINE: the coded spread-spectrum watermark
    >>> marked = wm.embed(audio, sample_rate, message=0xBEEF)
    >>> wm.detect(marked, sample_rate).message_hex   # '0xBEEF' (only when it passes the integrity check)

``load_watermarker(engine, need=..., **options)`` is the one way to get an engine; importing this package
registers every engine in ``WATERMARKERS``.  Files in, files out: ``voiceguard.api.embed_file`` /
``detect_file``.
"""
from . import audioseal_engine, codes, dsp  # noqa: F401  (the engines register themselves in WATERMARKERS)
from .base import (DEFAULT_ENGINE, LAYOUTS, NEEDS, WATERMARKERS, AudioArrayError, DetectionResult, EngineOptionError, MessageError,
                   Watermarker, WatermarkSegment, engine_options, load_watermarker, message_bits, parse_message)

__all__ = ["DEFAULT_ENGINE", "LAYOUTS", "NEEDS", "WATERMARKERS", "AudioArrayError", "DetectionResult", "EngineOptionError",
           "MessageError", "Watermarker", "WatermarkSegment", "engine_options", "load_watermarker", "message_bits",
           "parse_message"]
