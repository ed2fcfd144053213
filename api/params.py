"""The API's request parameters: run ids, history filters, export order and job params, checked."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import Depends, Path, Query, Request

from api.models import NO_NUL, JobName
from db.models import MAX_ID, RunStatus, Trigger
from db.queries import SORT_KEYS, RunFilters, RunSort, get_job, read_session
from reports import dates
from reports.dates import as_utc, range_end

RunId = Annotated[int, Path(ge=1, le=MAX_ID, description="Id of the run.")]


class BadParameter(ValueError):
    """A request parameter that is well-typed but not acceptable; answered with 422."""

    def __init__(self, name: str, message: str, where: str = "query") -> None:
        self.name, self.where = name, where
        super().__init__(message)


def _utc(name: str, value: datetime | None) -> datetime | None:
    if value is None:
        return None
    try:
        return as_utc(value)
    except OverflowError:
        raise BadParameter(name, f"'{name}' is outside the supported date range.") from None


def _until(request: Request, value: datetime | None) -> datetime | None:
    """`until` in UTC; a bare date includes that whole day, as in `runwatch runs --until`."""
    end = _utc("until", value)
    if end is None:
        return None
    try:
        return range_end(end, request.query_params.get("until", ""))
    except OverflowError:
        raise BadParameter("until", "'until' is outside the supported date range.") from None


def run_filters(
    request: Request,
    status: Annotated[list[RunStatus] | None, Query(description="Repeat for several.")] = None,
    job: Annotated[list[JobName] | None, Query(description="Repeat for several.")] = None,
    trigger: Annotated[list[Trigger] | None, Query(description="Repeat for several.")] = None,
    since: Annotated[
        datetime | None, Query(description="Created at or after (UTC if naive).")
    ] = None,
    until: Annotated[
        datetime | None,
        Query(description="Created before (UTC if naive; a bare date includes that day)."),
    ] = None,
    error_text: Annotated[str, Query(max_length=200, pattern=NO_NUL)] = "",
) -> RunFilters:
    """The history filters shared by /api/etl/logs and the exports."""
    start, end = _utc("since", since), _until(request, until)
    if problem := dates.reversed_range(start, end):
        raise BadParameter("until", problem)
    known_jobs(request.app.state.engine, job or ())
    return RunFilters(
        statuses=tuple(status or ()),
        jobs=tuple(job or ()),
        triggers=tuple(trigger or ()),
        since=start,
        until=end,
        error_text=error_text,
    )


def known_jobs(engine: sa.Engine, names: Iterable[str]) -> None:
    """NotFound (404) for a job name no job has: one rule for /status, the history, exports and feed."""
    names = set(names)
    if not names:
        return
    with read_session(engine) as session:
        for name in sorted(names):
            get_job(session=session, name=name)


Filters = Annotated[RunFilters, Depends(run_filters)]
SortKey = Literal["created_at", "duration", "status", "records"]
assert set(SortKey.__args__) == set(SORT_KEYS)  # type: ignore[attr-defined]


def run_sort(
    sort: Annotated[SortKey, Query(description="Order of the rows.")] = "created_at",
    order: Annotated[Literal["desc", "asc"], Query()] = "desc",
) -> RunSort:
    """The export's order (newest or largest first by default)."""
    return RunSort(key=sort, descending=order == "desc")


Sort = Annotated[RunSort, Depends(run_sort)]
