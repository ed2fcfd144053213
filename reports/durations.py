"""Durations as people read them, the same in the app, the CLI and its progress bar."""

from __future__ import annotations


def format_duration(seconds: float | None, sep: str = " ") -> str:
    """Seconds as `4.2s`, `12s`, `3m{sep}05s` or `1h{sep}02m`; an em dash when unknown."""
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{max(seconds, 0.0):.1f}s"
    return clock_text(round(seconds), sep)


def clock_text(whole: int, sep: str = "") -> str:
    """Whole seconds as `1h{sep}02m`, `3m{sep}05s` or `12s`: the two largest units."""
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{sep}{minutes:02d}m"
    if minutes:
        return f"{minutes}m{sep}{secs:02d}s"
    return f"{secs}s"
