"""Test data factories: runs and events with realistic defaults, any field overridable."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlmodel import Session

from db.models import Run, RunEvent, utcnow


def make_run(session: Session, **overrides: Any) -> Run:
    """Insert a run (finished, job demo, 1000 records by default) and return it."""
    started = overrides.pop("started_at", utcnow() - timedelta(minutes=5))
    values: dict[str, Any] = {
        "job": "demo",
        "status": "finished",
        "trigger": "manual",
        "created_at": started,
        "started_at": started,
        "ended_at": started + timedelta(seconds=30),
        "total_records": 1000,
        "offset": 1000,
        "records_loaded": 1000,
        "counters": {"subjects_processed": 1000, "categories_processed": 20},
    }
    values.update(overrides)
    run = Run(**values)
    session.add(run)
    session.flush()
    return run


def make_event(session: Session, run: Run, **overrides: Any) -> RunEvent:
    """Insert a log event of `run` and return it."""
    event = RunEvent(run_id=run.id, kind="log", message="line", **overrides)
    session.add(event)
    session.flush()
    return event
