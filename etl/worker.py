"""Workers: claim pending runs and execute them, as a process (`runwatch worker`) or a thread."""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa

from db.engine import get_engine
from db.migrate import refresh_planner_statistics
from db.models import Run, WorkerKind, utcnow
from db.queries import claim_next_run, mark_orphans, write_session
from db.settings import Settings, get_settings
from etl.alerts import AlertChecker
from etl.presence import Presence
from etl.runner import Runner
from etl.scheduler import Scheduler
from etl.wakeup import register, wake_local_workers

__all__ = ["BackgroundWorker", "Worker", "make_worker_id", "wake_local_workers"]
log = logging.getLogger(__name__)


def make_worker_id(kind: str = WorkerKind.PROCESS) -> str:
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
        kind: str = WorkerKind.PROCESS,
    ) -> None:
        self.engine = engine or get_engine()
        self.settings = settings or get_settings()
        self.worker_id = worker_id or make_worker_id(kind)
        self.scheduler = Scheduler(self.engine, self.settings, clock=clock)
        self.presence = Presence(
            self.engine,
            name=self.worker_id,
            kind=kind,
            interval_s=self.settings.heartbeat_s,
            scheduler_tick=lambda: self.scheduler.last_tick,
        )
        self.runner = Runner(self.engine, self.settings, on_heartbeat=self.presence.beat_in)
        self.alerts = AlertChecker(self.engine, self.settings, clock=clock)  # run_forever's
        self.stopping = threading.Event()
        self.wakeup = threading.Event()
        register(self)
        self.current: Run | None = None  # the run being executed, if any

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
            if run is not None:
                self.presence.beat_in(session, run)  # the registry names the run from its claim
        if run is None:
            return None
        log.info("worker %s executing run #%s (%s)", self.worker_id, run.id, run.job)
        self.current = run  # kept if the thread dies in it, so abandon() can fail it
        ended = self.runner.execute(run)
        self.current = None
        # A long-lived app or worker sees the history grow far past what its start analysed;
        # this compares two numbers and analyses only when the history outgrew its statistics.
        refresh_planner_statistics(self.engine)
        return ended

    def run_forever(self) -> None:
        """Execute runs until `stop()`; waits `worker_poll_s` (or a `wake()`) when idle.

        The worker registers in the registry on its first poll, beats it (throttled to
        `heartbeat_s`) and marks it stopped once stopped. No run's error ends the loop: the runner
        fails the run with it, and whatever escapes even that (its failure could not be written)
        is logged before the loop goes on. The alert checks run in a thread of their own meanwhile
        (etl.alerts).
        """
        self.alerts.start()  # once: a restarted worker thread finds it running
        while not self.stopping.is_set():
            try:
                self.presence.beat()
                ran = self.run_once()
            except sa.exc.OperationalError as error:
                log.warning("database unreachable, retrying: %s", error.orig)
                ran = None
            except Exception:
                log.exception("worker %s: unexpected error; carrying on", self.worker_id)
                ran = None
            if ran is None:
                self.wakeup.wait(self.settings.worker_poll_s)
                self.wakeup.clear()
        self.alerts.stop()
        self.unregister()

    def unregister(self) -> None:
        """Mark the registry row stopped; a database that is down leaves it to show as lost."""
        try:
            self.presence.stop()
        except sa.exc.SQLAlchemyError as error:
            log.warning("worker %s could not record its stop: %s", self.worker_id, error)

    def abandon(self, error: BaseException) -> None:
        """Fail the run in hand with `error` (the thread executing it is dying), if it can be."""
        run, self.current = self.current, None
        if run is None:
            return
        try:
            self.runner.fail(run, error)
        except Exception:  # the orphan sweep fails it later, as interrupted
            log.exception("worker %s could not fail run #%s", self.worker_id, run.id)

    def wake(self) -> None:
        """Look for pending runs now instead of at the next poll."""
        self.wakeup.set()

    def stop(self) -> None:
        """Finish the current run, then stop."""
        self.stopping.set()
        self.wakeup.set()


RESTART_DELAY_S = 1.0  # a thread that dies at once again is restarted at most this often
EXIT_GRACE_S = 3.0  # how long an exiting process waits to mark its worker stopped


class BackgroundWorker:
    """A Worker in a daemon thread (the app's and serve-api's in-process worker), supervised:
    a worker thread that dies anyway is restarted, and the restarts and last death are kept."""

    def __init__(
        self,
        engine: sa.Engine | None = None,
        settings: Settings | None = None,
        kind: str = WorkerKind.APP,
    ) -> None:
        self.worker = Worker(engine, settings, kind=kind)
        self.thread = self._new_thread()
        self.restarts = 0
        self.last_death: str | None = None  # "<time> <type>: <message>" of the last thread death
        self._supervisor = threading.Thread(
            target=self._supervise, name="runwatch-worker-supervisor", daemon=True
        )
        self._lock = threading.Lock()

    def _new_thread(self) -> threading.Thread:
        return threading.Thread(target=self._loop, name="runwatch-worker", daemon=True)

    def _loop(self) -> None:
        try:
            self.worker.run_forever()
        except BaseException as error:  # noqa: BLE001 (a dying thread reports, then ends)
            self.last_death = f"{utcnow():%Y-%m-%d %H:%M:%S} UTC {type(error).__name__}: {error}"
            log.exception("worker thread died; it will be restarted")
            self.worker.abandon(error)

    def _supervise(self) -> None:
        while not self.worker.stopping.is_set():
            self.thread.join(timeout=RESTART_DELAY_S)
            if self.thread.is_alive() or self.worker.stopping.wait(RESTART_DELAY_S):
                continue
            with self._lock:
                if self.worker.stopping.is_set():
                    return
                self.thread = self._new_thread()
                self.restarts += 1
                self.thread.start()
            log.warning("worker thread restarted (%d restarts)", self.restarts)

    def start(self) -> BackgroundWorker:
        """Start the thread and its supervisor once; later calls do nothing.

        A process that exits without stopping it (the Streamlit app) still marks its registry
        row stopped on the way out, so only a killed or hung process shows as lost.
        """
        with self._lock:
            if not self._supervisor.is_alive() and not self.worker.stopping.is_set():
                self.thread.start()
                self._supervisor.start()
                atexit.register(self._stop_at_exit)
        return self

    def _stop_at_exit(self) -> None:
        """Mark the registry row stopped as the process exits, waiting `EXIT_GRACE_S` at most:
        a database that does not answer must not hold the exit up. A worker whose loop has ended
        (stopped through `etl.wakeup.stop_local_workers`, say) marked its row then."""
        if not self.thread.is_alive():
            return
        marking = threading.Thread(target=self.worker.unregister, daemon=True)
        marking.start()
        marking.join(EXIT_GRACE_S)

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
        with self._lock:
            thread = self.thread
        if thread.is_alive():
            thread.join(timeout)
        if self._supervisor.is_alive():
            self._supervisor.join(timeout)
        atexit.unregister(self._stop_at_exit)
