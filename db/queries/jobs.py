"""Job configurations: the built-in jobs, reads and saves."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, select

from db.models import Job
from db.queries.base import upsert
from db.queries.errors import NotFound

BUILTIN_JOBS = (
    Job(
        name="demo",
        title="Demo catalogue",
        kind="demo",
        params={"total": 20000, "batch_size": 200, "delay_ms": 100, "seed": 42},
    ),
    Job(name="csv_import", title="CSV import", kind="csv_import", params={}),
)


def ensure_builtin_jobs(*, session: Session) -> None:
    """Add the built-in jobs that are not configured yet (safe when many processes start at once)."""
    rows = [job.model_dump() for job in BUILTIN_JOBS]
    upsert(session=session, table=Job.__table__, rows=rows, key=["name"], update=False)  # type: ignore[attr-defined]


def list_jobs(*, session: Session) -> Sequence[Job]:
    """Every configured job, by name."""
    return session.exec(select(Job).order_by(Job.name)).all()


def get_job(*, session: Session, name: str) -> Job:
    """The job called `name`, or NotFound."""
    job = session.get(Job, name)
    if job is None:
        raise NotFound(f"No job named '{name}'.")
    return job


def save_job(*, session: Session, job: Job) -> Job:
    """Insert or update a job's configuration."""
    merged = session.merge(job)
    session.flush()
    return merged
