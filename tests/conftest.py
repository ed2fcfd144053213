"""Fixtures shared by every test: a fresh database per test, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest
import sqlalchemy as sa

from db.engine import dispose_engines
from db.migrate import init_db
from db.settings import Settings, get_settings
from etl.wakeup import stop_local_workers
from tests.pgcluster import pg_cluster  # noqa: F401 (a fixture: a test-owned PostgreSQL cluster)

POSTGRES_URL = os.environ.get(
    "RUNWATCH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = ["sqlite", "postgres"]


def _postgres_admin_dsn() -> str:
    return (
        sa.make_url(POSTGRES_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    )


def _postgres_unavailable() -> str | None:
    try:
        with psycopg.connect(_postgres_admin_dsn(), connect_timeout=3):
            return None
    except psycopg.OperationalError as error:
        return f"no PostgreSQL server at {sa.make_url(POSTGRES_URL).host}: {error}".strip()


_PG_REASON = _postgres_unavailable()


def pytest_report_header() -> str:
    return f"PostgreSQL variants: {'skipped (' + _PG_REASON + ')' if _PG_REASON else 'run'}"


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """The URL of a fresh, empty database of the test's backend, dropped afterwards."""
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'runwatch.db'}"
        stop_local_workers()  # the app's workers of page tests would poll the old file forever
        return
    if _PG_REASON:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL variants: {_PG_REASON}")
        pytest.skip(_PG_REASON)
    name = f"runwatch_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_postgres_admin_dsn(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield sa.make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        stop_local_workers()
        dispose_engines()
        with psycopg.connect(_postgres_admin_dsn(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test that uses a database once per backend (marked `<backend>_only`: once)."""
    if "database_url" not in metafunc.fixturenames:
        return
    only = [b for b in BACKENDS if metafunc.definition.get_closest_marker(f"{b}_only")]
    metafunc.parametrize("database_url", only or BACKENDS, indirect=True)


def configure(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> Settings:
    """Set these RUNWATCH_* settings (names without the prefix) in the environment; the settings now."""
    for key, value in values.items():
        monkeypatch.setenv(f"RUNWATCH_{key}", value)
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture
def settings(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings pointing at the test database, with fast heartbeats; also set in the environment."""
    values = {
        "DATABASE_URL": database_url,
        "HEARTBEAT_S": "0.2",
        "ORPHAN_TIMEOUT_S": "2",
        "PROGRESS_INTERVAL_S": "0.05",
        "WORKER_POLL_S": "0.1",
        "WORKER_LOST_AFTER_S": "2",
        "CACHE_TTL_S": "0",
    }
    yield configure(monkeypatch, values)
    get_settings.cache_clear()
    dispose_engines()


@pytest.fixture
def engine(settings: Settings) -> Iterator[sa.Engine]:
    """A migrated engine on the test database, with the built-in jobs."""
    from db.engine import get_engine

    engine = get_engine(settings.database_url)
    init_db(engine)
    yield engine


@pytest.fixture
def api_url(engine: sa.Engine, settings: Settings) -> Iterator[str]:
    """Base URL of the API served by a real uvicorn server (a thread) on the test database."""
    from tests.apiserver import running_api

    with running_api(settings.database_url, settings=settings) as url:
        yield url


@pytest.fixture
def client(api_url: str) -> Iterator[httpx.Client]:
    """An HTTP client of the test's API server."""
    with httpx.Client(base_url=api_url, timeout=30) as http:
        yield http


@pytest.fixture
def no_worker(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Iterator[None]:
    """No in-process worker in the app: seeded and queued runs stay as they are."""
    monkeypatch.setenv("RUNWATCH_WORKER_ENABLED", "false")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def database_down(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The app's database URL points at a closed port, and the app starts no worker."""
    from tests.pages import DOWN_URL

    monkeypatch.setenv("RUNWATCH_DATABASE_URL", DOWN_URL)
    monkeypatch.setenv("RUNWATCH_WORKER_ENABLED", "false")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
