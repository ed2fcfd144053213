"""The health report: workers live, lost past the setting (a SIGKILLed process too), the queue,
an unreachable database and the alert channels."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa

from db.models import WorkerState
from db.queries import create_run, write_session
from db.settings import Settings
from etl.worker import BackgroundWorker
from reports.health import NO_ALERT_CHANNELS, AlertChannel, health_report, register_alert_source
from tests.test_etl_cli import cli_process
from tests.test_etl_fencing import stored, wait_until
from tests.test_etl_presence import FakeClock, presence, report, the_worker

pytestmark = pytest.mark.timeout(180)


def test_a_worker_silent_past_the_setting_is_lost(engine: sa.Engine, settings: Settings) -> None:
    presence(engine, FakeClock()).beat()
    beat = report(engine, settings).workers[0].heartbeat_at
    lost_after = timedelta(seconds=settings.worker_lost_after_s)
    just_in_time = report(engine, settings, now=beat + lost_after)
    assert just_in_time.workers[0].state == WorkerState.LIVE
    late = report(engine, settings, now=beat + lost_after + timedelta(milliseconds=1))
    assert late.workers[0].state == WorkerState.LOST
    assert late.workers[0].silent_s == pytest.approx(settings.worker_lost_after_s + 0.001)


def test_the_report_has_the_queue_depth_and_the_oldest_pending_age(
    engine: sa.Engine, settings: Settings
) -> None:
    with write_session(engine) as session:
        first = create_run(session=session, job="demo")
        create_run(session=session, job="csv_import")
    now = first.created_at + timedelta(seconds=12)
    queue = report(engine, settings, now=now).queue
    assert queue is not None and queue.depth == 2
    assert queue.oldest_queued_at == first.created_at and queue.oldest_age_s == pytest.approx(12)


def test_the_report_of_an_unreachable_database_says_why(settings: Settings) -> None:
    from db.engine import make_engine
    from tests.pages import DOWN_URL

    down = make_engine(DOWN_URL)
    health = health_report(down, settings)
    assert not health.database.reachable and health.database.round_trip_ms is None
    assert health.database.error and health.database.error.startswith("OperationalError")
    assert health.status == "unavailable" and health.queue is None and health.workers == ()


def test_alert_channels_say_none_until_a_source_reports_them(
    engine: sa.Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    health = report(engine, settings)
    assert health.alert_channels == () and health.alerts_summary == NO_ALERT_CHANNELS
    monkeypatch.setattr("reports.health._alert_sources", [])
    register_alert_source(lambda _engine: [AlertChannel("email", ok=False, detail="SMTP refused")])
    health = report(engine, settings)
    assert health.alerts_summary == "Failing: email." and health.status == "degraded"


# ---------------------------------------------------------------- a real worker process, killed


def test_a_worker_killed_with_sigkill_shows_as_lost_within_its_timeout(
    engine: sa.Engine, settings: Settings, client: httpx.Client
) -> None:
    process = cli_process("worker")
    live = BackgroundWorker(engine, settings)  # started once the process holds the run
    try:
        wait_until(lambda: the_worker(engine, settings, process.pid) is not None, "it registered")
        with write_session(engine) as session:
            run = create_run(session=session, job="demo", params={"total": 100000, "delay_ms": 100})
        wait_until(lambda: stored(engine, run.id).status == "running", "it claimed the run")
        live.start()
        wait_until(lambda: api_worker(client, process.pid)["current_run_id"] == run.id, "shown")
        assert api_worker(client, process.pid)["state"] == "live"
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        killed = time.monotonic()
        wait_until(lambda: the_worker(engine, settings, process.pid).state == "lost", "lost")
        by_report = time.monotonic() - killed
        wait_until(lambda: api_worker(client, process.pid)["state"] == "lost", "lost over HTTP")
        by_api = time.monotonic() - killed
        details = client.get("/api/health/details").json()
        mine = the_worker(engine, settings, os.getpid())
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
        live.stop()
    # its last heartbeat was at most one interval before it died; a loaded machine adds a little
    bound = settings.worker_lost_after_s + settings.heartbeat_s + 1.5
    assert by_report <= bound and by_api <= bound, (by_report, by_api)
    assert details["workers_lost"] == 1 and details["workers_live"] == 1
    (dead,) = [worker for worker in details["workers"] if worker["pid"] == process.pid]
    assert dead["current_run_id"] == run.id and dead["kind"] == "worker"
    assert mine is not None and mine.state == WorkerState.LIVE and mine.kind == "app"


def api_worker(client: httpx.Client, pid: int) -> dict[str, object]:
    """The worker of process `pid` as /api/health/details shows it (state None until it does)."""
    workers = client.get("/api/health/details").json()["workers"]
    return next(
        (worker for worker in workers if worker["pid"] == pid),
        {"state": None, "current_run_id": None},
    )
