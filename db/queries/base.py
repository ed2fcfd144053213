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
    postgres = session.get_bind().dialect.name == "postgresql"
    statement: Any = (postgresql.insert if postgres else sqlite.insert)(table)
    if postgres:  # psycopg's executemany would send one INSERT per row: send one per batch
        statement = statement.from_select(list(rows[0]), _unnested(table, list(rows[0])))
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
    if postgres:
        session.execute(
            statement, {f"rows_{name}": [row[name] for row in rows] for name in rows[0]}
        )
    else:
        session.execute(statement, list(rows))  # one prepared statement, stepped in C per row


def _unnested(table: sa.Table, names: Sequence[str]) -> sa.Select[Any]:
    """SELECT of rows passed as one array parameter per column, unnested in lockstep (PostgreSQL)."""
    return sa.select(
        *(
            sa.func.unnest(sa.bindparam(f"rows_{name}", type_=postgresql.ARRAY(table.c[name].type)))
            for name in names
        )
    )
