"""The words Runwatch's data speaks (statuses, triggers, roles, limits), importable without a
database library: the CLI builds its parser from them before it knows whether it needs one.

`db.models` re-exports them beside the tables that use them.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """Where a run is in its life."""

    PENDING = "pending"  # enqueued, waiting for a worker
    RUNNING = "running"  # claimed by a worker, heartbeating
    FINISHED = "finished"  # every record done
    FAILED = "failed"  # stopped by an error or an interruption; can be resumed
    CANCELLED = "cancelled"  # stopped on request between two batches


MAX_ID = 2**31 - 1  # run and event ids are 32-bit integers on PostgreSQL: larger ones name nothing
JOB_NAME_MAX = 100  # characters in a job's name
ACTIVE_STATUSES = (RunStatus.PENDING, RunStatus.RUNNING)
TERMINAL_STATUSES = (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.CANCELLED)


class Role(StrEnum):
    """What a signed-in person or an API token may do; each role may do all the one before it may."""

    VIEWER = "viewer"  # sees everything and may export; changes nothing
    OPERATOR = "operator"  # and triggers, cancels, retries and resumes runs
    ADMIN = "admin"  # and configures, pauses and enables jobs, manages users and API tokens

    def allows(self, needed: Role) -> bool:
        """Whether this role may do what `needed` may (roles rank in the order above)."""
        ranks = list(Role)
        return ranks.index(self) >= ranks.index(needed)


class Trigger(StrEnum):
    """What started a run."""

    MANUAL = "manual"  # Run now in the app or `runwatch run`
    SCHEDULE = "schedule"  # the job's cron schedule
    API = "api"  # POST /api/etl/trigger
    RETRY = "retry"  # retry or resume of a failed run
    REMOTE = "remote"  # mirrored from a followed remote feed


class Step(StrEnum):
    """The stage a running run is in."""

    EXTRACT = "extract"
    TRANSFORM = "transform"
    LOAD = "load"


class EventKind(StrEnum):
    """What a run event records."""

    STATUS = "status"  # the run changed status; data holds the run record
    PROGRESS = "progress"  # throttled progress write; data holds the run record
    LOG = "log"  # a log line


LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class WorkerKind(StrEnum):
    """Which kind of process a registered worker is."""

    PROCESS = "worker"  # a `runwatch worker` process
    APP = "app"  # the Streamlit app's worker thread
    API = "api"  # `runwatch serve-api`'s worker thread


class WorkerState(StrEnum):
    """What a registered worker's row says about it (derived when read, never stored)."""

    LIVE = "live"  # heartbeat newer than worker_lost_after_s
    LOST = "lost"  # no heartbeat for worker_lost_after_s: killed, hung or cut off
    STOPPED = "stopped"  # stopped cleanly (stopped_at set)


class AlertKind(StrEnum):
    """What an alert rule watches for (its limit: seconds for slow and stuck, hours for no_success,
    minutes for queue_wait)."""

    FAILED = "failed"  # a run failed (no limit)
    SLOW = "slow"  # a run finished slower than the limit (s), or than its job's p90 without one
    NO_SUCCESS = "no_success"  # no finished run of the job within the limit (hours)
    STUCK = "stuck"  # a running run sent no heartbeat for the limit (s)
    QUEUE_WAIT = "queue_wait"  # a pending run waited longer than the limit (minutes)
    TEST = "test"  # `runwatch alerts test`: no rule, sent on request


class Channel(StrEnum):
    """Where an alert goes."""

    WEBHOOK = "webhook"  # a JSON POST, signed with HMAC-SHA256
    EMAIL = "email"  # an e-mail over SMTP
    APP = "app"  # the app's notification list only


class Catchup(StrEnum):
    """Which missed ticks a job runs when the workers come back."""

    NONE = "none"  # none: only a tick that is not late (within the grace) runs
    LATEST = "latest"  # the newest due tick runs once; older ones are recorded as skipped
    ALL = "all"  # every due tick runs, oldest first, one at a time (the newest `cap` of them)


SORT_KEYS = ("created_at", "duration", "status", "records")  # what the run history sorts by
