"""Bulk writes (seeding): reserved ids and many-row inserts (COPY or one executemany)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from db.models import RunEvent
from db.queries.base import PG_EVENT_LOCK


def reserve_ids(*, session: Session, table: sa.Table, count: int) -> list[int]:
    """`count` unused ids of `table`: from its sequence on PostgreSQL, past the largest on SQLite."""
    if count <= 0:
        return []
    if session.get_bind().dialect.name == "postgresql":
        ids = session.execute(
            sa.text("SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"),
            {"t": table.name, "n": count},
        ).scalars()
        return sorted(int(i) for i in ids)
    # The write session holds SQLite's write lock, so nobody else takes these ids meanwhile.
    top = session.execute(sa.select(sa.func.coalesce(sa.func.max(table.c.id), 0))).scalar_one()
    return list(range(int(top) + 1, int(top) + 1 + count))


def bulk_insert(*, session: Session, table: sa.Table, rows: Sequence[dict[str, Any]]) -> int:
    """Insert many rows at once (COPY on PostgreSQL, one executemany on SQLite); return how many."""
    if not rows:
        return 0
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres and table.name == RunEvent.__tablename__:
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_EVENT_LOCK})
    if postgres:
        _copy_rows(session, table, rows)
    else:
        _executemany_rows(session, table, rows)
    return len(rows)


def _executemany_rows(session: Session, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """One driver-level executemany, with each column's own bind processing (3x less overhead)."""
    dialect = session.get_bind().dialect
    names = list(rows[0])
    values: list[Any] = [tuple(row[name] for name in names) for row in rows]
    convert = [
        (i, process)
        for i, name in enumerate(names)
        if (process := table.c[name].type.dialect_impl(dialect).bind_processor(dialect))
    ]
    if convert:  # column by column, only the columns whose type converts values
        columns = list(zip(*values, strict=True))
        for i, process in convert:
            columns[i] = tuple(map(process, columns[i]))
        values = list(zip(*columns, strict=True))
    columns_sql = ", ".join(f'"{name}"' for name in names)
    sql = f'INSERT INTO "{table.name}" ({columns_sql}) VALUES ({", ".join("?" * len(names))})'
    session.connection().exec_driver_sql(sql, values)


def _copy_rows(session: Session, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """COPY the rows into `table` through the session's own psycopg connection."""
    names = list(rows[0])
    json_at = [i for i, name in enumerate(names) if isinstance(table.c[name].type, sa.JSON)]
    columns = ", ".join(f'"{name}"' for name in names)
    copy_sql = f'COPY "{table.name}" ({columns}) FROM STDIN'
    driver: Any = session.connection().connection.driver_connection
    with driver.cursor() as cursor, cursor.copy(copy_sql) as copy:
        for row in rows:
            values = [row[name] for name in names]
            for i in json_at:
                if values[i] is not None:
                    values[i] = json.dumps(values[i])
            copy.write_row(values)
