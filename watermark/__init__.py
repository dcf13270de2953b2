"""Audio watermarking: embed a 16-bit message, detect it later (``voiceguard.watermark``).

    >>> from voiceguard.watermark import load_watermarker
    >>> wm = load_watermarker()                      # the shipped AudioSeal-format model, offline
    >>> marked = wm.embed(audio, sample_rate, message=0xBEEF)
    >>> wm.detect(marked, sample_rate).message_hex   # '0xBEEF'
"""
from .base import (LAYOUTS, WATERMARKERS, AudioArrayError, DetectionResult, Watermarker, WatermarkSegment,
                   get_watermarker, message_bits, parse_message)

__all__ = ["LAYOUTS", "WATERMARKERS", "AudioArrayError", "DetectionResult", "Watermarker", "WatermarkSegment",
           "get_watermarker", "load_watermarker", "message_bits", "parse_message"]


def load_watermarker(engine: str = "audioseal", **kwargs) -> Watermarker:
    """An engine ready to use: ``audioseal`` (default cards, or ``generator=``/``detector=`` names or paths)
    or ``spread-spectrum`` (``key=``, ``snr_db=``)."""
    return get_watermarker(engine, **kwargs)
