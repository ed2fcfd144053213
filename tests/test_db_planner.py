"""Planner statistics: every start samples SQLite's indexes, so large histories get good plans."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from db.migrate import init_db
from db.queries import write_session
from etl.seed import seed_history
from tests.factories import make_run


@pytest.mark.sqlite_only  # PostgreSQL's autovacuum keeps its own statistics
def test_seed_leaves_sqlite_planner_statistics_for_the_history_indexes(engine: sa.Engine) -> None:
    seed_history(engine, days=2, runs_per_day=30, events_per_run=3)
    with engine.connect() as connection:
        analysed = connection.exec_driver_sql("SELECT DISTINCT tbl FROM sqlite_stat1").scalars()
        assert {"run", "run_event", "job"} <= set(analysed)


@pytest.mark.sqlite_only
def test_every_start_refreshes_sqlite_planner_statistics(engine: sa.Engine) -> None:
    with write_session(engine) as session:
        make_run(session)
    with engine.begin() as connection:  # the runs came in since the last start
        connection.exec_driver_sql("DELETE FROM sqlite_stat1")
    init_db(engine)
    with engine.connect() as connection:
        analysed = connection.exec_driver_sql("SELECT DISTINCT tbl FROM sqlite_stat1").scalars()
        assert "run" in set(analysed)
