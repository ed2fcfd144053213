"""Hot reads on the bare driver: a Core statement compiled once, run on a pooled DBAPI connection.

The Live, Logs and History pages read on every refresh tick. Through the ORM each of those reads
cost 5-15 times the query itself (statement construction and execution, a Row or an object per
row, a type processor per value). Here a statement is built and compiled once per dialect and
shape (its `key`), executed with plain parameters, and its rows come back as the driver's tuples;
the caller converts only the values it needs (`timestamp`, `json_value`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.compiler import SQLCompiler
from sqlmodel import Session

Rows = list[tuple[Any, ...]]
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy's SQLite DateTime stores a (UTC) timestamp
# Appended to a SQLite timestamp, datetime.fromisoformat parses it to an aware UTC datetime in C:
# several times faster than parsing and then .replace(tzinfo=UTC).
SQLITE_UTC = "+00:00"


@dataclass(frozen=True)
class Compiled:
    """A statement's SQL for one dialect, and how to turn named values into its parameters."""

    sql: str
    defaults: dict[str, Any]  # values bound when the statement was built (constants)
    order: tuple[str, ...] | None  # parameter names in position order; None for named styles
    sqlite: bool

    def parameters(self, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        """The driver parameters for these named values (constants filled in)."""
        merged = self.defaults | {name: _plain(v, self.sqlite) for name, v in values.items()}
        if self.order is None:
            return merged
        return tuple(merged[name] for name in self.order)


_compiled: dict[tuple[str, Hashable], Compiled] = {}
_lock = threading.Lock()
_listeners: list[Callable[[str, Any], None]] = []  # told of every statement run here


def listen(listener: Callable[[str, Any], None]) -> None:
    """Tell `listener(sql, parameters)` of every statement read here (benchmarks, tracing)."""
    _listeners.append(listener)


def unlisten(listener: Callable[[str, Any], None]) -> None:
    """Stop telling `listener`."""
    _listeners.remove(listener)


def compiled(dialect: sa.Dialect, key: Hashable, build: Callable[[], sa.ClauseElement]) -> Compiled:
    """The statement `build()` makes, compiled for `dialect` on first use of `key`."""
    found = _compiled.get((dialect.name, key))
    if found is not None:
        return found
    statement = build().compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    assert isinstance(statement, SQLCompiler)
    sqlite = dialect.name == "sqlite"
    result = Compiled(
        sql=statement.string,
        defaults={name: _plain(v, sqlite) for name, v in statement.params.items()},
        order=tuple(statement.positiontup or ()) if dialect.positional else None,
        sqlite=sqlite,
    )
    with _lock:
        return _compiled.setdefault((dialect.name, key), result)


def _plain(value: Any, sqlite: bool) -> Any:
    """A parameter value as the driver takes it (what the column types' bind processors do)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given; Runwatch stores timezone-aware UTC only")
        value = value.astimezone(UTC)
        return value.strftime(_SQLITE_TIME) if sqlite else value
    return value


@contextmanager
def cursor(session: Session) -> Iterator[Any]:
    """A DBAPI cursor: in the session's transaction when it has one (its own writes are seen),
    else on a pooled connection of its engine, each statement reading the latest commits."""
    bind = session.get_bind()
    if session.in_transaction() or isinstance(bind, sa.Connection):
        raw = session.connection().connection
        handle = raw.cursor()
        try:
            yield handle
        finally:
            handle.close()
        return
    pooled = bind.raw_connection()
    try:
        handle = pooled.cursor()
        try:
            yield handle
        finally:
            handle.close()
    finally:
        pooled.close()


def fetch(
    handle: Any,
    session: Session,
    key: Hashable,
    build: Callable[[], sa.ClauseElement],
    values: Mapping[str, Any] | None = None,
) -> Rows:
    """Every row of the statement `key` (built by `build` on first use) with these values."""
    dialect = session.get_bind().dialect
    statement = compiled(dialect, key, build)
    parameters = statement.parameters(values or {})
    for listener in _listeners:
        listener(statement.sql, parameters)
    try:
        handle.execute(statement.sql, parameters)
        rows: Rows = handle.fetchall()
    except dialect.loaded_dbapi.Error as error:
        # the SQLAlchemy exception the ORM would raise, so callers handle both paths alike
        raise sa.exc.DBAPIError.instance(
            statement.sql, parameters, error, dialect.loaded_dbapi.Error, dialect=dialect
        ) from error
    return rows


def read(
    session: Session,
    key: Hashable,
    build: Callable[[], sa.ClauseElement],
    values: Mapping[str, Any] | None = None,
) -> Rows:
    """One statement's rows on a cursor of its own (see `cursor`)."""
    with cursor(session) as handle:
        return fetch(handle, session, key, build, values)


def is_sqlite(session: Session) -> bool:
    """Whether the session's database is SQLite (timestamps and JSON come back as text)."""
    return session.get_bind().dialect.name == "sqlite"


def timestamp(sqlite: bool) -> Callable[[Any], datetime | None]:
    """The converter of a timestamp column's raw value to a timezone-aware UTC datetime."""
    return _sqlite_timestamp if sqlite else _postgres_timestamp


def _sqlite_timestamp(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value + SQLITE_UTC)


def _postgres_timestamp(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def json_value(sqlite: bool) -> Callable[[Any], Any]:
    """The converter of a JSON column's raw value (text on SQLite, decoded by psycopg)."""
    return _json_text if sqlite else _json_decoded


def _json_text(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def _json_decoded(value: Any) -> Any:
    return value
