"""Workers survive their runs: whatever a run raises fails that run, and the loop goes on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from db.models import Job as JobRow, Run, RunStatus
from db.queries import create_run, save_job, write_session
from db.settings import Settings
from etl.jobs import JOB_KINDS, Batch, Job
from etl.worker import BackgroundWorker
from tests.apiserver import running_api
from tests.test_etl_fencing import stored, wait_until

pytestmark = pytest.mark.timeout(180)


class HugeTotalJob(Job):
    """Estimates more records than the database can store: its checkpoint, and its failure, fail."""

    kind = "test_huge_total"

    def estimate_total(self, params: dict[str, Any]) -> int | None:
        return 99999999999999999999999

    def extract(self, params: dict[str, Any], offset: int) -> Iterator[Batch]:
        yield Batch(records=[1], size=1)

    def load(self, batch: Batch, session: Any) -> int:
        return len(batch.records)


class ExitingJob(Job):
    """Raises SystemExit, which is no Exception: it ends the thread executing it."""

    kind = "test_exiting"

    def extract(self, params: dict[str, Any], offset: int) -> Iterator[Batch]:
        yield Batch(records=[1], size=1)

    def transform(self, batch: Batch) -> Batch:
        raise SystemExit("job called sys.exit(3)")


@pytest.fixture
def test_jobs(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The two misbehaving job kinds, registered and configured as jobs of the same names."""
    for kind in (HugeTotalJob, ExitingJob):
        monkeypatch.setitem(JOB_KINDS, kind.kind, kind)
        with write_session(engine) as session:
            save_job(session=session, job=JobRow(name=kind.kind, kind=kind.kind))


def enqueue(engine: sa.Engine, job: str, **params: Any) -> int:
    with write_session(engine) as session:
        run = create_run(session=session, job=job, params=params)
    assert run.id is not None
    return run.id


def ended(engine: sa.Engine, run_id: int) -> Run:
    """The run once it has reached a terminal status."""
    wait_until(lambda: stored(engine, run_id).status not in ("pending", "running"), "it ended")
    return stored(engine, run_id)


@pytest.fixture
def background(engine: sa.Engine, settings: Settings) -> Iterator[BackgroundWorker]:
    """The app's in-process worker on the test database, stopped afterwards."""
    worker = BackgroundWorker(engine, settings).start()
    yield worker
    worker.stop()


def test_an_oversized_demo_total_fails_its_run_and_the_worker_goes_on(
    engine: sa.Engine, background: BackgroundWorker
) -> None:
    bad = ended(engine, enqueue(engine, "demo", total=99999999999999999999999))
    assert bad.status == RunStatus.FAILED and bad.error_message
    assert background.alive
    good = ended(engine, enqueue(engine, "demo", total=100, batch_size=50, delay_ms=0))
    assert good.status == RunStatus.FINISHED and good.offset == 100


def test_a_failure_the_database_cannot_store_still_fails_the_run_with_its_real_error(
    engine: sa.Engine, background: BackgroundWorker, test_jobs: None
) -> None:
    bad = ended(engine, enqueue(engine, HugeTotalJob.kind))
    assert bad.status == RunStatus.FAILED
    # SQLite's driver refuses the int; PostgreSQL answers "integer out of range"
    assert bad.error_type in ("OverflowError", "DataError"), bad.error_type
    assert "Traceback" in bad.error_detail["traceback"]
    assert bad.error_detail["not_stored"].startswith(bad.error_type)
    assert bad.offset == 0 and bad.total_records is None
    assert background.alive and background.restarts == 0
    good = ended(engine, enqueue(engine, "demo", total=100, batch_size=50, delay_ms=0))
    assert good.status == RunStatus.FINISHED


def test_a_worker_thread_that_dies_is_restarted_and_its_run_failed(
    engine: sa.Engine, background: BackgroundWorker, test_jobs: None
) -> None:
    bad = ended(engine, enqueue(engine, ExitingJob.kind))
    assert bad.status == RunStatus.FAILED and bad.error_type == "SystemExit"
    assert bad.error_message == "job called sys.exit(3)"
    wait_until(lambda: background.restarts == 1 and background.alive, "it was restarted")
    assert background.last_death and "SystemExit: job called sys.exit(3)" in background.last_death
    good = ended(engine, enqueue(engine, "demo", total=100, batch_size=50, delay_ms=0))
    assert good.status == RunStatus.FINISHED


def test_health_says_the_api_worker_was_restarted(
    engine: sa.Engine, settings: Settings, test_jobs: None
) -> None:
    with_worker = settings.model_copy(update={"api_worker_enabled": True})
    with running_api(settings=with_worker) as url, httpx.Client(base_url=url, timeout=30) as http:
        bad = ended(engine, enqueue(engine, ExitingJob.kind))
        wait_until(lambda: http.get("/health").json()["worker_restarts"] == 1, "it was restarted")
        health = http.get("/health").json()
    assert bad.error_type == "SystemExit"
    assert health["status"] == "ok" and health["worker"] is True
    assert "SystemExit: job called sys.exit(3)" in health["worker_last_death"]
