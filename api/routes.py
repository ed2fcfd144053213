"""The API's routes: thin calls into `db.queries`, `reports.export` and the job classes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from sqlmodel import Session

from api.models import (
    MAX_ID,
    ActionResponse,
    ErrorBody,
    EtlStatus,
    EventItem,
    EventPage,
    Health,
    JobName,
    LogItem,
    LogPage,
    RunDetail,
    TriggerRequest,
    TriggerResponse,
)
from api.params import Filters, RunId, Sort, check_params
from api.status import estimated_duration, etl_status
from db.models import RunStatus, Trigger
from db.queries import (
    InvalidState,
    RunFilters,
    RunSort,
    count_runs,
    create_run,
    get_job,
    get_run,
    list_events,
    list_runs,
    read_session,
    record_audit,
    request_cancel,
    resume_run,
    write_session,
)
from etl.jobs import JobError, RunContext, job_class
from reports.export import MEDIA_TYPES, Format, stream_export

router = APIRouter()
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such run or job."},
    409: {"model": ErrorBody, "description": "The job or run is not in a state that allows it."},
}


def engine_of(request: Request) -> sa.Engine:
    """The engine the app serves."""
    engine: sa.Engine = request.app.state.engine
    return engine


def actor_of(request: Request) -> str:
    """Who made the request, for audit records (no login yet: the client's address)."""
    return f"api:{request.client.host}" if request.client else "api"


@router.get("/api/etl/status", response_model=EtlStatus, responses=ERRORS)
def status(request: Request, job: Annotated[JobName | None, Query()] = None) -> EtlStatus:
    """The active run of `job` (or of any job) with progress, ETA and rates; else the newest run."""
    with read_session(engine_of(request)) as session:
        if job is not None:
            get_job(session=session, name=job)
        return etl_status(session=session, job=job, meter=request.app.state.meter)


@router.post("/api/etl/trigger", status_code=202, response_model=TriggerResponse, responses=ERRORS)
def trigger(request: Request, body: TriggerRequest) -> TriggerResponse:
    """Enqueue a run of a job (trigger `api`); 409 names the active run when there is one."""
    actor = actor_of(request)
    with write_session(engine_of(request)) as session:
        params, total = _validated(session, body.job, body.params)
        run = create_run(
            session=session, job=body.job, trigger=Trigger.API, triggered_by=actor, params=params
        )
        record_audit(
            session=session,
            actor=actor,
            action="trigger",
            target=body.job,
            details={"run_id": run.id, "params": body.params},
        )
        eta = estimated_duration(session=session, job=body.job, total=total)
    _wake(request)
    assert run.id is not None
    message = f"Run #{run.id} of job '{body.job}' enqueued."
    return TriggerResponse(success=True, log_id=run.id, message=message, estimated_duration=eta)


def _validated(
    session: Session, name: str, params: dict[str, Any]
) -> tuple[dict[str, Any], int | None]:
    """The caller's params checked by the job class (JobError → 422), and the run's estimated total."""
    job = get_job(session=session, name=name)
    if not job.enabled:
        raise InvalidState(f"Job '{name}' is disabled; enable it on the Jobs page first.")
    check_params(params)
    try:
        instance = job_class(job.kind)(RunContext(run_id=0, job=name), {**job.params, **params})
        return params, instance.estimate_total(instance.params)
    except JobError:
        raise
    except (
        Exception
    ) as error:  # a job's validate() that trips over odd input still means bad params
        raise JobError(f"Invalid params for job '{name}': {error}") from None


def _wake(request: Request) -> None:
    worker = request.app.state.worker
    if worker is not None:
        worker.wake()


@router.get("/api/etl/logs", response_model=LogPage)
def logs(
    request: Request,
    filters: Filters,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
) -> LogPage:
    """The filtered run history, newest first, one page at a time, with the filtered total."""
    with read_session(engine_of(request)) as session:
        result = list_runs(session=session, filters=filters, page=page, page_size=limit)
    items = [LogItem.from_run(run) for run in result.runs]
    return LogPage(total=result.total, page=page, limit=limit, items=items)


@router.get("/api/etl/runs/{run_id}", response_model=RunDetail, responses=ERRORS)
def run_detail(request: Request, run_id: RunId) -> RunDetail:
    """One run: its record, parameters, counters and error detail."""
    with read_session(engine_of(request)) as session:
        return RunDetail.from_run_detail(get_run(session=session, run_id=run_id))


@router.get("/api/etl/runs/{run_id}/events", response_model=EventPage, responses=ERRORS)
def run_events(
    request: Request,
    run_id: RunId,
    after: Annotated[int, Query(ge=0, le=MAX_ID, description="Events after this id.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EventPage:
    """A run's events after the cursor `after`, oldest first."""
    with read_session(engine_of(request)) as session:
        get_run(session=session, run_id=run_id)
        events = list_events(session=session, run_id=run_id, after_id=after, limit=limit)
    items = [EventItem.from_event(event) for event in events]
    return EventPage(items=items, next_after=items[-1].id if items else after)


@router.post("/api/etl/runs/{run_id}/cancel", response_model=ActionResponse, responses=ERRORS)
def cancel(request: Request, run_id: RunId) -> ActionResponse:
    """Cancel a pending run at once, or ask a running one to stop after its current batch."""
    actor = actor_of(request)
    with write_session(engine_of(request)) as session:
        run = request_cancel(session=session, run_id=run_id, actor=actor)
        record_audit(session=session, actor=actor, action="cancel", target=f"run:{run_id}")
    done = run.status == RunStatus.CANCELLED
    message = f"Run #{run_id} " + ("cancelled." if done else "will stop after its current batch.")
    return ActionResponse(success=True, log_id=run_id, status=run.status, message=message)


@router.post(
    "/api/etl/runs/{run_id}/retry",
    status_code=202,
    response_model=TriggerResponse,
    responses=ERRORS,
)
def retry(
    request: Request,
    run_id: RunId,
    restart: Annotated[
        bool, Query(description="Start from zero instead of the checkpoint.")
    ] = False,
) -> TriggerResponse:
    """Enqueue a new run that resumes a failed or cancelled run from its checkpoint (or restarts it)."""
    actor = actor_of(request)
    with write_session(engine_of(request)) as session:
        run = resume_run(
            session=session, run_id=run_id, triggered_by=actor, from_checkpoint=not restart
        )
        details = {"run_id": run.id, "from_checkpoint": not restart}
        record_audit(
            session=session, actor=actor, action="retry", target=f"run:{run_id}", details=details
        )
        left = None if run.total_records is None else run.total_records - run.offset
        eta = estimated_duration(session=session, job=run.job, total=left)
    _wake(request)
    assert run.id is not None
    how = "from zero" if restart else f"from offset {run.offset:,}"
    message = f"Run #{run.id} enqueued to retry run #{run_id} {how}."
    return TriggerResponse(success=True, log_id=run.id, message=message, estimated_duration=eta)


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
def health(request: Request) -> Any:
    """Whether the database answers, the worker lives (and how often it was restarted), and how
    many runs wait; 503 when the database is down."""
    worker = request.app.state.worker
    alive = None if worker is None else bool(worker.alive)
    about_worker = {
        "worker": alive,
        "worker_restarts": None if worker is None else worker.restarts,
        "worker_last_death": None if worker is None else worker.last_death,
    }
    try:
        with read_session(engine_of(request)) as session:
            pending = count_runs(session=session, filters=RunFilters(statuses=(RunStatus.PENDING,)))
    except (sa.exc.OperationalError, sa.exc.InterfaceError):
        down = Health(status="unavailable", database=False, pending=None, **about_worker)
        return JSONResponse(down.model_dump(), status_code=503)
    ok = worker is None or alive
    return Health(status="ok" if ok else "degraded", database=True, pending=pending, **about_worker)


def _export(request: Request, fmt: Format, filters: RunFilters, sort: RunSort) -> StreamingResponse:
    chunks: Iterator[bytes] = stream_export(
        engine=engine_of(request),
        fmt=fmt,
        filters=filters,
        sort=sort,
        actor=actor_of(request),
        source="api",
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    headers = {"Content-Disposition": f'attachment; filename="runwatch-runs-{stamp}.{fmt}"'}
    return StreamingResponse(chunks, media_type=MEDIA_TYPES[fmt], headers=headers)


EXPORT_DOC = (
    "The whole filtered history, streamed; byte-identical to the app and CLI exports, audited."
)


@router.get(
    "/api/etl/export.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "CSV, header row first."}},
    description=EXPORT_DOC,
)
def export_csv(request: Request, filters: Filters, sort: Sort) -> StreamingResponse:
    """Export the filtered history as CSV."""
    return _export(request, "csv", filters, sort)


@router.get(
    "/api/etl/export.json",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/json": {}}, "description": "A JSON array of runs."}},
    description=EXPORT_DOC,
)
def export_json(request: Request, filters: Filters, sort: Sort) -> StreamingResponse:
    """Export the filtered history as JSON."""
    return _export(request, "json", filters, sort)
