"""Run events: appended with an autoincrement id, read by cursor (Logs, SSE feed, exports)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlmodel import Session, col, select

from db import driver
from db.models import LEVELS, EventKind, Run, RunEvent, RunRecord, utcnow
from db.queries.base import EVENT_CHANNEL, PG_EVENT_LOCK, escape_like


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
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_EVENT_LOCK})
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


def _event_binds(
    *,
    run_id: int | None = None,
    job: str | None = None,
    after_id: int | None = None,
    before_id: int | None = None,
    kinds: Sequence[str] | None = None,
    min_level: str | None = None,
    text: str | None = None,
) -> dict[str, Any]:
    """The named values of a cursor read's filters; their names say which filters apply."""
    binds: dict[str, Any] = {}
    for name, value in (("run_id", run_id), ("job", job), ("after_id", after_id)):
        if value is not None:
            binds[name] = value
    if before_id is not None:
        binds["before_id"] = before_id
    binds.update({f"kind_{i}": kind for i, kind in enumerate(kinds or ())})
    if min_level:
        levels = LEVELS[LEVELS.index(min_level) :]
        binds.update({f"level_{i}": level for i, level in enumerate(levels)})
    if text:
        binds["text"] = f"%{escape_like(text)}%"
    return binds


def _event_filters(binds: dict[str, Any]) -> list[sa.ColumnElement[bool]]:
    """The WHERE clauses of a cursor read, one per filter named in `binds` (see _event_binds)."""

    def bound(name: str) -> Any:
        return sa.bindparam(name, binds[name])

    def all_of(prefix: str) -> list[Any]:
        return [bound(name) for name in binds if name.startswith(prefix)]

    event_id, where = col(RunEvent.id), []
    if "run_id" in binds:
        where.append(col(RunEvent.run_id) == bound("run_id"))
    if "job" in binds:
        jobs_runs = select(Run.id).where(col(Run.job) == bound("job"))
        where.append(col(RunEvent.run_id).in_(jobs_runs))
    if "after_id" in binds:
        where.append(event_id > bound("after_id"))
    if "before_id" in binds:
        where.append(event_id < bound("before_id"))
    if kinds := all_of("kind_"):
        where.append(col(RunEvent.kind).in_(kinds))
    if levels := all_of("level_"):
        where.append(col(RunEvent.level).in_(levels))
    if "text" in binds:
        where.append(col(RunEvent.message).ilike(bound("text"), escape="\\"))
    return where


class EventRow(NamedTuple):
    """One run event as every cursor reader gets it (Logs page, live feed, API, downloads)."""

    id: int
    ts: datetime
    run_id: int
    level: str
    kind: str
    step: str | None
    message: str
    data: dict[str, Any] | None  # None when read without it (with_data=False)


_NO_DATA = sa.null().label("data")
iso = datetime.fromisoformat


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
    with_data: bool = True,
) -> list[EventRow]:
    """Run events by cursor: those after `after_id` (and before `before_id`) that match, oldest
    first (or newest first), at most `limit`; without their JSON data unless `with_data`.

    Read on the bare driver (db.driver): every open Logs page runs it every two seconds
    and the live feed after every write, and through the ORM it cost several times the query.
    """
    binds = _event_binds(
        run_id=run_id,
        job=job,
        after_id=after_id,
        before_id=before_id,
        kinds=kinds,
        min_level=min_level,
        text=text,
    )

    def build() -> sa.Select[Any]:
        event_id = col(RunEvent.id)
        names = EventRow._fields[:-1]
        data = col(RunEvent.data) if with_data else _NO_DATA
        query = (
            sa.select(*(col(getattr(RunEvent, name)) for name in names), data)
            .where(*_event_filters(binds))
            .order_by(event_id.desc() if newest_first else event_id)
        )
        return query if limit is None else query.limit(sa.bindparam("limit"))

    shape = ("events", newest_first, with_data, limit is None, *binds)
    with driver.reader(session) as db:
        rows = db.rows(shape, build, binds | ({} if limit is None else {"limit": limit}))
    return _event_rows(rows, db.sqlite, with_data)


def _event_rows(rows: driver.Rows, sqlite: bool, with_data: bool) -> list[EventRow]:
    """Driver rows as EventRows: timestamps aware UTC, data decoded (when it was read)."""
    row = tuple.__new__  # EventRows built in C: NamedTuple's own __new__ is Python, per row
    if not sqlite:
        return [
            row(EventRow, (i, t.astimezone(UTC), r, lv, k, s, m, d))
            for i, t, r, lv, k, s, m, d in rows
        ]
    utc = driver.SQLITE_UTC
    if not with_data:  # the Logs tick: no JSON to decode
        return [
            row(EventRow, (i, iso(t + utc), r, lv, k, s, m, None))
            for i, t, r, lv, k, s, m, _ in rows
        ]
    decode = driver.json_value(sqlite)
    return [
        row(EventRow, (i, iso(t + utc), r, lv, k, s, m, decode(d)))
        for i, t, r, lv, k, s, m, d in rows
    ]


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
