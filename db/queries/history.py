"""Run reads: one run by id, and the filtered, sorted history (page, count, stream)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from db import driver
from db.enums import SORT_KEYS as SORT_KEYS  # re-exported
from db.models import Run, RunRow
from db.queries.base import escape_like
from db.queries.errors import NotFound


def get_run(*, session: Session, run_id: int, fresh: bool = False) -> Run:
    """The run with this id, or NotFound; `fresh` re-reads it from the database."""
    run = session.get(Run, run_id, populate_existing=fresh)
    if run is None:
        raise NotFound(f"No run #{run_id}.")
    return run


@dataclass(frozen=True)
class RunFilters:
    """What the history shows: every field narrows the set; empty means no restriction."""

    statuses: tuple[str, ...] = ()
    jobs: tuple[str, ...] = ()
    triggers: tuple[str, ...] = ()
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before
    error_text: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The filters as plain JSON values (for audit records and URLs)."""
        return {
            "statuses": list(self.statuses),
            "jobs": list(self.jobs),
            "triggers": list(self.triggers),
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "error_text": self.error_text,
        }


@dataclass(frozen=True)
class RunSort:
    """The history's order: a key of SORT_KEYS, newest or largest first by default."""

    key: str = "created_at"
    descending: bool = True

    def __post_init__(self) -> None:
        if self.key not in SORT_KEYS:
            raise ValueError(f"sort key must be one of {', '.join(SORT_KEYS)}")


@dataclass
class RunPage:
    """One page of the filtered history and the size of the whole filtered set."""

    runs: list[RunRow] = field(default_factory=list)
    total: int = 0


def filter_clause(filters: RunFilters) -> sa.ColumnElement[bool]:
    """The WHERE clause of `filters` on the run table."""
    return run_where(run_binds(filters))


def run_binds(filters: RunFilters) -> dict[str, Any]:
    """The named values of the filters' bind parameters; their names say which filters apply."""
    binds: dict[str, Any] = {}
    for field_name, values in (
        ("status", filters.statuses),
        ("job", filters.jobs),
        ("trigger", filters.triggers),
    ):
        binds.update({f"runs_{field_name}_{i}": value for i, value in enumerate(values)})
    if filters.since is not None:
        binds["runs_since"] = filters.since
    if filters.until is not None:
        binds["runs_until"] = filters.until
    if filters.error_text:
        binds["runs_error"] = f"%{escape_like(filters.error_text)}%"
    return binds


def run_where(binds: dict[str, Any]) -> sa.ColumnElement[bool]:
    """The WHERE clause of the filters named in `binds` (see run_binds)."""

    def bound(name: str) -> Any:
        return sa.bindparam(name, binds[name])

    clauses: list[sa.ColumnElement[bool]] = []
    for name, column in (("status", Run.status), ("job", Run.job), ("trigger", Run.trigger)):
        if values := [bound(bind) for bind in binds if bind.startswith(f"runs_{name}_")]:
            clauses.append(col(column).in_(values))
    if "runs_since" in binds:
        clauses.append(col(Run.created_at) >= bound("runs_since"))
    if "runs_until" in binds:
        clauses.append(col(Run.created_at) < bound("runs_until"))
    if "runs_error" in binds:
        clauses.append(col(Run.error_message).ilike(bound("runs_error"), escape="\\"))
    return sa.and_(sa.true(), *clauses)


def order_clause(sort: RunSort) -> list[Any]:
    """The ORDER BY of `sort`: its key (NULLs last), then the run id the same way."""
    column: Any = {
        "created_at": col(Run.created_at),
        "duration": col(Run.duration_s),
        "status": col(Run.status),
        "records": col(Run.records_loaded),
    }[sort.key]
    direction = column.desc() if sort.descending else column.asc()
    tiebreak = col(Run.id).desc() if sort.descending else col(Run.id).asc()
    return [direction.nulls_last(), tiebreak]


def list_runs(
    *,
    session: Session,
    filters: RunFilters | None = None,
    sort: RunSort | None = None,
    page: int = 1,
    page_size: int = 50,
) -> RunPage:
    """One page (1-based) of the filtered, sorted history as RunRows, with the filtered total.

    Read on the bare driver (db.driver): the History page runs it on every rerun.
    """
    filters, sort = filters or RunFilters(), sort or RunSort()
    if page < 1 or page_size < 1:
        raise ValueError("page and page_size start at 1")
    binds = run_binds(filters)

    def page_query() -> sa.Select[Any]:
        query = _rows_query(binds, sort)
        return query.limit(sa.bindparam("limit")).offset(sa.bindparam("offset"))

    def count_query() -> sa.Select[Any]:
        return sa.select(sa.func.count()).select_from(Run).where(run_where(binds))

    window = {"limit": page_size, "offset": (page - 1) * page_size}
    with driver.reader(session) as db:
        rows = db.rows(("run_rows", *binds, sort), page_query, binds | window)
        total = db.rows(("run_count", *binds), count_query, binds)[0][0]
    return RunPage(runs=run_rows(rows, db.sqlite), total=int(total))


RUN_ROW_COLUMNS = tuple(col(getattr(Run, name)) for name in RunRow._fields)


def run_rows(rows: driver.Rows, sqlite: bool) -> list[RunRow]:
    """Driver rows of RUN_ROW_COLUMNS as RunRows: timestamps aware UTC, counters decoded."""
    ts, data, row = driver.timestamp(sqlite), driver.json_value(sqlite), tuple.__new__
    return [
        row(
            RunRow,
            (i, job, status, trigger, by, ts(created), ts(started), ts(ended), total, offset)
            + (loaded, rejected, data(counters), step, kind, message, resumed, bool(cancel)),
        )
        for (
            i, job, status, trigger, by, created, started, ended, total, offset,
            loaded, rejected, counters, step, kind, message, resumed, cancel,
        ) in rows
    ]  # fmt: skip


def count_runs(*, session: Session, filters: RunFilters | None = None) -> int:
    """How many runs the filters select."""
    where = filter_clause(filters or RunFilters())
    return int(session.exec(select(sa.func.count()).select_from(Run).where(where)).one())


def iter_runs(
    *,
    session: Session,
    filters: RunFilters | None = None,
    sort: RunSort | None = None,
    chunk: int = 2000,
) -> Iterator[RunRow]:
    """Every run the filters select, in order, as RunRows streamed in chunks (exports, the CLI)."""
    filters, sort = filters or RunFilters(), sort or RunSort()
    binds = run_binds(filters)
    with driver.streaming(session) as db:
        query = partial(_rows_query, binds, sort)
        for rows in db.chunks(("run_stream", *binds, sort), query, binds, chunk):
            yield from run_rows(rows, db.sqlite)


def _rows_query(binds: dict[str, Any], sort: RunSort) -> sa.Select[Any]:
    """The RUN_ROW_COLUMNS of the runs filtered by `binds` (see run_binds), in `sort` order."""
    return sa.select(*RUN_ROW_COLUMNS).where(run_where(binds)).order_by(*order_clause(sort))
