"""Status badges and the formatting every page shares: durations, relative and local times."""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import streamlit as st

from db.models import RunStatus, utcnow
from db.queries import EventRow

IDLE = "idle"  # a job with no active run whose last run did not fail or get cancelled

# colour and label of each status badge; blue means moving, red needs attention
_BADGES: dict[str, tuple[str, str, str]] = {
    RunStatus.RUNNING: ("blue", "Running", ":material/play_circle:"),
    RunStatus.PENDING: ("violet", "Pending", ":material/schedule:"),
    RunStatus.FINISHED: ("green", "Finished", ":material/check_circle:"),
    RunStatus.FAILED: ("red", "Failed", ":material/error:"),
    RunStatus.CANCELLED: ("orange", "Cancelled", ":material/cancel:"),
    IDLE: ("gray", "Idle", ":material/pause_circle:"),
}


def status_label(status: str) -> str:
    """The human label of a run status (or `idle`)."""
    return _BADGES.get(status, ("gray", status.title(), ""))[1]


def status_badge(status: str) -> None:
    """Draw the colour-coded badge of a status."""
    colour, label, icon = _BADGES.get(status, ("gray", status.title(), ""))
    st.badge(label, color=colour, icon=icon or None)  # type: ignore[arg-type]


def metrics_row(cells: Sequence[tuple[str, str, str | None]]) -> None:
    """Metrics (label, value, help) side by side, each as wide as its value, wrapping to a new line
    rather than cutting a value off in a narrow window."""
    with st.container(horizontal=True, gap="large"):
        for label, value, help_text in cells:
            st.metric(label, value, help=help_text, width="content")


def badge_markdown(status: str) -> str:
    """The badge as inline Markdown, for captions and table cells."""
    colour, label, _ = _BADGES.get(status, ("gray", status.title(), ""))
    return f":{colour}-badge[{label}]"


def relative_time(moment: datetime | None, now: datetime | None = None) -> str:
    """How long ago `moment` was: `just now`, `5 min ago`, `3 h ago`, `2 d ago`."""
    if moment is None:
        return "never"
    seconds = ((now or utcnow()) - moment).total_seconds()
    if seconds < 45:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "1 min ago"


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """How long ago `moment` was, to the second under a minute: `12 s ago`, `3 min ago`."""
    if moment is None:
        return "never"
    seconds = ((now or utcnow()) - moment).total_seconds()
    return f"{max(int(seconds), 0)} s ago" if seconds < 60 else relative_time(moment, now)


def viewer_zone() -> tzinfo:
    """The viewer's browser time zone (UTC when the browser does not say)."""
    name = getattr(st.context, "timezone", None)
    try:
        return ZoneInfo(name) if name else UTC
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def local_time(moment: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """`moment` in the viewer's time zone (an em dash when missing)."""
    return moment.astimezone(viewer_zone()).strftime(fmt) if moment else "—"


LEVEL_COLOURS = {"DEBUG": "#808495", "INFO": "inherit", "WARNING": "#b45309", "ERROR": "#dc2626"}


def log_html(lines: Sequence[EventRow]) -> str:
    """Log lines as a compact HTML table coloured by level (a Styler would cost ~0.3 s per tick)."""
    head = "".join(f"<th style='{_CELL}'>{name}</th>" for name in _LOG_HEADERS)
    body = "".join(_log_row(line) for line in lines)
    return (
        "<table style='width:100%;border-collapse:collapse;font-size:0.85rem'>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


_LOG_HEADERS = ("Time", "Run", "Level", "Step", "Message")
_CELL = "text-align:left;padding:2px 8px;border-bottom:1px solid rgba(128,128,128,0.2)"


def _log_row(line: EventRow) -> str:
    colour = LEVEL_COLOURS.get(line.level, "inherit")
    cells = (local_time(line.ts), f"#{line.run_id}", line.level, line.step or "", line.message)
    tds = "".join(f"<td style='{_CELL}'>{html.escape(str(cell))}</td>" for cell in cells)
    return f"<tr style='color:{colour}' data-level='{line.level}'>{tds}</tr>"
