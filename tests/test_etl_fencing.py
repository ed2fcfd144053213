"""Fencing: a worker whose run was failed as an orphan writes nothing more for it.

Every write a worker makes for a run is conditional on the run still running under that worker's
claim (db.queries.runs._held); these tests fail a run under a live worker and check that the
worker's later batches, events and end never land, and that a resume loads every record once.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial

import pytest
import sqlalchemy as sa
from sqlmodel import select

from db.engine import get_engine
from db.migrate import init_db
from db.models import Run, RunEvent, RunStatus
from db.queries import (
    RunLost,
    append_event,
    create_run,
    end_run,
    get_run,
    heartbeat,
    mark_orphans,
    read_session,
    resume_run,
    write_session,
)
from db.settings import Settings, get_settings
from etl.runner import Runner
from etl.worker import Worker
from tests.apiserver import free_port
from tests.conftest import configure
from tests.pgcluster import PgCluster
from tests.test_etl_cli import cli_process, subject_loads

FAULT_TIMEOUT_S = 240


def stored(engine: sa.Engine, run_id: int | None) -> Run:
    with read_session(engine) as session:
        return get_run(session=session, run_id=run_id or 0, fresh=True)


def events_of(engine: sa.Engine, run_id: int | None) -> list[RunEvent]:
    with read_session(engine) as session:
        query = select(RunEvent).where(RunEvent.run_id == run_id).order_by(RunEvent.id)
        return list(session.exec(query).all())


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    """Poll `condition` until true (generous, for a busy machine)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def start_demo(engine: sa.Engine, **params: object) -> Run:
    """A running demo run claimed here, as `runwatch run` makes one."""
    with write_session(engine) as session:
        return create_run(session=session, job="demo", params=params, status="running")


def fail_as_orphan(engine: sa.Engine) -> list[int]:
    """What another worker's sweep does once the heartbeat is stale (here: at once)."""
    with write_session(engine) as session:
        return mark_orphans(session=session, timeout_s=0)


# ---------------------------------------------------------------- the fence itself


def test_writes_for_a_run_failed_as_an_orphan_are_refused(engine: sa.Engine) -> None:
    run = start_demo(engine, total=100)
    assert fail_as_orphan(engine) == [run.id]
    for write in (
        lambda session: heartbeat(session=session, run=run),
        lambda session: end_run(session=session, run=run, status=RunStatus.FINISHED),
    ):
        with pytest.raises(RunLost), write_session(engine) as session:
            write(session)
    orphan = stored(engine, run.id)
    assert orphan.status == RunStatus.FAILED and orphan.error_type == "interrupted"
    assert orphan.error_message.startswith("No heartbeat for ")


def test_a_new_claim_fences_the_writes_of_the_old_one(engine: sa.Engine) -> None:
    run = start_demo(engine, total=100)
    with write_session(engine) as session:
        session.execute(sa.update(Run).where(Run.id == run.id).values(claim_token="another"))
    with pytest.raises(RunLost), write_session(engine) as session:
        heartbeat(session=session, run=run)


def test_a_batch_whose_fence_fails_leaves_no_rows(engine: sa.Engine, settings: Settings) -> None:
    # no heartbeat during the test, so the batch's own checkpoint is what meets the fence
    quiet = settings.model_copy(update={"heartbeat_s": 3600.0})
    run = start_demo(engine, total=500, batch_size=50)
    runner = Runner(engine, quiet)

    def swept_after_the_first_batch(current: Run) -> None:
        if current.offset == 50:
            assert fail_as_orphan(engine) == [run.id]

    runner.on_progress = swept_after_the_first_batch
    ended = runner.execute(run)
    assert ended.status == RunStatus.FAILED and ended.error_type == "interrupted"
    assert subject_loads(engine) == dict.fromkeys(range(50), 1)
    orphan = stored(engine, run.id)
    assert orphan.status == RunStatus.FAILED and orphan.offset == 50
    assert orphan.records_loaded == 50
    assert events_of(engine, run.id)[-1].message.startswith("Run failed: No heartbeat for ")


def test_a_lost_run_logs_nothing_more(engine: sa.Engine, settings: Settings) -> None:
    run = start_demo(engine, total=100)
    fail_as_orphan(engine)
    before = len(events_of(engine, run.id))
    with pytest.raises(RunLost):
        Runner(engine, settings).log(run, "INFO", "still here")
    assert len(events_of(engine, run.id)) == before
    with write_session(engine) as session:  # a reader's or the sweep's event is not fenced
        append_event(session=session, run_id=run.id or 0, message="noted")


# ---------------------------------------------------------------- a silent worker, for real


@pytest.mark.faults
@pytest.mark.timeout(FAULT_TIMEOUT_S)
def test_a_worker_stopped_past_the_orphan_timeout_loads_nothing_twice(
    engine: sa.Engine, settings: Settings
) -> None:
    stopped_swept_and_woken(engine, settings, stop_outside_a_transaction)


@pytest.mark.faults
@pytest.mark.postgres_only  # SQLite has one writer at a time: a frozen one stops every writer
@pytest.mark.timeout(FAULT_TIMEOUT_S)
def test_a_worker_frozen_inside_a_batch_holds_up_the_resume_only_until_the_server_ends_it(
    engine: sa.Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, {"IDLE_TRANSACTION_TIMEOUT_S": "3"})  # the worker's, by its environment
    # its uncommitted rows are the resume's next: without the server's timeout it would wait for good
    stopped_swept_and_woken(engine, settings, stop_inside_a_transaction, under_way_within=60)


def stopped_swept_and_woken(
    engine: sa.Engine,
    settings: Settings,
    stop: Callable[[subprocess.Popen[bytes], sa.Engine], None],
    under_way_within: float = 120,
) -> None:
    """A worker process `stop`ped mid-run past the orphan timeout; the run swept, resumed by
    another worker; the stopped one woken: every record loaded once, the old worker lost it."""
    total = 3000
    with write_session(engine) as session:
        params = {"total": total, "batch_size": 50, "delay_ms": 40}
        old = create_run(session=session, job="demo", params=params)
    silent = cli_process("worker")
    try:
        wait_until(lambda: stored(engine, old.id).offset >= 300, "the worker loaded 300")
        stop(silent, engine)
        sweeper = Worker(engine, settings)
        wait_until(lambda: old.id in sweeper.sweep_orphans(), "the run was failed as an orphan")
        with write_session(engine) as session:
            resumed = resume_run(session=session, run_id=old.id or 0)
        other = threading.Thread(target=sweeper.run_once)
        other.start()
        wait_until(
            lambda: stored(engine, resumed.id).offset > 600,
            "the resume is under way",
            under_way_within,
        )
        silent.send_signal(signal.SIGCONT)  # wakes up mid-batch, both workers now "run" it
        other.join(FAULT_TIMEOUT_S)
        assert stored(engine, resumed.id).status == RunStatus.FINISHED
        wait_until(lambda: woke_up(silent, engine, old), "the old worker woke up")
    finally:
        silent.send_signal(signal.SIGCONT)
        silent.send_signal(signal.SIGTERM)
        silent.wait(60)
    assert_exactly_once(engine, old, resumed, total)
    assert b"lost it" in _stderr_so_far(silent)


def stop_inside_a_transaction(process: subprocess.Popen[bytes], engine: sa.Engine) -> None:
    """SIGSTOP the worker at a moment one of its sessions has written in a transaction it has not
    ended."""
    written = partial(_in_a_transaction, engine, written=True)
    _stop_when(
        process, partial(_settled, written), "the worker was never stopped inside a transaction"
    )


def stop_outside_a_transaction(process: subprocess.Popen[bytes], engine: sa.Engine) -> None:
    """SIGSTOP the worker at a moment it holds no lock the sweep or the resume needs (else the
    test would wait for the stopped worker)."""
    _stop_when(process, lambda: _holds_no_lock(engine), "the worker always held a lock")


def _stop_when(
    process: subprocess.Popen[bytes], holds: Callable[[], bool], never: str, tries: int = 400
) -> None:
    """SIGSTOP the process and leave it stopped once `holds()`; else let it go on a moment, again."""
    for _ in range(tries):
        process.send_signal(signal.SIGSTOP)
        if holds():
            return
        process.send_signal(signal.SIGCONT)
        time.sleep(random.uniform(0.005, 0.05))
    raise AssertionError(never)


def _holds_no_lock(engine: sa.Engine) -> bool:
    """Whether the stopped worker holds no lock at all: the run's row, the event lock, or the rows
    of a batch it has written but not committed (which the resume's upsert of the same keys would
    wait for). SQLite: the write lock. PostgreSQL: none of its sessions is inside a transaction."""
    if engine.dialect.name == "sqlite":
        with sqlite3.connect(engine.url.database or "", timeout=0.2) as probe:
            try:
                probe.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:
                return False
            probe.rollback()
            return True
    return _settled(lambda: not _in_a_transaction(engine))


def _in_a_transaction(engine: sa.Engine, *, written: bool = False) -> bool:
    """Whether another session of the test's database is inside a transaction (`written`: one
    that has written something)."""
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        f" AND {'backend_xid' if written else 'xact_start'} IS NOT NULL"
    )
    with engine.connect() as connection:
        return bool(connection.execute(query).scalar())


def _settled(condition: Callable[[], bool]) -> bool:
    """Whether `condition` holds, and still does 50 ms later: a statement (or a COMMIT) still on
    its way to the server when the process stopped has arrived by then."""
    if not condition():
        return False
    time.sleep(0.05)
    return condition()


def woke_up(process: subprocess.Popen[bytes], engine: sa.Engine, old: Run) -> bool:
    """Whether the old worker has met the fence (says it lost the run) or, unfenced, ended it."""
    lost = b"lost it" in _stderr_so_far(process)
    return lost or stored(engine, old.id).status != RunStatus.FAILED


def _stderr_so_far(process: subprocess.Popen[bytes]) -> bytes:
    """What the worker wrote on stderr until now (read without blocking)."""
    stream = process.stderr
    assert stream is not None
    os.set_blocking(stream.fileno(), False)
    chunk = stream.read() or b""
    _seen[id(process)] = _seen.get(id(process), b"") + chunk
    return _seen[id(process)]


_seen: dict[int, bytes] = {}


def assert_exactly_once(engine: sa.Engine, old: Run, resumed: Run, total: int) -> None:
    """Every record loaded once; the old run failed as it was swept; the resume finished."""
    assert subject_loads(engine) == dict.fromkeys(range(total), 1)
    failed, done = stored(engine, old.id), stored(engine, resumed.id)
    assert failed.status == RunStatus.FAILED and failed.error_type == "interrupted"
    assert done.status == RunStatus.FINISHED and done.offset == total
    assert done.resumed_from == old.id
    last = events_of(engine, old.id)[-1]
    assert last.kind == "status" and last.data["status"] == "failed"


# ---------------------------------------------------------------- the database stops


@pytest.fixture
def cluster_settings(pg_cluster: PgCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings (also in the environment) on a fresh database of the test's own cluster."""
    url = pg_cluster.create_database(f"runwatch_{uuid.uuid4().hex[:8]}")
    values = {"DATABASE_URL": url, "HEARTBEAT_S": "0.2", "ORPHAN_TIMEOUT_S": "2"}
    values |= {"PROGRESS_INTERVAL_S": "0.05", "WORKER_POLL_S": "0.1"}
    yield configure(monkeypatch, values)
    get_settings.cache_clear()


@pytest.mark.faults
@pytest.mark.timeout(FAULT_TIMEOUT_S)
def test_a_worker_cut_off_by_a_database_stop_during_a_long_batch_loads_nothing_twice(
    pg_cluster: PgCluster, cluster_settings: Settings
) -> None:
    engine = get_engine(cluster_settings.database_url)
    init_db(engine)
    total, batch_ms = 30, 12000
    with write_session(engine) as session:
        params = {"total": total, "batch_size": 10, "delay_ms": batch_ms}
        old = create_run(session=session, job="demo", params=params)
    cut_off = cli_process("worker")
    try:
        wait_until(lambda: stored(engine, old.id).offset == 10, "the first batch committed")
        engine.dispose()
        pg_cluster.stop()  # the worker is in its second batch's 12 s extract
        time.sleep(cluster_settings.orphan_timeout_s + 0.5)
        # The database comes back for the sweeper alone first (another port), as when the
        # worker's network is cut off while other workers still reach the database.
        aside_port = free_port()
        pg_cluster.start(port=aside_port)
        aside = sa.create_engine(pg_cluster.url(engine.url.database or "", port=aside_port))
        try:
            assert Worker(aside, cluster_settings).sweep_orphans() == [old.id]
        finally:
            aside.dispose()
        pg_cluster.stop()
        pg_cluster.start()
        with write_session(engine) as session:
            resumed = resume_run(session=session, run_id=old.id or 0)
        Worker(engine, cluster_settings).run_once()  # executes the resume, 2 batches of 12 s
        wait_until(lambda: woke_up(cut_off, engine, old), "the old worker woke up")
    finally:
        cut_off.send_signal(signal.SIGTERM)
        cut_off.wait(60)
        engine.dispose()
    assert_exactly_once(engine, old, resumed, total)
    assert b"lost it" in _stderr_so_far(cut_off)
