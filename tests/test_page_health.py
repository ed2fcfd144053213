"""The Health page, run headless with AppTest: a live and a lost worker, the queue, the banner."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from db.models import utcnow
from db.queries import beat_worker, register_worker, write_session
from tests.factories import make_run
from tests.pages import run_page, texts


def health_page() -> AppTest:
    """The Health page, run once."""
    return run_page("pages/6_Health.py")


def test_health_tells_a_lost_worker_from_a_live_one(engine: sa.Engine, no_worker: None) -> None:
    now = utcnow()
    with write_session(engine) as session:
        run = make_run(session, status="running", ended_at=None)
        make_run(
            session, status="pending", job="csv_import", created_at=now - timedelta(seconds=90)
        )
        live = register_worker(
            session=session, name="a:11:worker:1", kind="worker", host="alpha", pid=11
        )
        beat_worker(session=session, worker_id=live, run_id=None, scheduler_tick=now)
        silent = now - timedelta(minutes=3)
        lost = register_worker(
            session=session, name="b:22:app:2", kind="app", host="beta", pid=22, now=silent
        )
        beat_worker(session=session, worker_id=lost, run_id=run.id, scheduler_tick=None, now=silent)
    at = health_page()
    table = at.table[0].value.set_index("PID")
    assert "Live" in table.loc[11, "State"] and "Lost" in table.loc[22, "State"]
    assert table.loc[11, "Host"] == "alpha" and table.loc[11, "Kind"] == "runwatch worker"
    assert table.loc[22, "Kind"] == "app thread"
    assert table.loc[11, "Last heartbeat"].endswith(" s ago")
    assert table.loc[22, "Last heartbeat"] == "3 min ago"
    assert (
        table.loc[22, "Current run"] == f"#{run.id} (demo)" and table.loc[11, "Current run"] == "—"
    )
    tiles = {metric.label: metric.value for metric in at.metric}
    assert tiles["Database"].startswith("OK · ") and tiles["Database"].endswith(" ms")
    assert tiles["Workers"] == "1 live · 1 lost"
    assert tiles["Queue"].startswith("1 queued · oldest 1m")
    assert tiles["Scheduler last tick"].endswith(" s ago")
    assert "No alert channels configured." in texts(at)
    assert "no heartbeat for 2 s is lost" in texts(at)


def test_health_without_workers_says_how_to_start_one(engine: sa.Engine, no_worker: None) -> None:
    at = health_page()
    assert "No worker has registered yet" in at.info[0].value
    tiles = {metric.label: metric.value for metric in at.metric}
    assert tiles["Workers"] == "0 live · 0 lost" and tiles["Queue"] == "0 queued"
    assert tiles["Scheduler last tick"] == "never"


def test_health_database_down_banner(database_down: None) -> None:
    at = health_page()
    assert "The database cannot be reached" in at.error[0].value
