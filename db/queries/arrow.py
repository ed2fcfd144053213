"""The filtered, sorted history as Arrow record batches, read in each database's columnar way.

The audit exports read up to millions of runs; a Python object per row is what made them slow.
Both databases are read through their ADBC drivers, which fill Arrow columns in C: SQLite's
steps the statement, PostgreSQL's streams it with `COPY (SELECT …) TO STDOUT` in the binary
format (for 1M runs: 7.7 s wall / 1.8 s CPU, against 13.2 s / 4.7 s for a CSV COPY through
psycopg parsed by pyarrow.csv, and 10 s for psql's own CSV COPY).
Either way the batches have SCHEMA: timestamps are timestamp[us] in UTC, counters their JSON text.
"""

from __future__ import annotations

import importlib.abc
import os
import queue
import sys
import threading
from collections.abc import Generator, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

# An export allocates and frees a few MB per batch. The C library's allocator hands that memory
# back as the batches go; Arrow's default pool (mimalloc) keeps it: for 1M runs the exporting
# process peaked at 239 MB with it, 196 MB without, at the same CPU time. The pool Arrow's C++
# code allocates from is chosen once, as pyarrow loads, from this variable: set here, it is the
# C library's in every process where this module loads pyarrow (the CLI, serve-api), for the
# kernels and the driver's batches alike: 4 MB lower at serve-api's peak than
# `pa.set_memory_pool` alone, which only reaches allocations made through pyarrow's Python API.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

import pyarrow as pa
import sqlalchemy as sa
from sqlmodel import col

from db import driver
from db.models import Run
from db.queries.history import RunFilters, RunSort, order_clause, run_binds, run_where


class _NoPandasHere(importlib.abc.MetaPathFinder):
    """Fails `import pandas` in the thread that asks pyarrow whether pandas is there."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()

    def find_spec(self, name: str, *_: object) -> None:
        if name == "pandas" and threading.get_ident() == self.thread:
            raise ImportError("pandas is not loaded in this process")


def _pyarrow_without_pandas() -> None:
    """Tell pyarrow, where this process has not loaded pandas, that there is none to look for.

    pyarrow asks once per process, on its first conversion of a Python value (an array, a
    scalar, `pyarrow.dataset` as the ADBC DB-API loads it), whether pandas is installed, and
    imports it to find out: 45 MB that an exporting CLI or API process has no use for, since no
    value in it can be a pandas object. Where pandas is loaded (the app), pyarrow finds it as
    before; once loaded later, `to_pandas` still imports it. Only this thread's import is
    failed, for the one conversion, so no other thread can be refused pandas meanwhile.
    """
    if "pandas" in sys.modules:
        return
    finder = _NoPandasHere()
    sys.meta_path.insert(0, finder)
    try:
        pa.array([], pa.int8())  # pyarrow's first conversion: it asks for pandas here
    finally:
        sys.meta_path.remove(finder)


_pyarrow_without_pandas()

# where pyarrow was loaded before this module (the app: Streamlit imports it first), at least the
# allocations made through pyarrow's Python API go to the C library's allocator
pa.set_memory_pool(pa.system_memory_pool())

BATCH_ROWS = 6_144  # rows per batch read: a few MB, so memory stays flat whatever the size
SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("job", pa.string()),
        ("status", pa.string()),
        ("trigger", pa.string()),
        ("triggered_by", pa.string()),
        ("started_at", pa.timestamp("us")),
        ("ended_at", pa.timestamp("us")),
        ("total_records", pa.int64()),
        ("offset", pa.int64()),
        ("records_loaded", pa.int64()),
        ("records_rejected", pa.int64()),
        ("counters", pa.string()),
        ("current_step", pa.string()),
        ("error_type", pa.string()),
        ("error_message", pa.string()),
        ("created_at", pa.timestamp("us")),
        ("resumed_from", pa.int64()),
    ]
)


def run_batches(
    *, engine: sa.Engine, filters: RunFilters, sort: RunSort, rows: int = BATCH_ROWS
) -> Iterator[pa.RecordBatch]:
    """The runs `filters` select, in `sort` order, as record batches of SCHEMA (constant memory).

    The batches are read ahead in a thread of their own: the drivers and the caller's kernels
    release the GIL, so reading the next batch overlaps formatting this one.
    """
    binds = run_binds(filters)
    read = _sqlite_batches if engine.dialect.name == "sqlite" else _postgres_batches
    return _read_ahead(read(engine, binds, sort, rows))


_DONE = object()


def _read_ahead(batches: Generator[pa.RecordBatch, None, None]) -> Iterator[pa.RecordBatch]:
    """`batches`, produced by a thread that reads the next one while the caller has this one.

    The thread hands each batch over and waits until it is taken before reading on: a batch
    queued while another is read held a third batch's memory (2.5-3 MB at 1M runs) for no overlap.
    """
    ready: queue.Queue[Any] = queue.Queue()  # never more than one item: see hand_over
    taken = threading.Semaphore(0)  # released as the caller takes each item
    stop = threading.Event()

    def hand_over(item: Any) -> bool:
        """Queue `item`, then wait until the caller takes it; False once the caller stopped."""
        ready.put(item)
        while not stop.is_set():
            if taken.acquire(timeout=0.1):
                return True
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not hand_over(batch):
                    break
            item: Any = _DONE
        except Exception as error:  # handed to the reader, raised in its thread
            item = error
        finally:
            batches.close()
        hand_over(item)

    thread = threading.Thread(target=produce, name="runwatch-export-read", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            taken.release()
            if item is _DONE:
                break
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def _query(binds: dict[str, Any], sort: RunSort) -> sa.Select[Any]:
    """The export's columns of the runs filtered by `binds` (see _run_binds), in `sort` order."""
    columns = [col(getattr(Run, name)) for name in SCHEMA.names]
    return sa.select(*columns).where(run_where(binds)).order_by(*order_clause(sort))


def _sqlite_batches(
    engine: sa.Engine, binds: dict[str, Any], sort: RunSort, rows: int
) -> Generator[pa.RecordBatch, None, None]:
    import adbc_driver_sqlite  # imported here: only SQLite exports need it

    statement = driver.compiled(
        engine.dialect, ("export", *binds, sort), lambda: _query(binds, sort)
    )
    uri = Path(str(engine.url.database)).resolve().as_uri() + "?mode=ro"
    # The driver infers each column's type from the first batch and fails on a later value of
    # another type: a first row of the right types (dropped below) keeps an all-NULL start typed.
    sql = f"SELECT * FROM ({_PROBE}) UNION ALL SELECT * FROM ({statement.sql})"
    parameters = _parameters(statement.parameters(binds))
    options = {"adbc.sqlite.query.batch_rows": str(rows)}
    with _reader(adbc_driver_sqlite.connect(uri), sql, options, parameters) as reader:
        for i, batch in enumerate(reader):
            yield _normalised(batch if i else batch.slice(1))


_PROBE = "SELECT " + ", ".join("0" if f.type == pa.int64() else "''" for f in SCHEMA)


def _postgres_batches(
    engine: sa.Engine, binds: dict[str, Any], sort: RunSort, rows: int
) -> Generator[pa.RecordBatch, None, None]:
    import adbc_driver_postgresql  # imported here: only PostgreSQL exports need it
    import psycopg

    statement = driver.compiled(
        engine.dialect, ("export", *binds, sort), lambda: _query(binds, sort)
    )
    with engine.connect() as connection:
        # with bound parameters the driver fetches the whole result at once; as plain SQL it
        # streams it with COPY: the values are quoted into the SQL by psycopg itself
        raw: Any = connection.connection.driver_connection
        sql = psycopg.ClientCursor(raw).mogrify(statement.sql, statement.parameters(binds))
    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    options = {_PG_BATCH_BYTES: str(rows * _ROW_BYTES)}
    with _reader(adbc_driver_postgresql.connect(dsn), sql, options) as reader:
        yield from map(_normalised, reader)


_PG_BATCH_BYTES = "adbc.postgresql.batch_size_hint_bytes"
_ROW_BYTES = 250  # about what a run's exported columns take in a batch


@contextmanager
def _reader(
    database: Any, sql: str, options: dict[str, str], parameters: pa.RecordBatch | None = None
) -> Iterator[pa.RecordBatchReader]:
    """The result of `sql` on an ADBC `database` (closed after), as a reader of its batches.

    The drivers' low-level API, not their DB-API module: that one loads `pyarrow.dataset`, and
    with it pandas (about 50 MB), where the export needs neither.
    """
    import adbc_driver_manager as adbc

    with ExitStack() as resources:
        resources.callback(database.close)
        connection = adbc.AdbcConnection(database)
        resources.callback(connection.close)
        statement = adbc.AdbcStatement(connection)
        resources.callback(statement.close)
        statement.set_options(**options)
        statement.set_sql_query(sql)
        if parameters is not None and parameters.num_columns:
            statement.bind(parameters)
        stream, _ = statement.execute_query()
        reader = pa.RecordBatchReader.from_stream(stream)
        resources.callback(reader.close)
        yield reader


# the Arrow type of each Python type a compiled statement binds (db.driver._AS_IS)
_BIND_TYPES = {int: pa.int64(), str: pa.string(), float: pa.float64(), bool: pa.bool_()}


def _parameters(values: Sequence[Any] | dict[str, Any]) -> pa.RecordBatch:
    """Positional statement parameters as the one-row batch ADBC binds, each typed from its value
    (pyarrow's own inference would load pandas)."""
    assert not isinstance(values, dict), "SQLite statements bind by position"
    arrays = [pa.array([v], _BIND_TYPES.get(type(v), pa.null())) for v in values]
    return pa.RecordBatch.from_arrays(arrays, names=[f"p{i}" for i in range(len(arrays))])


def _normalised(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A batch as read, in SCHEMA's types (SQLite's times are text; PostgreSQL's are zoned, its
    integers int4 and its JSON an extension type)."""
    columns = []
    for column, field in zip(batch.columns, SCHEMA, strict=True):
        if isinstance(column, pa.ExtensionArray):
            column = column.storage
        columns.append(column if column.type == field.type else column.cast(field.type))
    return pa.RecordBatch.from_arrays(columns, schema=SCHEMA)
