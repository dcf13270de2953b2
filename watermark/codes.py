"""Message integrity: a 16-bit payload as an 80-bit codeword, decoded by soft maximum likelihood or refused.

A watermark that reports a wrong message with confidence is worse than none, so an engine that carries
enough raw bits never reports hard-decided bits as the message.  It embeds the codeword of a systematic
binary linear block code and reads it back as follows:

* **Code.** ``[80, 16]``: the 16 payload bits followed by 64 parity bits (``parity = payload @ P mod 2``).
  ``P`` is drawn from ``CODE_SEED``, chosen among seeds 0-299 for the largest minimum Hamming distance:
  ``d_min = 23``, with one codeword of that weight (``MessageCode.min_distance`` recomputes it by
  enumerating every codeword).  The parity bits are the check value over the payload.  The codeword is then
  XORed with a key-derived scrambling mask, so message 0 is not the all-zero word that silence reads as,
  and each key has its own codebook.
* **Decoding.** Exhaustive soft-decision maximum likelihood (Wicker, *Error Control Systems*, 1995, §9.1):
  the codeword with the largest correlation with the received bit LLRs, among all 2**16.  That is one
  ``[65536, 80] @ [80]`` product, about 2 ms.
* **Integrity check.** The best codeword is accepted only if at most ``RADIUS`` = 10 hard-decided bits
  differ from it.  That is below half of ``d_min``, so the accepted codeword is also the unique one within
  the radius.  Otherwise the result is "present, message unreadable", with the per-bit confidences.

Probability of a wrong message (``MessageCode.false_accept_bound`` / ``wrong_message_bound``):

* for audio that carries no decodable mark (unmarked, or a mark read at the wrong lag), the received hard
  bits are uniform; the union bound gives ``2**16 * V(80, 10) / 2**80 = 1.04e-7`` per decode;
* for a marked file whose bits flip independently with any error rate ``p``, the bound from the code's
  weight distribution is at most ``1.05e-7`` (worst ``p`` near 0.36);
* both are below the 1e-6 per file that issue #20 asks for.  For unmarked audio the presence test must
  fire first (calibrated at 1e-4 per file), so an unmarked file gets a wrong message with probability
  below 1e-11.

Payloads other than 16 bits are not supported: exhaustive decoding needs ``2**payload`` codewords.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

PAYLOAD_BITS = 16
CODE_BITS = 80
CODE_SEED = 138  # argmax over seeds 0-299 of (d_min, -count at d_min): d_min 23, one codeword of weight 23
RADIUS = 10  # accept a decode with at most this many hard-bit disagreements (d_min 23: unique within it)


@dataclass(frozen=True)
class Decoded:
    """One decode: ``message`` (None when refused), ``distance`` (hard bits differing from the best
    codeword), ``payload_llr`` (the received LLRs of the 16 systematic payload bits, descrambled)."""

    message: int | None
    distance: int
    payload_llr: np.ndarray

    @property
    def ok(self) -> bool:
        return self.message is not None


def _payloads(k: int) -> np.ndarray:
    return ((np.arange(2 ** k)[:, None] >> np.arange(k - 1, -1, -1)) & 1).astype(np.uint8)


@lru_cache(maxsize=4)
def _codebook(key: int) -> tuple[np.ndarray, np.ndarray]:
    """(codewords ``[2**16, 80]`` uint8 after scrambling, the scrambling mask ``[80]``) for ``key``."""
    k, n = PAYLOAD_BITS, CODE_BITS
    parity = np.random.default_rng(CODE_SEED).integers(0, 2, (k, n - k)).astype(np.int32)
    msgs = _payloads(k)
    words = np.concatenate([msgs, ((msgs.astype(np.int32) @ parity) & 1).astype(np.uint8)], axis=1)
    mask = np.random.default_rng([0xC0DE, int(key)]).integers(0, 2, n).astype(np.uint8)
    return words ^ mask[None, :], mask


class MessageCode:
    """The ``[80, 16]`` message code for one key (see the module docstring).

    ``encode(message) -> bits [80]`` (0/1 int64); ``decode(llr [80]) -> Decoded``; LLRs are positive for
    bit 1, in any consistent scale (only signs and relative sizes matter).
    """

    payload_bits = PAYLOAD_BITS
    n = CODE_BITS
    radius = RADIUS

    def __init__(self, key: int = 0):
        self.key = int(key)
        words, self.mask = _codebook(self.key)
        self._words = words
        self._pm1 = None  # +-1 float32 codebook, made on the first decode (21 MB)

    def encode(self, message: int) -> np.ndarray:
        """Codeword bits ``[80]`` (0/1, int64) of a message in [0, 2**16).

        Raises:
            ValueError: message out of range.
        """
        if not 0 <= int(message) < 2 ** self.payload_bits:
            raise ValueError(f"message {message} does not fit in {self.payload_bits} bits")
        return self._words[int(message)].astype(np.int64)

    def decode(self, llr: np.ndarray) -> Decoded:
        """Soft maximum-likelihood decode of ``llr [80]`` (float; > 0 means bit 1), refused beyond
        ``radius`` hard-bit disagreements. Non-finite LLRs count as 0 (no information)."""
        llr = np.nan_to_num(np.asarray(llr, dtype=np.float32).reshape(-1), nan=0.0, posinf=0.0, neginf=0.0)
        if llr.shape != (self.n,):
            raise ValueError(f"expected {self.n} LLRs, got {llr.shape}")
        if self._pm1 is None:
            self._pm1 = self._words.astype(np.float32) * 2 - 1
        best = int(np.argmax(self._pm1 @ llr))
        hard = (llr > 0).astype(np.uint8)  # an LLR of exactly 0 reads as 0 (counted against a 1)
        distance = int(np.count_nonzero(hard != self._words[best]))
        signs = 1.0 - 2.0 * self.mask[:self.payload_bits].astype(np.float32)  # undo the scrambling
        return Decoded(best if distance <= self.radius else None, distance, llr[:self.payload_bits] * signs)

    # ---- analysis
    def weight_distribution(self) -> np.ndarray:
        """``A[w]``: number of nonzero codewords of Hamming weight ``w`` (before scrambling, i.e. the
        distances between codewords), ``[81]`` int64."""
        words = self._words ^ self.mask[None, :]
        return np.bincount(words[1:].sum(axis=1).astype(np.int64), minlength=self.n + 1)

    def min_distance(self) -> int:
        return int(np.flatnonzero(self.weight_distribution())[0])

    def false_accept_bound(self) -> float:
        """Union bound on accepting any message for uniformly random hard bits: ``2**k V(n, t) / 2**n``."""
        ball = sum(math.comb(self.n, i) for i in range(self.radius + 1))
        return float(2 ** self.payload_bits * ball / 2 ** self.n)

    def wrong_message_bound(self, p: float) -> float:
        """Union bound on accepting a wrong message when each of the embedded codeword's bits flips
        independently with probability ``p``: sum over codewords at distance ``w`` of P(received within
        ``radius`` of that codeword)."""
        a = self.weight_distribution()
        n, t = self.n, self.radius
        total = 0.0
        for w in np.flatnonzero(a):
            s = 0.0
            for i in range(w + 1):  # i flips among the w differing positions, j among the n - w others
                for j in range(max(0, t - (w - i)) + 1):
                    if w - i + j <= t:
                        s += (math.comb(w, i) * p ** i * (1 - p) ** (w - i)
                              * math.comb(n - w, j) * p ** j * (1 - p) ** (n - w - j))
            total += float(a[w]) * s
        return total
