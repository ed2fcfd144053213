"""Item 2 of the fault suite: the database server restarts under workers, the API and SSE clients."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import select

from db.engine import dispose_engines, get_engine
from db.migrate import init_db
from db.models import DemoSubject, Job, RunStatus
from db.queries import create_run, last_event_id, list_events, read_session, save_job, write_session
from db.settings import get_settings
from tests.apiserver import ApiProcess, api_process
from tests.faults.fleet import active_runs, all_runs, endings, running_fleet, status_events
from tests.faults.sse import FollowingClient
from tests.pgcluster import PgCluster

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]

JOBS = ["restart_a", "restart_b"]
PARAMS = {"total": 1500, "batch_size": 10, "delay_ms": 10, "seed": 3}
CLIENTS = 6  # half of them also lose their connection while the database is down
API_BACK_S = 10.0  # the bound: the API answers again by itself within this
SETTLE_S = 120.0  # generous bound for runs to end and clients to catch up on a busy machine
FEED = "/api/etl/logs/realtime"
ENV = {
    "RUNWATCH_HEARTBEAT_S": "0.5",
    "RUNWATCH_ORPHAN_TIMEOUT_S": "5",
    "RUNWATCH_PROGRESS_INTERVAL_S": "0.05",
    "RUNWATCH_WORKER_POLL_S": "0.1",
}


@pytest.fixture
def cluster_url(pg_cluster: PgCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A migrated database on the test's own cluster, with two demo jobs; set in the environment."""
    url = pg_cluster.create_database("runwatch")
    for key, value in {**ENV, "RUNWATCH_DATABASE_URL": url}.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    engine = get_engine(url)
    init_db(engine)
    with write_session(engine) as session:
        for name in JOBS:
            save_job(session=session, job=Job(name=name, title=name, kind="demo", params=PARAMS))
    yield url
    dispose_engines()
    get_settings.cache_clear()


def wait_for(check: Callable[[], bool], what: Callable[[], str], timeout: float = SETTLE_S) -> None:
    """Poll `check()` until true; fail saying `what()` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what()}"
        time.sleep(0.1)


def answers(api: ApiProcess) -> bool:
    """Whether the API reads the database again: its run list answers 200."""
    try:
        return httpx.get(f"{api.url}/api/etl/logs?limit=1", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def test_database_restart_loses_no_run_and_no_event(
    pg_cluster: PgCluster, cluster_url: str, tmp_path: Path
) -> None:
    engine = get_engine(cluster_url)
    with read_session(engine) as session:
        start = last_event_id(session=session)
    with (
        api_process(cluster_url) as api,
        running_fleet(cluster_url, tmp_path / "logs", 2) as fleet,
    ):
        clients = [FollowingClient(f"{api.url}{FEED}", after=start) for _ in range(CLIENTS)]
        for client in clients:
            client.start()
        with write_session(engine) as session:
            for name in JOBS:
                create_run(session=session, job=name, triggered_by="restart test")
        wait_for(lambda: _half_way(engine), lambda: f"both runs to get going: {all_runs(engine)}")
        pg_cluster.stop()
        for client in clients[::2]:
            client.drop()  # reconnects while the database is down, then after it is back
        pg_cluster.start()  # with the stop above: a restart, with clients dropped in between
        back = time.monotonic()
        wait_for(lambda: answers(api), lambda: "the API to answer again", API_BACK_S)
        assert time.monotonic() - back <= API_BACK_S
        resumed = finish_runs(api, engine)
        with read_session(engine) as session:
            expected = [e.id for e in list_events(session=session, after_id=start, limit=None)]
        wait_for(
            lambda: all(c.ids[-1:] == expected[-1:] for c in clients),
            lambda: f"the clients to catch up: {_progress(clients, expected)}",
        )
        for client in clients:
            client.stop()
        output = fleet.output()
    for client in clients:
        assert client.ids == expected, (client.connections, client.failures)
    assert any(c.connections > 1 for c in clients)
    check_runs(engine, resumed)
    assert "Traceback" not in output, output


def _progress(clients: list[FollowingClient], expected: list[int]) -> list[object]:
    return [(len(c.ids), len(expected), c.ids[-1:], c.connections, c.failures) for c in clients]


def _half_way(engine: sa.Engine) -> bool:
    running = [r for r in active_runs(engine) if r.status == RunStatus.RUNNING]
    return len(running) == len(JOBS) and all(r.offset >= 200 for r in running)


def finish_runs(api: ApiProcess, engine: sa.Engine) -> list[int]:
    """Wait for every run to end; resume (over the API) each one the outage interrupted."""
    resumed: list[int] = []
    deadline = time.monotonic() + SETTLE_S
    while active_runs(engine) or _interrupted(engine, resumed):
        for run_id in _interrupted(engine, resumed):
            answer = httpx.post(f"{api.url}/api/etl/runs/{run_id}/retry", timeout=30)
            assert answer.status_code == 202, answer.text
            resumed.append(run_id)
        assert time.monotonic() < deadline, f"runs stuck: {active_runs(engine)}"
        time.sleep(0.2)
    return resumed


def _interrupted(engine: sa.Engine, resumed: list[int]) -> list[int]:
    runs = all_runs(engine)
    done = {r.resumed_from for r in runs}
    return [
        r.id
        for r in runs
        if r.id is not None and r.error_type == "interrupted" and r.id not in done | set(resumed)
    ]


def check_runs(engine: sa.Engine, resumed: list[int]) -> None:
    """Each job's chain ended finished, each run ended once, each subject loaded once per job."""
    runs = all_runs(engine)
    twice = [status_events(engine, run_id) for run_id, n in endings(engine).items() if n != 1]
    assert not twice, "\n".join(map(str, twice))
    failed = [(r.id, r.error_type, r.error_message) for r in runs if r.status != "finished"]
    assert all(error_type == "interrupted" for _, error_type, _ in failed), failed
    assert sorted(run_id for run_id, _, _ in failed) == sorted(resumed)
    assert len([r for r in runs if r.status == RunStatus.FINISHED]) == len(JOBS)
    with read_session(engine) as session:
        loads = dict(session.exec(select(DemoSubject.id, DemoSubject.loads)).all())
    assert loads == dict.fromkeys(range(PARAMS["total"]), len(JOBS))
