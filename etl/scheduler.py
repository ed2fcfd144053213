"""The scheduler loop every worker runs between claims: enqueue each due scheduled run, once.

Any number of workers (the app's thread, `runwatch worker` processes, serve-api's thread) run it on
one database; the database decides which of them handles a tick (etl.commands.run_schedule).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import sqlalchemy as sa

from db.models import Run, utcnow
from db.queries import RunwatchError, due_jobs, read_session
from db.settings import Settings
from etl import commands
from etl.schedules import Catchup, Policy

log = logging.getLogger(__name__)
SCHEDULER = commands.Caller(actor="scheduler", source=commands.Source.SCHEDULER)


class Scheduler:
    """One worker's scheduler: each `tick()` enqueues the runs that are due by its clock."""

    def __init__(
        self, engine: sa.Engine, settings: Settings, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.engine, self.clock = engine, clock
        self.policy = Policy(
            Catchup.LATEST,  # each job's own policy replaces it; the limits are the fleet's
            cap=settings.schedule_catchup_max,
            grace=timedelta(seconds=settings.schedule_grace_s),
        )
        self.last_tick: datetime | None = None  # when this scheduler last looked

    def tick(self) -> list[Run]:
        """Enqueue every run due by now (one index probe when none is due); the runs enqueued here."""
        now = self.last_tick = self.clock()
        with read_session(self.engine) as session:
            due = due_jobs(session=session, now=now)
        runs = []
        for job, seen in due:
            run = self._handle(job, seen, now)
            if run is not None:
                runs.append(run)
        return runs

    def _handle(self, job: str, seen: datetime, now: datetime) -> Run | None:
        """Handle one due job; a job that cannot be scheduled is logged, never stops the others."""
        try:
            return commands.run_schedule(
                self.engine, SCHEDULER, job, seen=seen, now=now, policy=self.policy
            )
        except (RunwatchError, ValueError) as error:
            log.warning("scheduler: job %s not scheduled: %s", job, error)
            return None
