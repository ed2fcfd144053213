"""The data behind one refresh tick (cached briefly, shared by every session) and the Live actions."""

from __future__ import annotations

import json
from typing import Any

import streamlit as st

from db import queries
from db.models import RunStatus
from db.queries import (
    JobLive,
    LogLine,
    create_run,
    get_job,
    list_log_lines,
    live_overview,
    read_session,
    record_audit,
    request_cancel,
    write_session,
)
from db.settings import get_settings
from etl.jobs import JobError, job_class
from ui.app import engine, worker

LOG_WINDOW = 500  # log lines a page keeps and shows
_TTL = get_settings().cache_ttl_s  # fifty open browsers cost about one query per tick


@st.cache_data(ttl=_TTL, show_spinner=False)
def overview(database_url: str, jobs: tuple[str, ...] = ()) -> list[JobLive]:
    """Every job (or those named) with its latest runs: the Live and Jobs pages' one read."""
    with read_session(engine()) as session:
        return live_overview(session=session, jobs=jobs)


@st.cache_data(ttl=_TTL, show_spinner=False)
def log_lines(
    database_url: str,
    *,
    after_id: int | None,
    run_id: int | None = None,
    job: str | None = None,
    min_level: str | None = None,
    text: str = "",
) -> list[LogLine]:
    """The newest log lines after the cursor `after_id` that match, newest first."""
    with read_session(engine()) as session:
        return list_log_lines(
            session=session,
            after_id=after_id,
            run_id=run_id,
            job=job,
            min_level=min_level,
            text=text or None,
            limit=LOG_WINDOW,
        )


@st.cache_data(ttl=_TTL, show_spinner=False)
def recent_run_ids(database_url: str, job: str | None, limit: int = 100) -> list[int]:
    """Ids of the newest runs (of one job or all), for the Logs page's run choice."""
    with read_session(engine()) as session:
        return queries.recent_run_ids(session=session, job=job, limit=limit)


def parse_params(text: str, job: str) -> dict[str, Any]:
    """The run parameters typed in the dialog, checked by the job's kind; ValueError says what is wrong."""
    try:
        params = json.loads(text or "{}")
    except json.JSONDecodeError as error:
        raise ValueError(
            f"The parameters are not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})."
        ) from None
    if not isinstance(params, dict):
        raise ValueError('The parameters must be a JSON object, like {"total": 1000}.')
    with read_session(engine()) as session:
        kind = get_job(session=session, name=job).kind
    try:
        kind_class = job_class(kind)
        # validate() only reads its argument; no run context is needed to check parameters
        kind_class.__new__(kind_class).validate(dict(params))
    except JobError as error:
        raise ValueError(str(error)) from None
    except Exception as error:  # validate() is job code: whatever it raises, the user must see why
        raise ValueError(f"The {kind} job refused these parameters: {error}") from None
    return params


def run_now(job: str, params: dict[str, Any]) -> int:
    """Enqueue a manual run of `job`, audit it and wake the app's worker; ActiveRunExists if active."""
    actor = get_settings().actor
    with write_session(engine()) as session:
        run = create_run(session=session, job=job, triggered_by=actor, params=params)
        record_audit(
            session=session,
            actor=actor,
            action="trigger",
            target=f"run:{run.id}",
            details={"job": job, "params": run.params},
        )
    overview.clear()
    if (background := worker()) is not None:
        background.wake()
    assert run.id is not None
    return run.id


def cancel(run_id: int) -> str:
    """Cancel a pending run or ask a running one to stop, audit it, and say what happened."""
    actor = get_settings().actor
    with write_session(engine()) as session:
        run = request_cancel(session=session, run_id=run_id, actor=actor)
        record_audit(session=session, actor=actor, action="cancel", target=f"run:{run_id}")
    overview.clear()
    if run.status == RunStatus.CANCELLED:
        return f"Run #{run_id} was cancelled before it started."
    return f"Run #{run_id} stops after its current batch."
