"""The database engine, built once per URL from the settings."""

from __future__ import annotations

import queue
import threading
import weakref
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from db.settings import get_settings

WRITE_OPTION = "runwatch_write"
SQLITE_BUSY_TIMEOUT_MS = 30_000
MAX_IDLE_READERS = 10  # read connections an engine keeps open between reads (see ReadConnections)

_engines: dict[str, sa.Engine] = {}
_lock = threading.Lock()


def normalise_url(url: str) -> str:
    """The URL with PostgreSQL routed through psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str) -> sa.Engine:
    """A new engine for `url`: SQLite in WAL mode with a busy timeout, or PostgreSQL via psycopg."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    return _postgres_engine(url)


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names, or None (another database, or SQLite in memory)."""
    parsed = sa.make_url(normalise_url(url))
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    return Path(database).resolve()


def _sqlite_engine(url: str) -> sa.Engine:
    path = sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        if path is not None and engine not in _files:
            _files[engine] = (path, _identity(path))  # the file this engine's connections opened
        # Let SQLAlchemy's "begin" hook below own transaction starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # Writers take the write lock up front, so a transaction that reads and then writes
        # waits its turn instead of failing with SQLITE_BUSY halfway.
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _postgres_engine(url: str) -> sa.Engine:
    engine = sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    timeout_ms = round(get_settings().idle_transaction_timeout_s * 1000)
    if not timeout_ms:
        return engine

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # A process stopped inside a transaction (frozen, or cut off from the server) holds the
        # rows its batch wrote until its session ends; unbounded, the run resumed after it waits
        # on them for good. No transaction of ours waits between statements for long: a batch's
        # extract and transform happen before it begins, deliveries and downloads outside one.
        dbapi_connection.execute(f"SET idle_in_transaction_session_timeout = {timeout_ms}")
        dbapi_connection.commit()

    return engine


class ReadConnections:
    """Connections kept aside for the hot reads (db.driver), one engine's.

    Each is taken from the engine's pool once and detached, so a read costs no pool checkout and
    reset and, on PostgreSQL, no pre-ping and no BEGIN/ROLLBACK round trips (they are in
    autocommit: a read sees the latest commits). One lost to a server restart is replaced on its
    next use (`lost`); disposing of the engine closes them all.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def take(self) -> Any:
        """An idle DBAPI connection, or a new one."""
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pooled = self._connect()
            connection: Any = pooled.driver_connection
            pooled.detach()  # ours now: the pool forgets it and never resets or recycles it
            if self._engine.dialect.name == "postgresql":
                connection.autocommit = True
            return connection

    def _connect(self) -> Any:
        """A new pooled connection; a refused connect raises the SQLAlchemy error the ORM would."""
        dbapi_error = self._engine.dialect.loaded_dbapi.Error
        try:
            return self._engine.raw_connection()
        except dbapi_error as error:
            raise sa.exc.DBAPIError.instance(None, None, error, dbapi_error) from error

    def give_back(self, connection: Any) -> None:
        """Keep `connection` for the next read, unless it was closed or enough are kept already
        (a burst of concurrent reads does not leave its connections open on the server)."""
        if getattr(connection, "closed", False):
            return
        if self._idle.qsize() >= MAX_IDLE_READERS:
            connection.close()
            return
        self._idle.put(connection)

    def lost(self, error: Any, connection: Any) -> bool:
        """Whether the DBAPI `error` means the server went away; if so, it and the idle ones close."""
        if not self._engine.dialect.is_disconnect(error, connection, None):
            return False
        connection.close()
        self.close()
        return True

    def close(self) -> None:
        """Close every idle connection."""
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


_readers: weakref.WeakKeyDictionary[sa.Engine, ReadConnections] = weakref.WeakKeyDictionary()
# The SQLite file each engine opened first, and its identity (device, inode) at that moment.
_files: weakref.WeakKeyDictionary[sa.Engine, tuple[Path, tuple[int, int] | None]] = (
    weakref.WeakKeyDictionary()
)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def file_problem(engine: sa.Engine) -> str | None:
    """Why `engine`'s SQLite file is no longer the one at its path (moved, deleted, replaced), or None.

    Open connections keep using a moved or deleted file, so without this check the app and API
    would go on writing where no other process (the CLI, a restarted app) ever reads.
    """
    opened = _files.get(engine)
    if opened is None:
        return None
    path, identity = opened
    now = _identity(path)
    if now == identity:
        return None
    if now is None:
        return f"The database file {path} has been moved or deleted since Runwatch opened it."
    return f"The database file {path} has been replaced by another file since Runwatch opened it."


def database_error_text(error: sa.exc.DBAPIError) -> str:
    """The driver's error in one short line, e.g. `OperationalError: connection refused`."""
    first_line = (str(error.orig).splitlines() or [""])[0][:300]  # some drivers say nothing
    return f"{type(error.orig).__name__}: {first_line}"


def read_connections(engine: sa.Engine) -> ReadConnections:
    """The read connections kept for `engine` (closed when the engine is disposed)."""
    readers = _readers.get(engine)
    if readers is None:
        with _lock:
            readers = _readers.get(engine)
            if readers is None:
                readers = _readers[engine] = ReadConnections(engine)
                event.listen(engine, "engine_disposed", lambda _engine: readers.close())
    return readers


def get_engine(url: str | None = None) -> sa.Engine:
    """The shared engine for `url` (default: the configured database), created on first use."""
    url = normalise_url(url or get_settings().database_url)
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = make_engine(url)
        return engine


def dispose_engines() -> None:
    """Close every pooled connection (tests, and forked processes)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
