"""A tiny progress reporter for long operator commands: a bar with rate and ETA on a TTY, plain lines otherwise.

    with Progress(total=len(items), label="replaying") as bar:
        for item in items:
            ...
            bar.advance()

It writes to stderr only, so a command's stdout (tables, JSON) stays clean for scripts.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

BAR_WIDTH = 28
TTY_REFRESH_S = 0.1
PLAIN_EVERY_S = 5.0


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Counts work done out of `total` and shows it; redraws at most every 0.1 s (TTY) or 5 s (plain)."""

    def __init__(
        self,
        total: int | None,
        label: str,
        *,
        stream: TextIO | None = None,
        tty: bool | None = None,
        every: float | None = None,
    ) -> None:
        self.total = total
        self.label = label
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty() if tty is None else tty
        self._every = every if every is not None else (TTY_REFRESH_S if self._tty else PLAIN_EVERY_S)
        self._started = time.monotonic()
        self._shown_at = self._started

    def __enter__(self) -> Progress:
        self._started = self._shown_at = time.monotonic()
        if self._tty:
            self._draw()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.finish()

    def advance(self, n: int = 1) -> None:
        """Record n more units done; redraw if enough time has passed since the last one."""
        self.done += n
        now = time.monotonic()
        if now - self._shown_at >= self._every:
            self._shown_at = now
            self._draw()

    def finish(self) -> None:
        """Show the final count, elapsed time and rate (called on leaving the `with` block)."""
        elapsed = time.monotonic() - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        of_total = f"/{self.total}" if self.total is not None else ""
        end = f"{self.label}: {self.done}{of_total} in {_duration(elapsed)} ({rate:.0f}/s)"
        self._write(("\r\x1b[K" + end + "\n") if self._tty else end + "\n")

    @property
    def rate(self) -> float:
        """Units per second so far."""
        elapsed = time.monotonic() - self._started
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta(self) -> float | None:
        """Seconds left at the current rate, or None while unknown."""
        if self.total is None or self.rate <= 0:
            return None
        return max(0.0, (self.total - self.done) / self.rate)

    def _draw(self) -> None:
        eta = self.eta()
        eta_text = f"ETA {_duration(eta)}" if eta is not None else "ETA --:--"
        if self.total:
            share = min(1.0, self.done / self.total)
            counts = f"{self.done}/{self.total} {share:4.0%}"
        else:
            share, counts = 0.0, str(self.done)
        if self._tty:
            filled = round(share * BAR_WIDTH)
            bar = "#" * filled + "." * (BAR_WIDTH - filled)
            self._write(f"\r\x1b[K{self.label} [{bar}] {counts} {self.rate:.0f}/s {eta_text}")
        else:
            self._write(f"{self.label}: {counts}, {self.rate:.0f}/s, {eta_text}\n")

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()
