"""The API's request parameters: run ids, history filters, export order and job params, checked."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import Depends, Path, Query, Request

from api.models import NO_NUL, JobName
from db.models import MAX_ID, RunStatus, Trigger
from db.queries import SORT_KEYS, RunFilters, RunSort
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
    if start and end and start > end:
        raise BadParameter("until", "'until' must not be before 'since'.")
    return RunFilters(
        statuses=tuple(status or ()),
        jobs=tuple(job or ()),
        triggers=tuple(trigger or ()),
        since=start,
        until=end,
        error_text=error_text,
    )


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
