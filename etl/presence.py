"""A worker's presence in the registry (the `worker` table): registered when its loop starts,
beaten at most every `heartbeat_s` from its poll loop and its runs' heartbeats, stopped cleanly.

A worker polls every `worker_poll_s` (1 s) but writes its row only every `heartbeat_s` (5 s) or
when its run changes, so an idle poll costs a clock read and a comparison, not a write. While it
executes a run its loop does not poll; the run's own heartbeat thread beats the row instead, in
the same transaction as the run's heartbeat.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session

from db.models import Run
from db.queries import beat_worker, register_worker, stop_worker, write_session

Clock = Callable[[], float]


class Presence:
    """One worker's registry row, kept fresh."""

    def __init__(
        self,
        engine: sa.Engine,
        *,
        name: str,
        kind: str,
        interval_s: float,
        scheduler_tick: Callable[[], datetime | None] = lambda: None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.engine, self.name, self.kind = engine, name, kind
        self.interval_s, self.scheduler_tick, self.clock = interval_s, scheduler_tick, clock
        self.id: int | None = None  # the registry row, once registered
        self._run_id: int | None = None  # the run the row says this worker holds
        self._due = 0.0  # when (self.clock) the next beat is due
        self._lock = threading.Lock()  # the poll loop and a run's heartbeat thread both beat

    def beat(self, run_id: int | None = None) -> bool:
        """Register, or beat when one is due or the run held changed; whether it wrote."""
        with self._lock:
            if self.id is not None and run_id == self._run_id and self.clock() < self._due:
                return False
        with write_session(self.engine) as session:
            # The transaction first, then the lock, as in beat_in (whose caller's transaction has
            # begun): the other order could deadlock with a run's heartbeat thread on SQLite's
            # single write lock.
            session.connection()
            with self._lock:
                self._write(session, run_id)
        return True

    def beat_in(self, session: Session, run: Run) -> None:
        """Beat with `run` as the current run, inside the caller's transaction (a claim, a run's
        heartbeat): no commit of its own. Nothing before the worker registered."""
        with self._lock:
            if self.id is not None:
                self._write(session, run.id)

    def _write(self, session: Session, run_id: int | None) -> None:
        tick = self.scheduler_tick()
        if self.id is None or not beat_worker(
            session=session, worker_id=self.id, run_id=run_id, scheduler_tick=tick
        ):
            self.id = register_worker(
                session=session,
                name=self.name,
                kind=self.kind,
                host=socket.gethostname(),
                pid=os.getpid(),
            )
            if run_id is not None or tick is not None:
                beat_worker(session=session, worker_id=self.id, run_id=run_id, scheduler_tick=tick)
        self._run_id, self._due = run_id, self.clock() + self.interval_s

    def stop(self) -> None:
        """Mark the row stopped (a clean stop); a later beat registers the worker anew."""
        if self.id is None:
            return
        with write_session(self.engine) as session:
            session.connection()  # the transaction first, then the lock (see beat)
            with self._lock:
                if self.id is not None:
                    stop_worker(session=session, worker_id=self.id)
                    self.id = None
