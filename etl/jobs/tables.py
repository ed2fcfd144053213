"""The tables jobs load into: csv_import's table layouts, bulk upserts, COPY and rejects."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from db.models import CsvReject

_PG_BATCH_TABLE = "runwatch_csv_batch"  # temporary table of one upsert on PostgreSQL


@dataclass(frozen=True)
class TableLayout:
    """An existing table's column names and the column sets it keeps unique."""

    columns: frozenset[str]
    unique_keys: tuple[frozenset[str], ...]


def table_layout(*, session: Session, name: str) -> TableLayout | None:
    """The layout of table `name`, or None when there is no such table."""
    inspector = sa.inspect(session.connection())
    if not inspector.has_table(name):
        return None
    keys: list[Sequence[Any]] = [inspector.get_pk_constraint(name)["constrained_columns"]]
    keys += [u["column_names"] for u in inspector.get_unique_constraints(name)]
    keys += [i["column_names"] for i in inspector.get_indexes(name) if i["unique"]]
    columns = frozenset(c["name"] for c in inspector.get_columns(name))
    return TableLayout(columns, tuple(frozenset(k) for k in keys if k))


_PG_TABLE_LOCK = 0x52555442  # "RUTB": first key of the advisory locks on target table names


def lock_table_name(*, session: Session, name: str) -> None:
    """Hold table `name` for this transaction before checking or creating it.

    Without it, two runs that import into a new table at once both find it missing and both create
    it, and PostgreSQL fails the second with a duplicate key in its catalogue. SQLite's writers are
    serialised already (BEGIN IMMEDIATE).
    """
    if session.get_bind().dialect.name == "postgresql":
        lock = sa.text("SELECT pg_advisory_xact_lock(:space, hashtext(:name))")
        session.execute(lock, {"space": _PG_TABLE_LOCK, "name": name})


def create_table(*, session: Session, table: sa.Table) -> None:
    """Create `table` in the session's transaction."""
    table.create(session.connection())


def upsert_rows(
    *, session: Session, table: sa.Table, key: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """Write rows (tuples in `table`'s column order) by `key`; rows equal to stored ones stay as they are.

    The bulk path of csv_import: one driver-level executemany on SQLite; on PostgreSQL a COPY into
    a temporary table, reading `rows` as it streams (an iterator is never gathered), and one
    INSERT ... ON CONFLICT from it. (A COPY straight into the table, twice as fast where every
    key is new, is the caller's to try: see etl.jobs.csv_load.)
    """
    if session.get_bind().dialect.name == "postgresql":
        _upsert_rows_postgres(session, table, key, rows)
    else:
        _upsert_rows_sqlite(session, table, key, list(rows))


def has_key(*, session: Session, table: sa.Table, key: Sequence[str], row: Sequence[Any]) -> bool:
    """Whether `table` holds a row with the `key` of `row` (a tuple in the table's column order)."""
    preparer = session.get_bind().dialect.identifier_preparer
    names = [column.name for column in table.columns]
    where = " AND ".join(f"{preparer.quote(name)} = :k{i}" for i, name in enumerate(key))
    query = f"SELECT 1 FROM {preparer.format_table(table)} WHERE {where} LIMIT 1"
    values = {f"k{i}": row[names.index(name)] for i, name in enumerate(key)}
    return session.execute(sa.text(query), values).first() is not None


def _on_conflict(statement: Any, table: sa.Table, key: Sequence[str]) -> Any:
    """`statement` updating an existing key's other columns, only where one of them differs."""
    names = [c.name for c in table.columns if c.name not in key]
    if not names:
        return statement.on_conflict_do_nothing(index_elements=list(key))
    new = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=list(key),
        set_={name: new[name] for name in names},
        where=sa.or_(*(table.c[name].is_distinct_from(new[name]) for name in names)),
    )


def _upsert_rows_sqlite(
    session: Session, table: sa.Table, key: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """One driver-level executemany; only columns whose type converts values are touched."""
    if not rows:
        return
    dialect = session.get_bind().dialect
    [sql] = _upsert_sql(table, key, dialect)
    processors = [
        (i, process)
        for i, column in enumerate(table.columns)
        if (process := _sqlite_processor(column.type, dialect)) is not None
    ]
    if processors:
        columns = list(zip(*rows, strict=True))
        for i, process in processors:
            columns[i] = tuple(map(process, columns[i]))
        rows = list(zip(*columns, strict=True))
    session.connection().exec_driver_sql(sql, list(rows))


# Python's documented adapter recipe: a date binds as the ISO text SQLAlchemy stores in SQLite
# (registering it also spares the deprecated default adapter). It applies only where sqlite3 gets
# a date object itself, since SQLAlchemy converts dates before binding them.
sqlite3.register_adapter(date, date.isoformat)

MAX_UPSERT_SHAPES = 64
_upsert_texts: dict[tuple[Any, ...], tuple[str, ...]] = {}


def _upsert_sql(table: sa.Table, key: Sequence[str], dialect: sa.Dialect) -> tuple[str, ...]:
    """The SQL of an upsert into `table` (SQLite: one statement; PostgreSQL: create the batch
    table, upsert from it, drop it), compiled once per table shape (a batch costs 1 ms less).

    Kept as text by shape, never by Table and never run through SQLAlchemy's statement cache: a
    cache holding each run's Table (and each batch's temporary one) kept every csv_import run's
    metadata alive, about 0.3 MB a run in a long-lived worker.
    """
    shape = (dialect.name, table.name, tuple((c.name, repr(c.type)) for c in table.columns), *key)
    texts = _upsert_texts.get(shape)
    if texts is None:
        if len(_upsert_texts) >= MAX_UPSERT_SHAPES:
            _upsert_texts.clear()
        build = _sqlite_upsert_texts if dialect.name == "sqlite" else _postgres_upsert_texts
        texts = _upsert_texts[shape] = build(table, key, dialect)
    return texts


def _sqlite_upsert_texts(
    table: sa.Table, key: Sequence[str], dialect: sa.Dialect
) -> tuple[str, ...]:
    return (str(_on_conflict(sqlite.insert(table), table, key).compile(dialect=dialect)),)


def _postgres_upsert_texts(
    table: sa.Table, key: Sequence[str], dialect: sa.Dialect
) -> tuple[str, ...]:
    columns = [sa.Column(c.name, c.type) for c in table.columns]
    batch = sa.Table(_PG_BATCH_TABLE, sa.MetaData(), *columns)  # for the text only, then garbage
    insert = postgresql.insert(table).from_select([c.name for c in columns], sa.select(batch))
    target = dialect.identifier_preparer.format_table(table)
    return (
        f"CREATE TEMPORARY TABLE {_PG_BATCH_TABLE} (LIKE {target})",
        str(_on_conflict(insert, table, key).compile(dialect=dialect)),
        f"DROP TABLE {_PG_BATCH_TABLE}",
    )


def _sqlite_processor(kind: Any, dialect: sa.Dialect) -> Callable[[Any], Any] | None:
    """What turns a value of type `kind` into what SQLAlchemy stores for it in SQLite, if needed."""
    if isinstance(kind, sa.Integer | sa.Float | sa.String | sa.Boolean | sa.Date):
        return None  # sqlite3 binds these Python values as SQLAlchemy would store them
    process: Callable[[Any], Any] | None = kind.dialect_impl(dialect).bind_processor(dialect)
    return process


def _upsert_rows_postgres(
    session: Session, table: sa.Table, key: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    connection = session.connection()
    create, upsert, drop = _upsert_sql(table, key, connection.dialect)
    connection.exec_driver_sql(create)
    copy_rows(session=session, table=table, rows=rows, into=_PG_BATCH_TABLE)
    connection.exec_driver_sql(upsert)
    connection.exec_driver_sql(drop)


def copy_rows(
    *, session: Session, table: sa.Table, rows: Iterable[Sequence[Any]], into: str | None = None
) -> None:
    """COPY tuples (in `table`'s column order) through the session's own psycopg connection,
    reading `rows` as the COPY streams (PostgreSQL); `into` names another table of its columns."""
    preparer = session.get_bind().dialect.identifier_preparer
    columns = ", ".join(preparer.quote(c.name) for c in table.columns)
    target = preparer.quote(into) if into else preparer.format_table(table)
    copy_sql = f"COPY {target} ({columns}) FROM STDIN"
    driver: Any = session.connection().connection.driver_connection
    with driver.cursor() as cursor, cursor.copy(copy_sql) as copy:
        for row in rows:
            copy.write_row(row)


def list_rejects(*, session: Session, run_id: int, limit: int | None = None) -> Sequence[CsvReject]:
    """The rows a csv_import run quarantined, in the order it met them."""
    query = select(CsvReject).where(CsvReject.run_id == run_id).order_by(col(CsvReject.id))
    return session.exec(query.limit(limit)).all()
