"""Schema migrations on a database that already holds runs (both backends)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from alembic import command

from db.engine import WRITE_OPTION, make_engine
from db.migrate import alembic_config, head_revision, is_current, upgrade
from db.models import UTCDateTime, run_duration, utcnow

START = utcnow().replace(microsecond=123456) - timedelta(days=2)
# (status, started after creation, seconds run), as the 0003 schema stored them
RUNS = [
    ("finished", timedelta(seconds=1), timedelta(seconds=12, microseconds=345678)),
    ("failed", timedelta(seconds=2), timedelta(hours=3, microseconds=999999)),
    ("cancelled", timedelta(seconds=1), timedelta(microseconds=1)),
    ("running", timedelta(seconds=1), None),
    ("pending", None, None),
]

_RUN_0003 = sa.table(
    "run",
    sa.column("job"),
    sa.column("status"),
    sa.column("trigger"),
    sa.column("triggered_by"),
    sa.column("params", sa.JSON),
    sa.column("counters", sa.JSON),
    sa.column("created_at", UTCDateTime),
    sa.column("started_at", UTCDateTime),
    sa.column("ended_at", UTCDateTime),
    sa.column("offset"),
    sa.column("records_loaded"),
    sa.column("records_rejected"),
    sa.column("cancel_requested"),
)


@pytest.fixture
def engine_0003(database_url: str) -> Iterator[sa.Engine]:
    """An engine on a database migrated to 0003 only, holding RUNS."""
    engine = make_engine(database_url)
    config = alembic_config()
    with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0003")
        conn.execute(sa.insert(_RUN_0003), [_row(i, *run) for i, run in enumerate(RUNS)])
    yield engine
    engine.dispose()


def _row(i: int, status: str, start: timedelta | None, took: timedelta | None) -> dict[str, object]:
    created = START + timedelta(hours=i)
    started = created + start if start is not None else None
    ended = started + took if started is not None and took is not None else None
    return {
        "job": "demo" if ended else f"active_{i}",  # one active run per job
        "status": status,
        "trigger": "manual",
        "triggered_by": "",
        "params": {},
        "counters": {},
        "created_at": created,
        "started_at": started,
        "ended_at": ended,
        "offset": 0,
        "records_loaded": 10 * i,
        "records_rejected": 0,
        "cancel_requested": False,
    }


def test_0004_stores_the_duration_of_runs_already_there(engine_0003: sa.Engine) -> None:
    upgrade(engine_0003)
    with engine_0003.connect() as conn:
        query = sa.text("SELECT started_at, ended_at, duration_s FROM run ORDER BY id")
        rows = conn.execute(query.columns(started_at=UTCDateTime, ended_at=UTCDateTime)).all()
    assert [seconds for *_, seconds in rows] == pytest.approx(
        [run_duration(started, ended) for started, ended, _ in rows], abs=1e-6
    )
    assert [seconds is None for *_, seconds in rows] == [False, False, False, True, True]
    assert rows[2][2] == pytest.approx(1e-6, abs=1e-9)


def _index_names(engine: sa.Engine) -> set[str]:
    """The run table's index names, expression indexes too (reflection skips those on SQLite)."""
    query = {
        "sqlite": "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'run'",
        "postgresql": "SELECT indexname FROM pg_indexes WHERE tablename = 'run'",
    }[engine.dialect.name]
    with engine.connect() as conn:
        return set(conn.execute(sa.text(query)).scalars())


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
def test_0004_indexes_the_statistics_columns(engine_0003: sa.Engine) -> None:
    upgrade(engine_0003)
    indexes = {ix["name"]: ix["column_names"] for ix in sa.inspect(engine_0003).get_indexes("run")}
    assert indexes["ix_run_status_created"][:4] == ["status", "created_at", "job", "duration_s"]
    assert "ix_run_created_cover" not in indexes  # superseded by ix_run_day_status
    assert "ix_run_day_status" in _index_names(engine_0003)


def test_0004_downgrades_to_0003(engine_0003: sa.Engine) -> None:
    upgrade(engine_0003)
    config = alembic_config()
    with engine_0003.execution_options(**{WRITE_OPTION: True}).begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0003")
    assert "duration_s" not in {c["name"] for c in sa.inspect(engine_0003).get_columns("run")}
    assert "ix_run_day_status" not in _index_names(engine_0003)
    with engine_0003.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM run")).scalar_one() == len(RUNS)


def test_0005_gives_runs_already_there_no_pace_and_downgrades_keeping_indexes(
    engine_0003: sa.Engine,
) -> None:
    upgrade(engine_0003)
    with engine_0003.connect() as conn:
        paces = conn.execute(sa.text("SELECT pace FROM run")).scalars().all()
    assert paces == [None] * len(RUNS)
    config = alembic_config()
    with engine_0003.execution_options(**{WRITE_OPTION: True}).begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0004")
    assert "pace" not in {c["name"] for c in sa.inspect(engine_0003).get_columns("run")}


def test_0007_gives_jobs_defaults_and_downgrades(engine_0003: sa.Engine) -> None:
    upgrade(engine_0003)
    with engine_0003.connect() as conn:
        row = conn.execute(sa.text("SELECT timezone, catchup, paused FROM job")).first()
    assert row is None or (row[0], row[1], bool(row[2])) == ("UTC", "latest", False)
    config = alembic_config()
    with engine_0003.execution_options(**{WRITE_OPTION: True}).begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0004")
    assert "scheduled_for" not in {c["name"] for c in sa.inspect(engine_0003).get_columns("run")}
    assert "ix_run_day_status" in _index_names(engine_0003)


def test_0006_adds_the_claim_token_and_downgrades_keeping_the_indexes(
    engine_0003: sa.Engine,
) -> None:
    upgrade(engine_0003)
    assert "claim_token" in {c["name"] for c in sa.inspect(engine_0003).get_columns("run")}
    config = alembic_config()
    with engine_0003.execution_options(**{WRITE_OPTION: True}).begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0004")
    assert "claim_token" not in {c["name"] for c in sa.inspect(engine_0003).get_columns("run")}
    assert "ix_run_day_status" in _index_names(engine_0003)


def test_0010_adds_the_worker_registry_and_downgrades(engine_0003: sa.Engine) -> None:
    upgrade(engine_0003)
    columns = {c["name"] for c in sa.inspect(engine_0003).get_columns("worker")}
    assert {
        "host",
        "pid",
        "heartbeat_at",
        "current_run_id",
        "scheduler_tick_at",
        "stopped_at",
    } <= columns
    config = alembic_config()
    with engine_0003.execution_options(**{WRITE_OPTION: True}).begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0009")
    assert not sa.inspect(engine_0003).has_table("worker")
    assert "ix_run_day_status" in _index_names(engine_0003)


def test_head_read_from_file_names_is_alembics_head() -> None:
    from alembic.script import ScriptDirectory

    assert head_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_is_current_only_at_head(engine_0003: sa.Engine) -> None:
    assert not is_current(engine_0003)
    upgrade(engine_0003)
    assert is_current(engine_0003)


def test_0009_adds_the_account_tables_and_downgrades(engine_0003: sa.Engine) -> None:
    upgrade(engine_0003)
    tables = set(sa.inspect(engine_0003).get_table_names())
    assert {"app_user", "api_token"} <= tables
    uniques = {u["name"] for u in sa.inspect(engine_0003).get_unique_constraints("api_token")}
    assert {"uq_api_token_name", "uq_api_token_hash"} <= uniques
    config = alembic_config()
    with engine_0003.execution_options(**{WRITE_OPTION: True}).begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0008")
    assert not {"app_user", "api_token"} & set(sa.inspect(engine_0003).get_table_names())


def test_0014_leaves_the_sessions_of_users_already_there_open_and_downgrades(
    engine_0003: sa.Engine,
) -> None:
    config = alembic_config()
    columns_0013 = ("name", "password_hash", "role", "disabled", "failed_attempts")
    stamps = (sa.column("created_at", UTCDateTime), sa.column("updated_at", UTCDateTime))
    user = sa.table("app_user", *map(sa.column, columns_0013), *stamps)
    with engine_0003.execution_options(**{WRITE_OPTION: True}).begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0013")
        row = ("ana", "x", "viewer", False, 0, START, START)
        names = (*columns_0013, "created_at", "updated_at")
        conn.execute(sa.insert(user), [dict(zip(names, row, strict=True))])
    upgrade(engine_0003)
    with engine_0003.connect() as conn:
        changed = conn.execute(sa.text("SELECT password_changed_at FROM app_user")).scalars().all()
    assert changed == [None]  # no password was set since any session signed in
    with engine_0003.execution_options(**{WRITE_OPTION: True}).begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0013")
    columns = {c["name"] for c in sa.inspect(engine_0003).get_columns("app_user")}
    assert "password_changed_at" not in columns and "locked_until" in columns
