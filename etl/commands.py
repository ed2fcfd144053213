"""Every change to a run or a job: checked, written and audited here, and nowhere else.

The app's buttons, the CLI and the API are thin adapters over these functions. Each command takes the
engine and the `Caller` (who asks, through which front end, with which role), checks the caller's role
first (`PERMISSIONS`: a refusal writes one `forbidden` audit row and nothing else), then checks the
request, writes it, records exactly one `audit_event` of one shape per action, and wakes this
process's workers. Refusals are the typed errors of `db.queries.errors`; `REFUSALS` maps each to one
exit code and one HTTP status. Users and API tokens are changed the same way, in `etl.accounts`.
"""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import Session

from db.models import (
    JOB_NAME_MAX,
    Alert,
    AlertKind,
    AlertRule,
    Channel,
    Job,
    Role,
    Run,
    RunStatus,
    Trigger,
    utcnow,
)
from db.queries import (
    ActiveRunExists,
    AuditFilters,
    BadParams,
    Forbidden,
    InvalidState,
    JobDisabled,
    JobPaused,
    NotFound,
    RunFilters,
    RunSort,
    RunwatchError,
    Unauthenticated,
    active_run_id,
    add_rule,
    append_event,
    claim_next_run,
    create_run,
    get_job,
    get_run,
    insert_alerts,
    mark_read,
    record_audit,
    remove_rule,
    request_cancel,
    resume_run,
    save_job,
    set_paused,
    take_tick,
    write_session,
)
from etl.schedules import Catchup, Policy, Schedule, ScheduleError, Skipped, plan_ticks
from etl.wakeup import wake_local_workers

if TYPE_CHECKING:  # imported when a command needs them: the job kinds and pyarrow are most of a
    # CLI start-up, and `runwatch runs` needs neither
    from etl.jobs import Job as JobKind
    from reports.audit_export import stream_audit_export
    from reports.export import Format, stream_export

JOB_NAME = re.compile(rf"[a-z0-9][a-z0-9_-]{{0,{JOB_NAME_MAX - 1}}}")


class Source(StrEnum):
    """The front end a request came through, recorded with every audit event."""

    APP = "app"
    CLI = "cli"
    API = "api"
    SCHEDULER = "scheduler"  # a worker's scheduler loop


@dataclass(frozen=True)
class Caller:
    """Who asks, through which front end, with which role (local front ends and the scheduler: admin)."""

    actor: str
    source: Source
    role: Role = Role.ADMIN


@dataclass(frozen=True)
class Refusal:
    """How the front ends report one kind of refusal: the CLI's exit code and the API's status."""

    exit_code: int
    http_status: int


EXIT_USAGE, EXIT_ACTIVE, EXIT_DENIED = 2, 3, 4
# One row per refusal, most specific first: the CLI and the API both look the error up here.
REFUSALS: dict[type[RunwatchError], Refusal] = {
    Forbidden: Refusal(EXIT_DENIED, 403),
    Unauthenticated: Refusal(EXIT_DENIED, 401),  # also SignInFailed and AccountLocked
    ActiveRunExists: Refusal(EXIT_ACTIVE, 409),
    JobDisabled: Refusal(EXIT_USAGE, 409),
    JobPaused: Refusal(EXIT_USAGE, 409),
    InvalidState: Refusal(EXIT_USAGE, 409),
    BadParams: Refusal(EXIT_USAGE, 422),
    NotFound: Refusal(EXIT_USAGE, 404),
    RunwatchError: Refusal(EXIT_USAGE, 400),
}


def refusal(error: RunwatchError) -> Refusal:
    """The exit code and HTTP status of `error`."""
    return next(r for kind, r in REFUSALS.items() if isinstance(error, kind))


# ---------------------------------------------------------------- who may do what


@dataclass(frozen=True)
class Permission:
    """The least role an action needs, and how a refusal names the action."""

    needs: Role
    doing: str  # "Starting a run" needs the operator role; ...


# Every action a command takes, by its audit action; front ends ask `may` to grey out what is refused.
PERMISSIONS: dict[str, Permission] = {
    "export": Permission(Role.VIEWER, "Exporting"),
    "trigger": Permission(Role.OPERATOR, "Starting a run"),
    "cancel": Permission(Role.OPERATOR, "Cancelling a run"),
    "retry": Permission(Role.OPERATOR, "Resuming or retrying a run"),
    "config_change": Permission(Role.ADMIN, "Adding or changing a job"),
    "pause": Permission(Role.ADMIN, "Pausing a job"),
    "unpause": Permission(Role.ADMIN, "Unpausing a job"),
    "user_add": Permission(Role.ADMIN, "Adding a user"),
    "user_password": Permission(Role.ADMIN, "Setting a user's password"),
    "user_role": Permission(Role.ADMIN, "Changing a user's role"),
    "user_disable": Permission(Role.ADMIN, "Disabling a user"),
    "user_enable": Permission(Role.ADMIN, "Enabling a user"),
    "user_list": Permission(Role.ADMIN, "Listing the users"),
    "token_create": Permission(Role.ADMIN, "Creating an API token"),
    "token_revoke": Permission(Role.ADMIN, "Revoking an API token"),
    "token_list": Permission(Role.ADMIN, "Listing the API tokens"),
    "alert_rule": Permission(Role.ADMIN, "Adding or removing an alert rule"),
    "alert_test": Permission(Role.ADMIN, "Sending a test alert"),
    "alerts_read": Permission(Role.VIEWER, "Marking alerts read"),
}


def may(caller: Caller, action: str) -> bool:
    """Whether `caller`'s role allows `action` (a key of PERMISSIONS)."""
    return caller.role.allows(PERMISSIONS[action].needs)


def refused(caller: Caller, action: str) -> Forbidden | None:
    """Why `caller` may not take `action` (the refusal a front end shows), or None when it may."""
    if may(caller, action):
        return None
    permission = PERMISSIONS[action]
    return Forbidden(permission.doing, permission.needs, caller.role)


def require(engine: sa.Engine, caller: Caller, action: str, target: str) -> None:
    """Forbidden unless `caller` may take `action`; a refusal is audited (`forbidden`), nothing else.

    Every command calls it before it reads or writes anything else.
    """
    denied = refused(caller, action)
    if denied is None:
        return
    permission = PERMISSIONS[action]
    with write_session(engine) as session:
        audit(
            session,
            caller,
            "forbidden",
            target,
            action=action,
            role=str(caller.role),
            needs=str(permission.needs),
        )
    raise denied


# ---------------------------------------------------------------- checks


def check_params(kind: str, params: dict[str, Any], *, job: str = "") -> JobKind:
    """A job of `kind` set up with `params` (the job's defaults merged with the caller's), or BadParams."""
    unstorable = next((name for name, value in params.items() if not _storable(value)), None)
    if unstorable is not None or not all(_storable(name) for name in params):
        name = unstorable or "a parameter name"
        raise BadParams(f"Parameter '{name}' holds a NUL character or a non-finite number.")
    from etl.jobs import JobError, job_class

    try:
        return job_class(kind).check_params(params, job=job)
    except JobError as error:
        raise BadParams(str(error)) from None


def _storable(value: Any) -> bool:
    """Whether the database can store `value` in a JSON column (no NUL, no NaN or infinity)."""
    if isinstance(value, str):
        return "\x00" not in value
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_storable(k) and _storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_storable(item) for item in value)
    return True


def _runnable(session: Session, name: str) -> Job:
    """The job `name` if it exists and is enabled; NotFound or JobDisabled otherwise."""
    job = get_job(session=session, name=name)
    if not job.enabled:
        raise JobDisabled(f"Job '{name}' is disabled: it refuses runs until an admin enables it.")
    return job


def check_schedule(schedule: str | None, timezone: str, catchup: str) -> Schedule | None:
    """The job's schedule read in `timezone` (None without one), or BadParams saying what is wrong."""
    if catchup not in set(Catchup):
        raise BadParams(f"Catch-up policy {catchup!r} is unknown; use none, latest or all.")
    try:
        return Schedule.parse(schedule, timezone) if schedule else None
    except ScheduleError as error:
        raise BadParams(str(error)) from None


def first_tick(job: Job) -> datetime | None:
    """The first tick a job handles from now on: none while it is paused, disabled or unscheduled."""
    schedule = check_schedule(job.schedule, job.timezone, job.catchup)
    if schedule is None or job.paused or not job.enabled:
        return None
    return schedule.next_after(utcnow())


def audit(session: Session, caller: Caller, action: str, target: str, /, **details: Any) -> None:
    """The one audit record of a command: who, from where, what, on what."""
    record_audit(
        session=session,
        actor=caller.actor,
        action=action,
        target=target,
        details={**details, "source": str(caller.source)},
    )


# ---------------------------------------------------------------- runs


def trigger(
    engine: sa.Engine,
    caller: Caller,
    job: str,
    params: dict[str, Any] | None = None,
    *,
    run_here: str | None = None,
) -> Run:
    """Enqueue a run of `job` with `params` over its defaults (or start it as worker `run_here`).

    Refused with NotFound, JobDisabled, BadParams or ActiveRunExists before anything is written.
    """
    require(engine, caller, "trigger", f"job:{job}")
    params = dict(params or {})
    how = Trigger.API if caller.source == Source.API else Trigger.MANUAL
    with write_session(engine) as session:
        job_row = _runnable(session, job)
        if job_row.paused:
            raise JobPaused(job)
        checked = check_params(job_row.kind, {**job_row.params, **params}, job=job)
        run = create_run(
            session=session,
            job=job,
            trigger=how,
            triggered_by=caller.actor,
            params=params,
            status=RunStatus.PENDING if run_here is None else RunStatus.RUNNING,
            worker_id=run_here,
            total_records=checked.estimate_total(checked.params),
        )
        audit(session, caller, "trigger", f"run:{run.id}", job=job, params=params)
    wake_local_workers()
    return run


def cancel(engine: sa.Engine, caller: Caller, run_id: int) -> Run:
    """Cancel a pending run at once, or ask a running one to stop after its current batch."""
    require(engine, caller, "cancel", f"run:{run_id}")
    with write_session(engine) as session:
        run = request_cancel(session=session, run_id=run_id, actor=caller.actor)
        audit(session, caller, "cancel", f"run:{run_id}", job=run.job, status=str(run.status))
    return run


def resume(
    engine: sa.Engine,
    caller: Caller,
    run_id: int,
    *,
    from_checkpoint: bool = True,
    run_here: str | None = None,
) -> Run:
    """Enqueue a new run continuing failed or cancelled run `run_id` from its checkpoint (or from 0).

    With `run_here` the new run is claimed by that worker in the same transaction, so no other worker
    can take it first. Refused with NotFound, InvalidState, JobDisabled or ActiveRunExists.
    """
    require(engine, caller, "retry", f"run:{run_id}")
    with write_session(engine) as session:
        _runnable(session, get_run(session=session, run_id=run_id).job)
        run = resume_run(
            session=session,
            run_id=run_id,
            triggered_by=caller.actor,
            from_checkpoint=from_checkpoint,
        )
        audit(
            session,
            caller,
            "retry",
            f"run:{run.id}",
            job=run.job,
            resumed_from=run_id,
            from_checkpoint=from_checkpoint,
        )
        if run_here is not None:
            assert run.id is not None
            claimed = claim_next_run(session=session, worker_id=run_here, run_id=run.id)
            assert claimed is not None
            run = claimed
    if run_here is None:
        wake_local_workers()
    return run


def retry(engine: sa.Engine, caller: Caller, run_id: int, *, run_here: str | None = None) -> Run:
    """Enqueue a new run of a failed or cancelled run's job and parameters, from record 0."""
    return resume(engine, caller, run_id, from_checkpoint=False, run_here=run_here)


# ---------------------------------------------------------------- jobs


def add_job(
    engine: sa.Engine,
    caller: Caller,
    *,
    name: str,
    kind: str,
    params: dict[str, Any] | None = None,
    title: str = "",
    schedule: str | None = None,
    timezone: str = "UTC",
    catchup: str = Catchup.LATEST,
    enabled: bool = True,
    replace: bool = False,
) -> tuple[Job, bool]:
    """Configure job `name` (or replace it), its parameters checked by `kind`; returns it and whether it existed."""
    require(engine, caller, "config_change", f"job:{name}")
    if not JOB_NAME.fullmatch(name):
        raise BadParams(f"Job name {name!r} must be 1-100 lower-case letters, digits, '_' or '-'.")
    from etl.jobs import JobError, job_class

    try:
        job_class(kind)
    except JobError as error:
        raise BadParams(str(error)) from None
    checked = check_params(kind, dict(params or {}), job=name).params
    job = Job(
        name=name,
        title=title or name,
        kind=kind,
        params={key: value for key, value in checked.items() if value is not None},
        schedule=schedule,
        timezone=timezone,
        catchup=catchup,
        enabled=enabled,
    )
    check_schedule(schedule, timezone, catchup)
    with write_session(engine) as session:
        old = session.get(Job, name)
        exists = old is not None
        if old is not None and not replace:
            raise InvalidState(f"Job '{name}' exists already; add --replace to change it.")
        job.paused = old is not None and old.paused  # a change of configuration is no resume
        job.next_run_at = first_tick(job)
        save_job(session=session, job=job)
        audit(
            session,
            caller,
            "config_change",
            f"job:{name}",
            kind=kind,
            params=job.params,
            enabled=enabled,
            replaced=exists,
            schedule=schedule,
            timezone=timezone,
            catchup=catchup,
        )
    return job, exists


def pause(engine: sa.Engine, caller: Caller, job: str) -> Job:
    """Pause `job`: it keeps its schedule but enqueues nothing and refuses Run now; its active run goes on."""
    require(engine, caller, "pause", f"job:{job}")
    with write_session(engine) as session:
        row = get_job(session=session, name=job)
        if row.paused:
            raise InvalidState(f"Job '{job}' is paused already.")
        set_paused(session=session, job=row, paused=True, next_due=None)
        active = active_run_id(session=session, job=job)
        audit(session, caller, "pause", f"job:{job}", active_run=active)
    return row


def unpause(engine: sa.Engine, caller: Caller, job: str) -> Job:
    """Resume a paused job: its schedule runs again from its next tick (ticks while paused are not caught up)."""
    require(engine, caller, "unpause", f"job:{job}")
    with write_session(engine) as session:
        row = get_job(session=session, name=job)
        if not row.paused:
            raise InvalidState(f"Job '{job}' is not paused.")
        row.paused = False
        set_paused(session=session, job=row, paused=False, next_due=first_tick(row))
        audit(session, caller, "unpause", f"job:{job}", next_run_at=_iso(row.next_run_at))
    return row


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


# ---------------------------------------------------------------- schedules


def run_schedule(
    engine: sa.Engine, caller: Caller, job: str, *, seen: datetime, now: datetime, policy: Policy
) -> Run | None:
    """Handle `job`'s ticks due from `seen` (its next tick when the caller looked) to `now`.

    Exactly one of any number of workers handles them: the one whose compare-and-set moves the job's
    next tick (db.queries.take_tick); the unique key on run(job, scheduled_for) backs it. It enqueues
    the tick the job's catch-up policy runs and records the ticks given up (`schedule_skip`).
    """
    require(engine, caller, "trigger", f"job:{job}")
    with write_session(engine) as session:
        row = get_job(session=session, name=job)
        if row.next_run_at != seen or row.paused or not row.enabled or not row.schedule:
            return None  # another worker took it, or it changed since the caller looked
        active = active_run_id(session=session, job=job)
        rules = Policy(Catchup(row.catchup), policy.cap, policy.grace)
        plan = plan_ticks(
            Schedule.parse(row.schedule, row.timezone), seen, now, rules, active=bool(active)
        )
        if plan is None or not take_tick(
            session=session, job=job, seen=seen, next_due=plan.next_due
        ):
            return None
        run = None
        if plan.enqueue is not None:
            run = _enqueue_tick(
                session, caller, row, plan.enqueue, late=now - plan.enqueue > policy.grace
            )
        if plan.skipped is not None:
            _record_skip(session, caller, job, plan.skipped, active)
    if run is not None:
        wake_local_workers()
    return run


def _enqueue_tick(
    session: Session, caller: Caller, job: Job, tick: datetime, *, late: bool
) -> Run | None:
    """Enqueue the run of scheduled `tick`, or record the tick as skipped when the job refuses it."""
    try:
        with session.begin_nested():
            checked = check_params(job.kind, dict(job.params), job=job.name)
            run = create_run(
                session=session,
                job=job.name,
                trigger=Trigger.SCHEDULE,
                triggered_by=caller.actor,
                scheduled_for=tick,
                total_records=checked.estimate_total(checked.params),
            )
    except RunwatchError as error:  # a Run now won the race, or the job's parameters went bad
        _record_skip(session, caller, job.name, Skipped(tick, tick, str(error)), None)
        return None
    assert run.id is not None
    how = f"missed while no worker ran, caught up ({job.catchup})" if late else "on time"
    append_event(session=session, run_id=run.id, message=f"Scheduled for {_tick(tick)}: {how}.")
    audit(
        session,
        caller,
        "trigger",
        f"run:{run.id}",
        job=job.name,
        params={},
        scheduled_for=_iso(tick),
    )
    return run


def _record_skip(
    session: Session, caller: Caller, job: str, skipped: Skipped, active: int | None
) -> None:
    """Record ticks given up: an audit row, and a warning in the log of the run that was active."""
    ticks = _tick(skipped.first) + (
        "" if skipped.last == skipped.first else f" to {_tick(skipped.last)}"
    )
    if active is not None:
        message = f"Scheduled run of {ticks} skipped: this run was still active."
        append_event(session=session, run_id=active, level="WARNING", message=message)
    details = {"first": _iso(skipped.first), "last": _iso(skipped.last), "reason": skipped.reason}
    audit(session, caller, "schedule_skip", f"job:{job}", **details, active_run=active)


def _tick(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


# ---------------------------------------------------------------- exports


def export(
    engine: sa.Engine,
    caller: Caller,
    fmt: Format,
    filters: RunFilters | None = None,
    sort: RunSort | None = None,
) -> Iterator[bytes]:
    """The filtered history as CSV or JSON bytes, recorded in the audit trail once the last byte is out."""
    from reports.export import stream_export

    require(engine, caller, "export", "runs")
    filters, sort = filters or RunFilters(), sort or RunSort()
    stream = stream_export(engine=engine, fmt=fmt, filters=filters, sort=sort)
    return _recorded_export(
        engine,
        caller,
        "runs",
        stream,
        format=fmt,
        filters=filters.as_dict(),
        sort={"key": sort.key, "descending": sort.descending},
    )


def export_audit(
    engine: sa.Engine, caller: Caller, fmt: Format, filters: AuditFilters | None = None
) -> Iterator[bytes]:
    """The filtered audit trail as CSV or JSON bytes, itself recorded as an export (target `audit`)."""
    from reports.audit_export import stream_audit_export

    require(engine, caller, "export", "audit")
    filters = filters or AuditFilters()
    stream = stream_audit_export(engine=engine, fmt=fmt, filters=filters)
    return _recorded_export(engine, caller, "audit", stream, format=fmt, filters=filters.as_dict())


def _recorded_export(
    engine: sa.Engine,
    caller: Caller,
    target: str,
    stream: stream_export | stream_audit_export,
    **details: Any,
) -> Iterator[bytes]:
    """Pass the export's bytes on, then record it with its row count and SHA-256."""
    digest = hashlib.sha256()
    for chunk in stream:
        digest.update(chunk)
        yield chunk
    with write_session(engine) as session:
        audit(
            session,
            caller,
            "export",
            target,
            **details,
            rows=stream.rows,
            sha256=digest.hexdigest(),
        )


# ---------------------------------------------------------------- alerts


def add_alert_rule(
    engine: sa.Engine,
    caller: Caller,
    *,
    kind: str,
    channel: str,
    target: str = "",
    job: str | None = None,
    limit: float | None = None,
) -> AlertRule:
    """Add an alert rule (of one job, or of every job without one); BadParams or NotFound."""
    from etl.notify import check_target

    require(engine, caller, "alert_rule", "alert_rule")
    if kind not in set(AlertKind) or kind == AlertKind.TEST:
        raise BadParams(f"Alert kind {kind!r} is unknown; use {', '.join(ALERT_KINDS)}.")
    if limit is not None and (not math.isfinite(limit) or limit <= 0 or kind == AlertKind.FAILED):
        raise BadParams("A limit is a positive number, and a failed rule takes none.")
    target = check_target(channel, target)
    with write_session(engine) as session:
        if job is not None:
            get_job(session=session, name=job)
        rule = add_rule(
            session=session,
            rule=AlertRule(job=job, kind=kind, limit_value=limit, channel=channel, target=target),
        )
        details = {"kind": kind, "job": job, "limit": limit, "channel": channel, "to": target}
        audit(session, caller, "alert_rule", f"alert_rule:{rule.id}", change="add", **details)
    return rule


def remove_alert_rule(engine: sa.Engine, caller: Caller, rule_id: int) -> AlertRule:
    """Remove an alert rule (the alerts it raised stay); NotFound."""
    require(engine, caller, "alert_rule", f"alert_rule:{rule_id}")
    with write_session(engine) as session:
        rule = remove_rule(session=session, rule_id=rule_id)
        details = {"kind": rule.kind, "job": rule.job, "channel": rule.channel}
        audit(session, caller, "alert_rule", f"alert_rule:{rule_id}", change="remove", **details)
    return rule


def mark_alerts_read(engine: sa.Engine, caller: Caller, up_to: int | None = None) -> int:
    """Mark the unread alerts (up to id `up_to`) read; how many were."""
    require(engine, caller, "alerts_read", "alerts")
    with write_session(engine) as session:
        count = mark_read(session=session, up_to=up_to)
        audit(session, caller, "alerts_read", "alerts", up_to=up_to, count=count)
    return count


def test_alert(engine: sa.Engine, caller: Caller, channel: str, target: str = "") -> Alert:
    """Raise a test alert through `channel` (recorded like any alert); the caller delivers it."""
    from etl.notify import check_target

    require(engine, caller, "alert_test", f"channel:{channel}")
    target = check_target(channel, target)
    if channel != Channel.APP and not target:
        raise BadParams(f"A {channel} test needs a target (--target).")
    with write_session(engine) as session:
        alert = Alert(
            dedup_key=f"test:{uuid.uuid4().hex}",
            kind=AlertKind.TEST,
            channel=channel,
            target=target,
            message=f"Test alert from Runwatch, sent by {caller.actor} via {caller.source}.",
            status="app" if channel == Channel.APP else "pending",
        )
        [alert] = insert_alerts(session=session, alerts=[alert])
        audit(session, caller, "alert_test", f"alert:{alert.id}", channel=channel, to=target)
    return alert


ALERT_KINDS = [str(kind) for kind in AlertKind if kind != AlertKind.TEST]
