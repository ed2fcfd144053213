"""Planner statistics: every start samples SQLite's indexes, so large histories get good plans."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from db.migrate import init_db
from db.queries import create_run, write_session
from db.settings import Settings
from etl.seed import seed_history
from etl.worker import Worker
from tests.factories import make_run


@pytest.mark.sqlite_only  # PostgreSQL's autovacuum keeps its own statistics
def test_seed_leaves_sqlite_planner_statistics_for_the_history_indexes(engine: sa.Engine) -> None:
    seed_history(engine, days=2, runs_per_day=30, events_per_run=3)
    with engine.connect() as connection:
        analysed = connection.exec_driver_sql("SELECT DISTINCT tbl FROM sqlite_stat1").scalars()
        assert {"run", "run_event", "job"} <= set(analysed)


@pytest.mark.sqlite_only
def test_a_start_analyses_a_history_that_outgrew_its_statistics(engine: sa.Engine) -> None:
    with write_session(engine) as session:  # runs came in since the last start
        for _ in range(3):
            make_run(session)
    init_db(engine)
    assert _analysed_runs(engine) == 3
    with write_session(engine) as session:
        make_run(session)
    init_db(engine)  # grown by a third: analysed again
    assert _analysed_runs(engine) == 4


@pytest.mark.sqlite_only
def test_a_worker_refreshes_them_as_runs_end(engine: sa.Engine, settings: Settings) -> None:
    worker = Worker(engine, settings)
    for expected in (1, 2):
        with write_session(engine) as session:
            params = {"total": 10, "batch_size": 5, "delay_ms": 0}
            create_run(session=session, job="demo", params=params)
        assert worker.run_once() is not None
        assert _analysed_runs(engine) == expected


def _analysed_runs(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        stat = connection.exec_driver_sql(
            "SELECT stat FROM sqlite_stat1 WHERE tbl = 'run' AND idx = 'ix_run_created_at'"
        ).scalar_one()
    return int(stat.split()[0])
