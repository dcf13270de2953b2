"""Progress of a batch on stderr: a tqdm bar on a terminal, a plain line every few seconds otherwise.

Batch commands (``scan``, ``watermark detect`` / ``embed``) report progress this way so that a long run
redirected to a log file (``2> scan.log``, a CI job, ``nohup``) still shows where it is.
"""
from __future__ import annotations

import contextlib
import sys
import time
from typing import Callable, ContextManager, TextIO

#: seconds between two plain progress lines when stderr is not a terminal
PLAIN_INTERVAL_S = 5.0


def format_eta(seconds: float) -> str:
    """``'40 s'``, ``'11 min'`` or ``'2.3 h'`` for a duration in seconds (``'?'`` when unknown)."""
    if not seconds >= 0 or seconds == float("inf"):
        return "?"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """Counts finished items of a batch and reports on ``stream`` (stderr by default).

    Args:
        desc: the command's name, first word of each line (``"scan"``).
        enabled: False silences it (``--no-progress``).
        stream: where to write; its ``isatty()`` picks the tqdm bar (True) or plain lines (False).
        unit: what is counted (``"files"``).
        interval: seconds between plain lines; the first comes after one interval, so a short run prints none.
        clock: monotonic clock in seconds (injectable for tests).

    Use: ``set_total(n)`` once the inputs are known, ``advance()`` per finished item, ``close()`` at the end.
    A plain line reads ``scan: 120/3000 files, 4.1 files/s, ETA 11 min``.
    """

    def __init__(self, desc: str, *, enabled: bool = True, stream: TextIO | None = None, unit: str = "files",
                 interval: float = PLAIN_INTERVAL_S, clock: Callable[[], float] = time.monotonic):
        self.desc, self.enabled, self.unit, self.interval, self.clock = desc, enabled, unit, interval, clock
        self.stream = stream if stream is not None else sys.stderr
        self.total: int | None = None
        self.done = 0
        self._start = clock()
        self._last = self._start
        self._bar = None
        try:
            self.tty = bool(self.stream.isatty())
        except (AttributeError, ValueError):
            self.tty = False

    def set_total(self, total: int) -> None:
        """The number of items this run will process (known after expanding folders and globs); the rate and
        the interval count from here (model loading is not part of the rate)."""
        self.total = int(total)
        self._start = self._last = self.clock()
        if self.enabled and self.tty and self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=self.desc, unit=self.unit.rstrip("s") or "it",
                             file=self.stream, dynamic_ncols=True)

    def advance(self, n: int = 1) -> None:
        """``n`` more items finished; prints a plain line when ``interval`` seconds passed since the last one."""
        self.done += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        now = self.clock()
        if not self.tty and now - self._last >= self.interval:
            self._last = now
            self._print(self.line(now))

    def line(self, now: float | None = None) -> str:
        """The plain progress line for the current state."""
        now = self.clock() if now is None else now
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed
        of = f"/{self.total}" if self.total is not None else ""
        text = f"{self.desc}: {self.done}{of} {self.unit}, {rate:.1f} {self.unit}/s"
        if self.total is not None and self.done < self.total:
            text += f", ETA {format_eta((self.total - self.done) / rate) if rate > 0 else '?'}"
        return text

    def _print(self, text: str) -> None:
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # stderr closed: progress is optional
            self.enabled = False

    def pause(self) -> ContextManager:
        """A context in which other output may be written to the terminal without garbling the bar."""
        if self._bar is None:
            return contextlib.nullcontext()
        from tqdm import tqdm

        return tqdm.external_write_mode(file=self.stream)

    def close(self) -> None:
        """Remove the bar (the command prints its own summary line)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

