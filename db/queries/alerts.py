"""Alerts: rules, the alerts they raised (each once: the unique dedup key), delivery attempts, and
the reads behind the checks (runs ended since the shared cursor, stuck and waiting runs, successes)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from db import driver
from db.models import (
    Alert,
    AlertCursor,
    AlertDelivery,
    AlertRule,
    Job,
    Run,
    RunEvent,
    RunStatus,
    utcnow,
)
from db.queries.errors import NotFound

ENDED = "ended"  # the cursor of the run events the checks have read
SCAN_MAX = 50_000  # run events one check reads at most: a backlog is read over several checks
CANDIDATES_MAX = 500  # stuck, waiting or ended runs one check looks at


# ---------------------------------------------------------------- rules


def list_rules(*, session: Session, enabled_only: bool = False) -> list[AlertRule]:
    """Every alert rule, oldest first (only the enabled ones if asked)."""
    query = select(AlertRule).order_by(col(AlertRule.id))
    if enabled_only:
        query = query.where(col(AlertRule.enabled).is_(True))
    return list(session.exec(query).all())


def add_rule(*, session: Session, rule: AlertRule) -> AlertRule:
    """Store a new rule. The first rule moves the checks' cursor to now: no rule alerts on the past."""
    if not list_rules(session=session, enabled_only=True):
        newest = sa.select(sa.func.coalesce(sa.func.max(col(RunEvent.id)), 0)).scalar_subquery()
        session.execute(
            sa.update(AlertCursor).where(col(AlertCursor.name) == ENDED).values(last_id=newest)
        )
    session.add(rule)
    session.flush()
    return rule


def remove_rule(*, session: Session, rule_id: int) -> AlertRule:
    """Delete a rule (its alerts and their attempts stay), or NotFound."""
    rule = session.get(AlertRule, rule_id)
    if rule is None:
        raise NotFound(f"No alert rule #{rule_id}.")
    session.delete(rule)
    session.flush()
    return rule


# ---------------------------------------------------------------- alerts and deliveries


def known_keys(*, session: Session, keys: Sequence[str]) -> set[str]:
    """Which of these dedup keys have an alert already (a read, so a repeat costs no write)."""
    if not keys:
        return set()
    query = select(Alert.dedup_key).where(col(Alert.dedup_key).in_(list(keys)))
    return set(session.exec(query).all())


def insert_alerts(*, session: Session, alerts: Sequence[Alert]) -> list[Alert]:
    """Insert the alerts whose dedup key is new; return those, with their ids.

    INSERT ... ON CONFLICT DO NOTHING: of any number of workers raising the same alert at once,
    exactly one gets it back, and that one delivers it.
    """
    postgres = session.get_bind().dialect.name == "postgresql"
    insert: Any = postgresql.insert if postgres else sqlite.insert
    table = Alert.__table__  # type: ignore[attr-defined]
    added = []
    for alert in alerts:
        if alert.status == "pending" and alert.claimed_at is None:
            alert.claimed_at = alert.created_at  # its raiser's to deliver (see reclaim_alerts)
        values = alert.model_dump(exclude={"id"})
        statement = insert(table).values(values).on_conflict_do_nothing()
        new_id = session.execute(statement.returning(table.c.id)).scalar_one_or_none()
        if new_id is not None:
            alert.id = new_id
            added.append(alert)
    return added


def _stale(claimed_before: Any) -> sa.ColumnElement[bool]:
    return sa.and_(col(Alert.status) == "pending", col(Alert.claimed_at) < claimed_before)


def any_stale_claims(*, session: Session, claimed_before: datetime) -> bool:
    """Whether an alert is pending under a claim older than `claimed_before` (one index read on
    the bare driver: every alert check of every worker asks)."""

    def query() -> sa.ClauseElement:
        return sa.select(col(Alert.id)).where(_stale(sa.bindparam("before"))).limit(1)

    return bool(driver.read(session, "alert_stale_claims", query, {"before": claimed_before}))


def reclaim_alerts(*, session: Session, claimed_before: datetime, now: datetime) -> list[Alert]:
    """Take over the alerts pending under a claim older than `claimed_before` (their deliverer died
    or lost the database before storing how the delivery went): each is claimed anew at `now` by one
    UPDATE, so of any number of workers exactly one gets it back (PostgreSQL re-checks the
    condition on a row another worker has just claimed; SQLite has one writer at a time)."""
    table = Alert.__table__  # type: ignore[attr-defined]
    statement = (
        sa.update(table).where(_stale(claimed_before)).values(claimed_at=now).returning(*table.c)
    )
    return [Alert(**row._mapping) for row in session.execute(statement)]


def renew_claim(*, session: Session, alert: Alert, now: datetime) -> bool:
    """Claim `alert` anew at `now` if it is still pending under the claim its holder was given;
    False when another worker has taken it over meanwhile (or it was delivered)."""
    statement = (
        sa.update(Alert)
        .where(
            col(Alert.id) == alert.id,
            col(Alert.status) == "pending",
            col(Alert.claimed_at) == alert.claimed_at,
        )
        .values(claimed_at=now)
    )
    if session.connection().execute(statement).rowcount != 1:
        return False
    alert.claimed_at = now
    return True


def record_delivery(*, session: Session, delivery: AlertDelivery, status: str | None) -> None:
    """Store one delivery attempt and, when it decides, the alert's status (sent or failed)."""
    session.add(delivery)
    if status is not None:
        session.execute(
            sa.update(Alert).where(col(Alert.id) == delivery.alert_id).values(status=status)
        )


class AlertView(NamedTuple):
    """An alert with its delivery attempts, oldest attempt first (the app, the API, the CLI)."""

    alert: Alert
    deliveries: list[AlertDelivery]


def list_alerts(
    *, session: Session, limit: int = 50, unread_only: bool = False, after_id: int = 0
) -> list[AlertView]:
    """The newest alerts (after `after_id`), newest first, each with its attempts."""
    query = select(Alert).where(col(Alert.id) > after_id)
    if unread_only:
        query = query.where(col(Alert.read_at).is_(None))
    alerts = list(session.exec(query.order_by(col(Alert.id).desc()).limit(limit)).all())
    ids = [alert.id for alert in alerts]
    attempts: dict[int | None, list[AlertDelivery]] = {alert_id: [] for alert_id in ids}
    if ids:
        rows = select(AlertDelivery).where(col(AlertDelivery.alert_id).in_(ids))
        for delivery in session.exec(rows.order_by(col(AlertDelivery.id))).all():
            attempts[delivery.alert_id].append(delivery)
    return [AlertView(alert, attempts[alert.id]) for alert in alerts]


def unread_count(*, session: Session) -> int:
    """How many alerts nobody marked read yet."""
    query = sa.select(sa.func.count()).where(col(Alert.read_at).is_(None))
    return int(session.execute(query).scalar_one())


def mark_read(*, session: Session, up_to: int | None = None) -> int:
    """Mark every unread alert (up to id `up_to`) read now; how many were."""
    statement = sa.update(Alert).where(col(Alert.read_at).is_(None))
    if up_to is not None:
        statement = statement.where(col(Alert.id) <= up_to)
    done = session.execute(statement.values(read_at=utcnow()))
    return int(done.rowcount)  # type: ignore[attr-defined]


def list_deliveries(*, session: Session, limit: int = 50) -> list[AlertDelivery]:
    """The newest delivery attempts, newest first."""
    query = select(AlertDelivery).order_by(col(AlertDelivery.id).desc()).limit(limit)
    return list(session.exec(query).all())


class ChannelStatus(NamedTuple):
    """A channel and target's last delivery attempt: for the Health page."""

    channel: str
    target: str
    ok: bool
    at: datetime
    error: str | None


def alert_channel_status(*, session: Session) -> list[ChannelStatus]:
    """Each (channel, target)'s last delivery attempt, whether it worked and when."""
    last = (
        sa.select(sa.func.max(col(AlertDelivery.id)))
        .group_by(col(AlertDelivery.channel), col(AlertDelivery.target))
        .scalar_subquery()
    )
    query = select(AlertDelivery).where(col(AlertDelivery.id).in_(last))
    rows = session.exec(query.order_by(col(AlertDelivery.channel), col(AlertDelivery.target)))
    return [ChannelStatus(d.channel, d.target, d.ok, d.at, d.error) for d in rows.all()]


def delivery_counts(*, session: Session) -> dict[tuple[str, bool], int]:
    """Delivery attempts by (channel, ok): for `/metrics`."""
    query = sa.select(col(AlertDelivery.channel), col(AlertDelivery.ok), sa.func.count()).group_by(
        col(AlertDelivery.channel), col(AlertDelivery.ok)
    )
    return {(channel, bool(ok)): int(n) for channel, ok, n in session.execute(query).all()}


# ---------------------------------------------------------------- what the checks read


class EndedRun(NamedTuple):
    """A run that ended since the checks' cursor."""

    run_id: int
    job: str
    status: str
    ended_at: datetime | None
    duration_s: float | None
    error: str  # "type: message" of a failed run
    records_loaded: int = 0


def ended_runs(*, session: Session) -> tuple[list[EndedRun], int, int]:
    """The runs whose status events came after the shared cursor, the cursor, and where to move it.

    Run event ids commit in order (db.queries.events), so reading up to the newest id misses none.
    """
    with driver.reader(session) as db:
        after, newest = db.rows("alert_cursor", _cursor)[0]
        upto = min(newest, after + SCAN_MAX)
        if upto <= after:
            return [], after, after
        values = {"after": after, "upto": upto, "limit": CANDIDATES_MAX}
        rows = db.rows("alert_ended", _ended, values)
        utc = driver.timestamp(db.sqlite)
    if len(rows) == CANDIDATES_MAX:
        upto = rows[-1][0]  # the rest at the next check
    runs = {
        run_id: EndedRun(
            run_id, job, status, utc(ended), duration, f"{etype}: {message}", records or 0
        )
        for _, run_id, job, status, ended, duration, etype, message, records in rows
    }
    return list(runs.values()), after, upto


def _cursor() -> sa.Select[Any]:
    newest = sa.select(sa.func.coalesce(sa.func.max(col(RunEvent.id)), 0)).scalar_subquery()
    return sa.select(col(AlertCursor.last_id), newest).where(col(AlertCursor.name) == ENDED)


def _ended() -> sa.ClauseElement:
    return (
        sa.select(
            col(RunEvent.id),
            col(Run.id),
            col(Run.job),
            col(Run.status),
            col(Run.ended_at),
            col(Run.duration_s),
            col(Run.error_type),
            col(Run.error_message),
            col(Run.records_loaded),
        )
        .join(Run, col(Run.id) == col(RunEvent.run_id))
        .where(
            col(RunEvent.id) > sa.bindparam("after"),
            col(RunEvent.id) <= sa.bindparam("upto"),
            col(RunEvent.kind) == "status",
            # not IN: an expanding parameter needs its values when the statement is compiled
            sa.or_(col(Run.status) == RunStatus.FAILED, col(Run.status) == RunStatus.FINISHED),
        )
        .order_by(col(RunEvent.id))
        .limit(sa.bindparam("limit"))
    )


def advance_cursor(*, session: Session, to: int) -> None:
    """Move the checks' cursor forward to `to` (never back: another worker may be ahead)."""
    session.execute(
        sa.update(AlertCursor)
        .where(col(AlertCursor.name) == ENDED, col(AlertCursor.last_id) < to)
        .values(last_id=to)
    )


class ActiveRun(NamedTuple):
    """A pending or running run, with the moment its wait or silence is counted from."""

    run_id: int
    job: str
    since: datetime
    worker_id: str | None


def quiet_runs(*, session: Session, status: str, before: datetime) -> list[ActiveRun]:
    """Running runs whose last heartbeat, or pending runs created, before `before`; oldest first."""
    moment = col(Run.heartbeat_at) if status == RunStatus.RUNNING else col(Run.created_at)

    def query() -> sa.ClauseElement:
        return (
            sa.select(col(Run.id), col(Run.job), moment, col(Run.worker_id))
            .where(col(Run.status) == sa.bindparam("status"), moment < sa.bindparam("before"))
            .order_by(moment)
            .limit(CANDIDATES_MAX)
        )

    with driver.reader(session) as db:
        rows = db.rows(("alert_quiet", status), query, {"status": status, "before": before})
        utc = driver.timestamp(db.sqlite)
    return [ActiveRun(run_id, job, utc(at) or before, wid) for run_id, job, at, wid in rows]


def last_successes(
    *, session: Session, before: datetime
) -> list[tuple[str, bool, datetime, datetime | None]]:
    """(job, scheduled, created_at, end of its newest finished run) of each enabled, unpaused job
    made before `before` without a finished run since: none at all while every job is healthy.

    Per job, one seek on ix_run_job_ended (a finished run since `before`), and for the few returned
    one more (its newest finished run).
    """
    with driver.reader(session) as db:
        rows = db.rows("alert_successes", _successes, {"before": before})
        utc = driver.timestamp(db.sqlite)
    return [(name, bool(sched), utc(made) or before, utc(ok)) for name, sched, made, ok in rows]


def _finished_of_job() -> sa.Select[Any]:
    return sa.select(col(Run.ended_at)).where(
        col(Run.job) == col(Job.name), col(Run.status) == RunStatus.FINISHED
    )


def _successes() -> sa.ClauseElement:
    newest = _finished_of_job().order_by(col(Run.ended_at).desc()).limit(1).scalar_subquery()
    recent = _finished_of_job().where(col(Run.ended_at) >= sa.bindparam("before")).exists()
    return sa.select(
        col(Job.name), col(Job.schedule).is_not(None), col(Job.created_at), newest
    ).where(
        col(Job.enabled).is_(True),
        col(Job.paused).is_(False),
        col(Job.created_at) < sa.bindparam("before"),
        ~recent,
    )
