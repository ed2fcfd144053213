"""Run events: appended with an autoincrement id, read by cursor (Logs, SSE feed, exports)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from db.models import LEVELS, EventKind, Run, RunEvent, RunRecord, utcnow
from db.queries.base import _PG_EVENT_LOCK, EVENT_CHANNEL, _escape_like


def append_event(
    *,
    session: Session,
    run_id: int,
    kind: str = EventKind.LOG,
    message: str = "",
    level: str = "INFO",
    step: str | None = None,
    data: dict[str, Any] | None = None,
    ts: datetime | None = None,
) -> int:
    """Append one run event (at `ts`, default now) and return its id (the live readers' cursor)."""
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}")
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_EVENT_LOCK})
    event_id = session.execute(
        sa.insert(RunEvent)
        .values(
            run_id=run_id,
            ts=ts or utcnow(),
            kind=str(kind),
            level=level,
            step=step,
            message=message,
            data=data or {},
        )
        .returning(col(RunEvent.id))
    ).scalar_one()
    if postgres:
        session.execute(
            sa.text("SELECT pg_notify(:c, :p)"), {"c": EVENT_CHANNEL, "p": str(event_id)}
        )
    return int(event_id)


def run_state_event(
    *, session: Session, run: Run, kind: str, message: str, level: str = "INFO"
) -> int:
    """Append a status or progress event carrying the run's public record."""
    assert run.id is not None
    data = RunRecord.from_run(run).model_dump(mode="json")
    return append_event(
        session=session,
        run_id=run.id,
        kind=kind,
        message=message,
        level=level,
        step=run.current_step,
        data=data,
    )


def list_events(
    *,
    session: Session,
    run_id: int | None = None,
    job: str | None = None,
    after_id: int | None = None,
    before_id: int | None = None,
    kinds: Sequence[str] | None = None,
    min_level: str | None = None,
    text: str | None = None,
    limit: int | None = 500,
    newest_first: bool = False,
) -> Sequence[RunEvent]:
    """Run events by cursor: those after `after_id` (or before `before_id`), oldest first by default."""
    where = _event_filters(
        run_id=run_id,
        job=job,
        after_id=after_id,
        before_id=before_id,
        kinds=kinds,
        min_level=min_level,
        text=text,
    )
    order = col(RunEvent.id).desc() if newest_first else col(RunEvent.id)
    return session.exec(select(RunEvent).where(*where).order_by(order).limit(limit)).all()


def _event_filters(
    *,
    run_id: int | None = None,
    job: str | None = None,
    after_id: int | None = None,
    before_id: int | None = None,
    kinds: Sequence[str] | None = None,
    min_level: str | None = None,
    text: str | None = None,
) -> list[sa.ColumnElement[bool]]:
    """The WHERE clauses of a run event cursor read."""
    where: list[sa.ColumnElement[bool]] = []
    if run_id is not None:
        where.append(col(RunEvent.run_id) == run_id)
    if job is not None:
        where.append(col(RunEvent.run_id).in_(select(Run.id).where(Run.job == job)))
    if after_id is not None:
        where.append(col(RunEvent.id) > after_id)
    if before_id is not None:
        where.append(col(RunEvent.id) < before_id)
    if kinds:
        where.append(col(RunEvent.kind).in_(list(kinds)))
    if min_level:
        where.append(col(RunEvent.level).in_(LEVELS[LEVELS.index(min_level) :]))
    if text:
        where.append(col(RunEvent.message).ilike(f"%{_escape_like(text)}%", escape="\\"))
    return where


LOG_COLUMNS = ("id", "ts", "run_id", "level", "kind", "step", "message")


def list_log_lines(
    *,
    session: Session,
    run_id: int | None = None,
    job: str | None = None,
    after_id: int | None = None,
    min_level: str | None = None,
    text: str | None = None,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """The newest matching run events after `after_id`, newest first, as plain LOG_COLUMNS rows.

    The Logs page's read: the same cursor as list_events without the JSON `data`, whose decoding
    cost more than the query on every tick.
    """
    table: sa.Table = RunEvent.__table__  # type: ignore[attr-defined]
    where = _event_filters(
        run_id=run_id, job=job, after_id=after_id, min_level=min_level, text=text
    )
    query = (
        sa.select(*(table.c[name] for name in LOG_COLUMNS))
        .where(*where)
        .order_by(table.c.id.desc())
        .limit(limit)
    )
    return [dict(row) for row in session.execute(query).mappings()]


def last_event_id(*, session: Session) -> int:
    """The id of the newest run event (0 when there is none)."""
    return int(session.exec(select(sa.func.coalesce(sa.func.max(RunEvent.id), 0))).one() or 0)


def run_jobs(*, session: Session, run_ids: Iterable[int]) -> dict[int, str]:
    """The job of each of these runs (the live feed's channel filters)."""
    ids = list(run_ids)
    if not ids:
        return {}
    rows = session.exec(select(Run.id, Run.job).where(col(Run.id).in_(ids))).all()
    return {int(run_id): job for run_id, job in rows if run_id is not None}
