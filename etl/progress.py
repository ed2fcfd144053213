"""A terminal progress bar for the CLI: done/total, %, rate and ETA on stderr."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TextIO

from reports.durations import format_duration
from reports.eta import Pace, estimate

_BAR_WIDTH = 30
_TTY_INTERVAL_S = 0.1  # redraws per second on a terminal
_PLAIN_INTERVAL_S = 2.0  # one line every few seconds into a log file or pipe


class ProgressBar:
    """Draws progress in place on a terminal, or as plain throttled lines when stderr is not one.

    Its ETA is the app's and the API's (reports.eta): from the run's pace when the caller passes
    it, else from the pace of the updates themselves, weighed against `history` (records/s).
    """

    def __init__(
        self,
        label: str,
        total: int | None,
        *,
        start: int = 0,
        stream: TextIO | None = None,
        history: Sequence[float] = (),
    ) -> None:
        self.label, self.total, self.start_done = label, total, start
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = self.last_update = time.monotonic()
        self.last_draw = 0.0
        self.done = start
        self.history, self.pace = list(history), Pace()

    def update(
        self, done: int, total: int | None = None, *, pace: Pace | None = None, force: bool = False
    ) -> None:
        """Record `done` of `total` (and the run's `pace`); redraw when due (or `force`)."""
        now = time.monotonic()
        if pace is None:  # each update is a batch of its own
            pace = self.pace.add(done - self.done, now - self.last_update, now - self.started)
        self.done, self.pace, self.last_update = done, pace, now
        self.total = total if total is not None else self.total
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
        if self.total and self.done < self.total:
            parts.append(self.eta_text())
        return " ".join(parts)

    def eta_text(self) -> str:
        """`ETA 1m05s (58s–1m12s)`: likely, and the range 9 runs in 10 end in (as of the update)."""
        remaining = max((self.total or 0) - self.done, 0)
        eta = estimate(remaining=remaining, pace=self.pace, history=self.history).seconds
        if eta is None:
            return "ETA unknown"
        likely, early, late = (format_duration(s, sep="") for s in eta)
        return f"ETA {likely}" + ("" if early == late else f" ({early}–{late})")

    def _draw(self, now: float, suffix: str = "") -> None:
        text = self.line(now) + suffix
        if self.tty:
            self.stream.write("\r\x1b[K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
