"""Pieces the query modules share: the event channel and lock, and LIKE escaping."""

from __future__ import annotations

EVENT_CHANNEL = "runwatch_events"  # PostgreSQL NOTIFY channel, sent when run events commit
_PG_EVENT_LOCK = 0x52554E45  # "RUNE": event inserts commit in id order, so cursors skip nothing


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
