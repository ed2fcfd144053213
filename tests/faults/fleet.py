"""A fleet of real `runwatch worker` processes and the checks every fault test makes afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import select

from db.models import ACTIVE_STATUSES, TERMINAL_STATUSES, EventKind, Run, RunEvent
from db.queries import read_session

ROOT = Path(__file__).resolve().parents[2]
STOP_TIMEOUT_S = 30.0


class Fleet:
    """`runwatch worker` processes on one database, each logging to its own file."""

    def __init__(self, database_url: str, logs: Path, env: dict[str, str] | None = None) -> None:
        self.env = {**os.environ, **(env or {}), "RUNWATCH_DATABASE_URL": database_url}
        self.logs = logs
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, count: int = 1) -> list[subprocess.Popen[bytes]]:
        """Start `count` more workers."""
        started = [self._spawn() for _ in range(count)]
        self.processes += started
        return started

    def _spawn(self) -> subprocess.Popen[bytes]:
        log = (self.logs / f"worker-{len(self.processes)}.log").open("wb")
        with log:  # the child keeps its own descriptor
            return subprocess.Popen(
                [sys.executable, "-m", "etl", "worker"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def by_pid(self, pid: int) -> subprocess.Popen[bytes]:
        """The fleet's worker with process id `pid`."""
        return next(p for p in self.processes if p.pid == pid)

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL one worker: no handler runs, its run is left as it was."""
        process.send_signal(signal.SIGKILL)
        process.wait(STOP_TIMEOUT_S)

    def stop(self) -> None:
        """SIGTERM every live worker (each finishes its run), SIGKILL any that hangs."""
        live = [p for p in self.processes if p.poll() is None]
        for process in live:
            process.terminate()
        for process in live:
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT_S)

    def output(self) -> str:
        """Every worker's log, for a failing assertion's message."""
        return "\n".join(path.read_text(errors="replace") for path in sorted(self.logs.glob("*")))


@contextmanager
def running_fleet(
    database_url: str, logs: Path, count: int, env: dict[str, str] | None = None
) -> Iterator[Fleet]:
    """`count` workers on `database_url`, stopped at exit."""
    logs.mkdir(parents=True, exist_ok=True)
    fleet = Fleet(database_url, logs, env)
    try:
        fleet.start(count)
        yield fleet
    finally:
        fleet.stop()


def worker_pid(run: Run) -> int | None:
    """The process id in a run's worker id (`host:pid:kind:thread`)."""
    parts = (run.worker_id or "").split(":")
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None


def all_runs(engine: sa.Engine) -> list[Run]:
    """Every run, oldest first."""
    with read_session(engine) as session:
        return list(session.exec(select(Run).order_by(Run.id)).all())


def active_runs(engine: sa.Engine) -> list[Run]:
    """The runs still pending or running."""
    return [run for run in all_runs(engine) if run.status in ACTIVE_STATUSES]


def endings(engine: sa.Engine) -> Counter[int]:
    """How many times each run was ended: its status events that carry a terminal status."""
    ended = [str(status) for status in TERMINAL_STATUSES]
    query = select(RunEvent.run_id, RunEvent.data).where(RunEvent.kind == EventKind.STATUS)
    with read_session(engine) as session:
        rows = session.exec(query).all()
    return Counter(run_id for run_id, data in rows if (data or {}).get("status") in ended)


def status_events(engine: sa.Engine, run_id: int) -> list[tuple[int, str, str]]:
    """A run's status events as (run id, time, message), to explain a failing check."""
    query = select(RunEvent).where(RunEvent.run_id == run_id, RunEvent.kind == EventKind.STATUS)
    with read_session(engine) as session:
        events = session.exec(query.order_by(RunEvent.id)).all()
    return [(run_id, f"{e.ts:%H:%M:%S.%f}", e.message) for e in events]
