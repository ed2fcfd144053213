"""Pieces the query modules and jobs share: the event channel, the event and audit locks, upsert."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

EVENT_CHANNEL = "runwatch_events"  # PostgreSQL NOTIFY channel, sent when run events commit
PG_EVENT_LOCK = 0x52554E45  # "RUNE": event inserts commit in id order, so cursors skip nothing
PG_AUDIT_LOCK = 0x52554155  # "RUAU": audit appends one at a time, so the ledger stays one chain


def escape_like(text: str) -> str:
    """`text` for a LIKE pattern, its wildcards and escape character taken literally."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def upsert(
    *,
    session: Session,
    table: sa.Table,
    rows: Sequence[dict[str, Any]],
    key: Sequence[str],
    increment: str | None = None,
    update: bool = True,
) -> None:
    """Insert rows, updating the ones whose key exists (and adding 1 to column `increment`).

    With `update=False` existing rows are left as they are.
    """
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    statement: Any = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    updates: dict[str, Any] = {
        name: statement.excluded[name]
        for name in rows[0]
        if update and name not in key and name != increment
    }
    if increment:
        updates[increment] = table.c[increment] + 1
    if updates:
        statement = statement.on_conflict_do_update(index_elements=list(key), set_=updates)
    else:
        statement = statement.on_conflict_do_nothing(index_elements=list(key))
    session.execute(statement, list(rows))
