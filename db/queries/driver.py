"""Hot reads on the bare driver: a Core statement compiled once, run on a kept DBAPI connection.

The Live, Logs and History pages read on every refresh tick. Through the ORM each of those reads
cost 5-15 times the query itself (statement construction and execution, a Row or an object per
row, a type processor per value, a pool checkout with its reset). Here a statement is built and
compiled once per dialect and shape (its `key`), executed with plain parameters on one of the
engine's kept read connections (db.engine.ReadConnections), and its rows come back as the
driver's tuples; the caller converts only the values it needs (`timestamp`, `json_value`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.compiler import SQLCompiler
from sqlmodel import Session

from db.engine import ReadConnections, read_connections

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
        merged = dict(self.defaults)
        for name, value in values.items():
            merged[name] = value if type(value) in _AS_IS else _plain(value, self.sqlite)
        if self.order is None:
            return merged
        return tuple(map(merged.__getitem__, self.order))


_AS_IS = (int, str, float, bool, type(None))  # values every driver binds unchanged


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


class Reader:
    """A DBAPI cursor and its dialect: runs compiled statements and returns the driver's rows.

    A context manager (a class, not a generator: it opens on every refresh tick)."""

    def __init__(self, dialect: sa.Dialect, cursor: Any, readers: ReadConnections | None) -> None:
        self.dialect = dialect
        self.sqlite = dialect.name == "sqlite"  # timestamps and JSON come back as text
        self.cursor = cursor
        self._readers = readers  # where the cursor's connection came from (None: a session's)

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *_: object) -> None:
        """Close the cursor; a kept connection goes back for the next read."""
        self.cursor.close()
        if self._readers is not None:
            self._readers.give_back(self.cursor.connection)

    def rows(
        self,
        key: Hashable,
        build: Callable[[], sa.ClauseElement],
        values: Mapping[str, Any] | None = None,
    ) -> Rows:
        """Every row of the statement `key` (built by `build` on first use) with these values."""
        sql, parameters = self._prepare(key, build, values)
        try:
            self._execute(sql, parameters)
            rows: Rows = self.cursor.fetchall()
        except self.dialect.loaded_dbapi.Error as error:
            raise self._translated(sql, parameters, error) from error
        return rows

    def chunks(
        self,
        key: Hashable,
        build: Callable[[], sa.ClauseElement],
        values: Mapping[str, Any] | None = None,
        size: int = 2000,
    ) -> Iterator[Rows]:
        """The statement's rows in chunks of `size` (constant memory on a `streaming` Reader)."""
        sql, parameters = self._prepare(key, build, values)
        try:
            self._execute(sql, parameters)
            while rows := self.cursor.fetchmany(size):
                yield rows
        except self.dialect.loaded_dbapi.Error as error:
            raise self._translated(sql, parameters, error) from error

    def _prepare(
        self, key: Hashable, build: Callable[[], sa.ClauseElement], values: Mapping[str, Any] | None
    ) -> tuple[str, Any]:
        statement = compiled(self.dialect, key, build)
        parameters = statement.parameters(values or {})
        for listener in _listeners:
            listener(statement.sql, parameters)
        return statement.sql, parameters

    def _translated(self, sql: str, parameters: Any, error: Exception) -> sa.exc.StatementError:
        # the SQLAlchemy exception the ORM would raise, so callers handle both paths alike
        error_class = self.dialect.loaded_dbapi.Error
        return sa.exc.DBAPIError.instance(sql, parameters, error, error_class, dialect=self.dialect)

    def _execute(self, sql: str, parameters: Any) -> None:
        try:
            self.cursor.execute(sql, parameters)
        except self.dialect.loaded_dbapi.Error as error:
            if self._readers is None or not self._readers.lost(error, self.cursor.connection):
                raise
            # the server went away since this kept connection last read: once more on a new one
            self.cursor = self._readers.take().cursor()
            self.cursor.execute(sql, parameters)


def reader(session: Session) -> Reader:
    """A Reader (use it in a `with`) in the session's transaction when it has one (its own writes
    are seen), else on one of the engine's kept read connections, where each statement reads the
    latest commits."""
    bind = session.get_bind()
    if session.in_transaction() or isinstance(bind, sa.Connection):
        return Reader(bind.dialect, session.connection().connection.cursor(), None)
    readers = read_connections(bind)
    return Reader(bind.dialect, readers.take().cursor(), readers)


def read(
    session: Session,
    key: Hashable,
    build: Callable[[], sa.ClauseElement],
    values: Mapping[str, Any] | None = None,
) -> Rows:
    """One statement's rows, on a Reader of its own."""
    with reader(session) as db:
        return db.rows(key, build, values)


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


_DECODER = json.JSONDecoder()


def _json_text(value: str | None) -> Any:
    # raw_decode skips json.loads' type and trailing-whitespace checks: this JSON is our own
    return None if value is None else _DECODER.raw_decode(value)[0]


def _json_decoded(value: Any) -> Any:
    return value
