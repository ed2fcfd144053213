"""The API's routes: reads through `db.queries` and `reports`, every change through `etl.commands`.

Every route but /health needs the caller resolved (`api.auth`); what the caller's role may do, the
command layer decides.
"""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, StreamingResponse

from api.auth import AUTH_ERRORS, CallerOf, caller_of
from api.models import (
    ActionResponse,
    ErrorBody,
    EtlStatus,
    EventItem,
    EventPage,
    Health,
    HealthDetails,
    JobItem,
    JobName,
    JobResponse,
    LogItem,
    LogPage,
    RunDetail,
    TriggerRequest,
    TriggerResponse,
)
from api.params import Filters, RunId, Sort
from api.status import estimated_duration, etl_status
from db.engine import file_problem
from db.models import MAX_ID, RunStatus
from db.queries import (
    RunFilters,
    RunSort,
    count_runs,
    get_job,
    get_run,
    list_events,
    list_jobs,
    list_runs,
    read_session,
)
from etl import commands
from reports.export import MEDIA_TYPES, Format, file_name
from reports.health import health_report

router = APIRouter(dependencies=[Depends(caller_of)], responses=AUTH_ERRORS)
public = APIRouter()  # open to anyone: /health
NO_SUCH_JOB: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such run or job."}
}
ERRORS: dict[int | str, dict[str, Any]] = {
    **NO_SUCH_JOB,
    409: {"model": ErrorBody, "description": "The job or run is not in a state that allows it."},
}


def engine_of(request: Request) -> sa.Engine:
    """The engine the app serves."""
    engine: sa.Engine = request.app.state.engine
    return engine


@router.get("/api/etl/status", response_model=EtlStatus, responses=ERRORS)
def status(request: Request, job: Annotated[JobName | None, Query()] = None) -> EtlStatus:
    """The active run of `job` (or of any job) with progress, ETA and rates; else the newest run."""
    with read_session(engine_of(request)) as session:
        if job is not None:
            get_job(session=session, name=job)
        return etl_status(session=session, job=job, meter=request.app.state.meter)


@router.post("/api/etl/trigger", status_code=202, response_model=TriggerResponse, responses=ERRORS)
def trigger(request: Request, caller: CallerOf, body: TriggerRequest) -> TriggerResponse:
    """Enqueue a run of a job (trigger `api`); 409 names the active run when there is one."""
    engine = engine_of(request)
    run = commands.trigger(engine, caller, body.job, body.params)
    with read_session(engine) as session:
        eta = estimated_duration(session=session, job=body.job, total=run.total_records)
    assert run.id is not None
    message = f"Run #{run.id} of job '{body.job}' enqueued."
    return TriggerResponse(success=True, log_id=run.id, message=message, estimated_duration=eta)


@router.get("/api/etl/logs", response_model=LogPage, responses=NO_SUCH_JOB)
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
def cancel(request: Request, caller: CallerOf, run_id: RunId) -> ActionResponse:
    """Cancel a pending run at once, or ask a running one to stop after its current batch."""
    run = commands.cancel(engine_of(request), caller, run_id)
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
    caller: CallerOf,
    run_id: RunId,
    restart: Annotated[
        bool, Query(description="Start from zero instead of the checkpoint.")
    ] = False,
) -> TriggerResponse:
    """Enqueue a new run that resumes a failed or cancelled run from its checkpoint (or restarts it)."""
    engine = engine_of(request)
    run = commands.resume(engine, caller, run_id, from_checkpoint=not restart)
    left = None if run.total_records is None else run.total_records - run.offset
    with read_session(engine) as session:
        eta = estimated_duration(session=session, job=run.job, total=left)
    assert run.id is not None
    how = "from zero" if restart else f"from offset {run.offset:,}"
    message = f"Run #{run.id} enqueued to retry run #{run_id} {how}."
    return TriggerResponse(success=True, log_id=run.id, message=message, estimated_duration=eta)


@router.get("/api/etl/jobs", response_model=list[JobItem])
def jobs(request: Request) -> list[JobItem]:
    """Every configured job, with its schedule and whether it is paused."""
    with read_session(engine_of(request)) as session:
        return [JobItem.from_job(job) for job in list_jobs(session=session)]


JobPath = Annotated[JobName, Path(description="The job's name.")]


@router.post("/api/etl/jobs/{job}/pause", response_model=JobResponse, responses=ERRORS)
def pause(request: Request, caller: CallerOf, job: JobPath) -> JobResponse:
    """Pause a job: its schedule enqueues nothing and triggers are refused; an active run goes on."""
    paused = commands.pause(engine_of(request), caller, job)
    message = f"Job '{job}' paused: it starts no run until it is resumed."
    return JobResponse(success=True, job=JobItem.from_job(paused), message=message)


@router.post("/api/etl/jobs/{job}/unpause", response_model=JobResponse, responses=ERRORS)
def unpause(request: Request, caller: CallerOf, job: JobPath) -> JobResponse:
    """Resume a paused job: its schedule runs again from its next tick."""
    resumed = commands.unpause(engine_of(request), caller, job)
    message = f"Job '{job}' resumed."
    return JobResponse(success=True, job=JobItem.from_job(resumed), message=message)


@public.get("/health", response_model=Health, responses={503: {"model": Health}})
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
    if problem := file_problem(engine_of(request)):
        split = Health(
            status="unavailable", database=False, worker=alive, pending=None, problem=problem
        )
        return JSONResponse(split.model_dump(), status_code=503)
    ok = worker is None or alive
    return Health(status="ok" if ok else "degraded", database=True, pending=pending, **about_worker)


@router.get(
    "/api/health/details",
    response_model=HealthDetails,
    responses={503: {"model": HealthDetails, "description": "The database cannot be reached."}},
    tags=["health"],
)
def health_details(request: Request) -> Any:
    """The database and its round trip, every registered worker (live, lost or stopped), the
    queue, the scheduler's last tick and the alert channels: what the Health page shows."""
    report = health_report(engine_of(request), request.app.state.settings)
    details = HealthDetails.from_report(report)
    if report.database.reachable:
        return details
    return JSONResponse(jsonable_encoder(details), status_code=503)


def _export(
    request: Request, caller: CallerOf, fmt: Format, filters: RunFilters, sort: RunSort
) -> StreamingResponse:
    chunks = commands.export(engine_of(request), caller, fmt, filters, sort)
    headers = {"Content-Disposition": f'attachment; filename="{file_name(fmt)}"'}
    return StreamingResponse(chunks, media_type=MEDIA_TYPES[fmt], headers=headers)


EXPORT_DOC = (
    "The whole filtered history, streamed; byte-identical to the app and CLI exports, audited."
)


@router.get(
    "/api/etl/export.csv",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {}}, "description": "CSV, header row first."},
        **NO_SUCH_JOB,
    },
    description=EXPORT_DOC,
)
def export_csv(
    request: Request, caller: CallerOf, filters: Filters, sort: Sort
) -> StreamingResponse:
    """Export the filtered history as CSV."""
    return _export(request, caller, "csv", filters, sort)


@router.get(
    "/api/etl/export.json",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/json": {}}, "description": "A JSON array of runs."},
        **NO_SUCH_JOB,
    },
    description=EXPORT_DOC,
)
def export_json(
    request: Request, caller: CallerOf, filters: Filters, sort: Sort
) -> StreamingResponse:
    """Export the filtered history as JSON."""
    return _export(request, caller, "json", filters, sort)
