"""The health of a Runwatch deployment, as one snapshot: the database, the workers, the queue, the
scheduler and the alert channels. The Health page, `/api/health/details` and `/metrics` all read it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from db.engine import database_error_text
from db.models import WorkerState, utcnow
from db.queries import WorkerRow, list_workers, queue_state, read_session, round_trip
from db.settings import Settings

DATABASE_ERRORS = (sa.exc.OperationalError, sa.exc.InterfaceError)
NO_ALERT_CHANNELS = "No alert channels configured."


@dataclass(frozen=True)
class DatabaseHealth:
    """Whether the database answered, how fast, and why not."""

    reachable: bool
    round_trip_ms: float | None
    error: str | None = None


@dataclass(frozen=True)
class WorkerHealth:
    """A registered worker and what its heartbeat says about it."""

    name: str  # the id its runs record as their worker_id
    kind: str  # WorkerKind: worker (a process), app or api (a thread)
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    silent_s: float  # seconds since its last heartbeat
    state: WorkerState
    current_run_id: int | None
    current_job: str | None
    scheduler_tick_at: datetime | None
    stopped_at: datetime | None


@dataclass(frozen=True)
class QueueHealth:
    """The pending runs: how many wait, and since when the oldest has."""

    depth: int
    oldest_queued_at: datetime | None
    oldest_age_s: float | None


@dataclass(frozen=True)
class AlertChannel:
    """An alert channel's state and its deliveries so far (filled by the alert module)."""

    name: str
    ok: bool
    detail: str = ""
    delivered: int = 0
    failed: int = 0


AlertSource = Callable[[sa.Engine], Sequence[AlertChannel]]
_alert_sources: list[AlertSource] = []


def register_alert_source(source: AlertSource) -> None:
    """Add the channels `source` reports to every health snapshot and to /metrics."""
    if source not in _alert_sources:
        _alert_sources.append(source)


def alert_channels(engine: sa.Engine) -> tuple[AlertChannel, ...]:
    """The configured alert channels (none until an alert module registers a source)."""
    return tuple(channel for source in _alert_sources for channel in source(engine))


@dataclass(frozen=True)
class HealthReport:
    """Everything the Health page shows, read at `checked_at`."""

    checked_at: datetime
    lost_after_s: float  # the rule: a worker silent this long is lost
    database: DatabaseHealth
    workers: tuple[WorkerHealth, ...] = ()
    queue: QueueHealth | None = None  # None while the database cannot be reached
    scheduler_last_tick: datetime | None = None  # the newest of any worker's scheduler
    alert_channels: tuple[AlertChannel, ...] = ()

    def count(self, state: WorkerState) -> int:
        """How many registered workers are in `state`."""
        return sum(1 for worker in self.workers if worker.state == state)

    @property
    def status(self) -> str:
        """`unavailable` (no database), `degraded` (runs wait with no live worker, or an alert
        channel fails) or `ok`. Lost workers are counted apart: see `count`."""
        if not self.database.reachable:
            return "unavailable"
        stranded = self.queue is not None and self.queue.depth and not self.count(WorkerState.LIVE)
        failing = any(not channel.ok for channel in self.alert_channels)
        return "degraded" if stranded or failing else "ok"

    @property
    def alerts_summary(self) -> str:
        """One line on the alert channels."""
        if not self.alert_channels:
            return NO_ALERT_CHANNELS
        failing = [channel.name for channel in self.alert_channels if not channel.ok]
        if failing:
            return f"Failing: {', '.join(failing)}."
        return f"{len(self.alert_channels)} configured, all working."


def health_report(
    engine: sa.Engine, settings: Settings, *, now: datetime | None = None
) -> HealthReport:
    """The deployment's health now: four short reads (none when the database does not answer)."""
    now = now or utcnow()
    lost_after = settings.worker_lost_after_s
    with read_session(engine) as session:
        started = time.perf_counter()
        try:
            round_trip(session=session)
        except DATABASE_ERRORS as error:
            down = DatabaseHealth(
                reachable=False, round_trip_ms=None, error=database_error_text(error)
            )
            return HealthReport(checked_at=now, lost_after_s=lost_after, database=down)
        database = DatabaseHealth(True, round((time.perf_counter() - started) * 1000, 3))
        workers = tuple(
            worker_health(row, now, lost_after) for row in list_workers(session=session)
        )
        queue = queue_state(session=session)
    ticks = [worker.scheduler_tick_at for worker in workers if worker.scheduler_tick_at]
    return HealthReport(
        checked_at=now,
        lost_after_s=lost_after,
        database=database,
        workers=workers,
        queue=QueueHealth(queue.depth, queue.oldest_at, _age(queue.oldest_at, now)),
        scheduler_last_tick=max(ticks, default=None),
        alert_channels=alert_channels(engine),
    )


def worker_state(row: WorkerRow, now: datetime, lost_after_s: float) -> WorkerState:
    """Stopped when it stopped cleanly, lost when silent over `lost_after_s`, else live."""
    if row.stopped_at is not None:
        return WorkerState.STOPPED
    silent = (now - row.heartbeat_at).total_seconds()
    return WorkerState.LOST if silent > lost_after_s else WorkerState.LIVE


def worker_health(row: WorkerRow, now: datetime, lost_after_s: float) -> WorkerHealth:
    """The registry row with its state (a lost worker keeps the run it held when it fell silent)."""
    return WorkerHealth(
        name=row.name,
        kind=row.kind,
        host=row.host,
        pid=row.pid,
        started_at=row.started_at,
        heartbeat_at=row.heartbeat_at,
        silent_s=max((now - row.heartbeat_at).total_seconds(), 0.0),
        state=worker_state(row, now, lost_after_s),
        current_run_id=row.current_run_id,
        current_job=row.current_job,
        scheduler_tick_at=row.scheduler_tick_at,
        stopped_at=row.stopped_at,
    )


def _age(moment: datetime | None, now: datetime) -> float | None:
    return None if moment is None else max((now - moment).total_seconds(), 0.0)
