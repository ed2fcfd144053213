"""A terminal progress bar for the CLI: done/total, %, rate and ETA on stderr."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from reports.durations import format_duration

_BAR_WIDTH = 30
_TTY_INTERVAL_S = 0.1  # redraws per second on a terminal
_PLAIN_INTERVAL_S = 2.0  # one line every few seconds into a log file or pipe


class ProgressBar:
    """Draws progress in place on a terminal, or as plain throttled lines when stderr is not one."""

    def __init__(
        self, label: str, total: int | None, *, start: int = 0, stream: TextIO | None = None
    ) -> None:
        self.label, self.total, self.start_done = label, total, start
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self.last_draw = 0.0
        self.done = start

    def update(self, done: int, total: int | None = None, *, force: bool = False) -> None:
        """Record `done` of `total` and redraw if enough time has passed (or `force`)."""
        self.done = done
        self.total = total if total is not None else self.total
        now = time.monotonic()
        interval = _TTY_INTERVAL_S if self.tty else _PLAIN_INTERVAL_S
        finished = bool(self.total) and done >= (self.total or 0)
        if not self.tty and finished and not force:
            return  # `close` prints the final line
        if force or now - self.last_draw >= interval:
            self.last_draw = now
            self._draw(now)

    def close(self, status: str = "") -> None:
        """Draw the final state and end the line."""
        self._draw(time.monotonic(), suffix=f"  {status}" if status else "")
        if self.tty:
            self.stream.write("\n")
        self.stream.flush()

    def line(self, now: float | None = None) -> str:
        """The progress text: label, bar, done/total, %, records/s and ETA."""
        elapsed = max((now or time.monotonic()) - self.started, 1e-9)
        rate = (self.done - self.start_done) / elapsed
        parts = [self.label]
        if self.total:
            share = min(self.done / self.total, 1.0)
            filled = int(share * _BAR_WIDTH)
            bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
            parts += [f"[{bar}]", f"{self.done:,}/{self.total:,}", f"{share:6.1%}"]
        else:
            parts.append(f"{self.done:,}")
        parts.append(f"{rate:,.0f}/s")
        parts.append(f"elapsed {format_duration(elapsed, sep='')}")
        if self.total and rate > 0 and self.done < self.total:
            parts.append(f"ETA {format_duration((self.total - self.done) / rate, sep='')}")
        return " ".join(parts)

    def _draw(self, now: float, suffix: str = "") -> None:
        text = self.line(now) + suffix
        if self.tty:
            self.stream.write("\r\x1b[K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
