"""Workers: claim pending runs and execute them, as a process (`runwatch worker`) or a thread."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa

from db.engine import get_engine
from db.migrate import refresh_planner_statistics
from db.models import Run, utcnow
from db.queries import claim_next_run, mark_orphans, write_session
from db.settings import Settings, get_settings
from etl.runner import Runner
from etl.scheduler import Scheduler
from etl.wakeup import register, wake_local_workers

__all__ = ["BackgroundWorker", "Worker", "make_worker_id", "wake_local_workers"]
log = logging.getLogger(__name__)


def make_worker_id(kind: str = "worker") -> str:
    """A worker id that names the host, process and thread."""
    return f"{socket.gethostname()}:{os.getpid()}:{kind}:{threading.get_ident()}"


class Worker:
    """Sweeps orphans, enqueues due scheduled runs, claims the oldest pending run and executes it; repeats."""

    def __init__(
        self,
        engine: sa.Engine | None = None,
        settings: Settings | None = None,
        worker_id: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine or get_engine()
        self.settings = settings or get_settings()
        self.worker_id = worker_id or make_worker_id()
        self.runner = Runner(self.engine, self.settings)
        self.scheduler = Scheduler(self.engine, self.settings, clock=clock)
        self.stopping = threading.Event()
        self.wakeup = threading.Event()
        register(self)

    def sweep_orphans(self) -> list[int]:
        """Fail running runs whose heartbeat went stale."""
        with write_session(self.engine) as session:
            return mark_orphans(session=session, timeout_s=self.settings.orphan_timeout_s)

    def run_once(self) -> Run | None:
        """Enqueue due scheduled runs, then claim and execute one pending run; None when there was none."""
        self.sweep_orphans()
        if self.settings.scheduler_enabled:
            self.scheduler.tick()
        with write_session(self.engine) as session:
            run = claim_next_run(session=session, worker_id=self.worker_id)
        if run is None:
            return None
        log.info("worker %s executing run #%s (%s)", self.worker_id, run.id, run.job)
        ended = self.runner.execute(run)
        # A long-lived app or worker sees the history grow far past what its start analysed;
        # this compares two numbers and analyses only when the history outgrew its statistics.
        refresh_planner_statistics(self.engine)
        return ended

    def run_forever(self) -> None:
        """Execute runs until `stop()`; waits `worker_poll_s` (or a `wake()`) when idle."""
        while not self.stopping.is_set():
            try:
                ran = self.run_once()
            except sa.exc.OperationalError as error:
                log.warning("database unreachable, retrying: %s", error.orig)
                ran = None
            if ran is None:
                self.wakeup.wait(self.settings.worker_poll_s)
                self.wakeup.clear()

    def wake(self) -> None:
        """Look for pending runs now instead of at the next poll."""
        self.wakeup.set()

    def stop(self) -> None:
        """Finish the current run, then stop."""
        self.stopping.set()
        self.wakeup.set()


class BackgroundWorker:
    """A Worker in a daemon thread: the Streamlit app's in-process worker."""

    def __init__(self, engine: sa.Engine | None = None, settings: Settings | None = None) -> None:
        self.worker = Worker(engine, settings, worker_id=make_worker_id("app"))
        self.thread = threading.Thread(
            target=self.worker.run_forever, name="runwatch-worker", daemon=True
        )
        self._lock = threading.Lock()

    def start(self) -> BackgroundWorker:
        """Start the thread once; later calls do nothing."""
        with self._lock:
            if not self.thread.is_alive() and not self.worker.stopping.is_set():
                self.thread.start()
        return self

    @property
    def alive(self) -> bool:
        """Whether the worker thread is running."""
        return self.thread.is_alive()

    def wake(self) -> None:
        """Ask the worker to look for pending runs now."""
        self.worker.wake()

    def stop(self, timeout: float | None = 10) -> None:
        """Stop after the current run and wait for the thread."""
        self.worker.stop()
        if self.thread.is_alive():
            self.thread.join(timeout)
