"""What the scheduler and the alert checks add to a worker's poll, with 1,000 scheduled jobs.

    python -m bench.bench_alerts [--size 1000] [--backend sqlite|postgres|both] [--repeat 500]

Each job is on a daily schedule (none due) and has one finished run an hour ago; one global rule of
every kind is set (failed, slow by p90, stuck, queue_wait, no_success over every scheduled job), so a
check reads everything it can read and finds nothing new. The alert checks run in a thread beside
the poll loop every `alert_check_s`, so a poll's share of them is one check times
worker_poll_s / alert_check_s. Figures are medians, printed beside the goal as a ratio.
Goal: scheduler + alert checks under 1 ms per poll.
"""

from __future__ import annotations

import argparse
from datetime import timedelta

import sqlalchemy as sa

from bench import DEFAULT_POSTGRES_URL, backends, temp_database
from bench.bench_scheduler import add_jobs, median_ms
from db.models import Run, utcnow
from db.queries import write_session
from db.settings import get_settings
from etl import commands
from etl.alerts import NO_SUCCESS_EVERY
from etl.worker import Worker

GOAL_MS = 1.0
EVERY_S = NO_SUCCESS_EVERY.total_seconds()
ADMIN = commands.Caller("bench", commands.Source.CLI)


def add_history_and_rules(engine: sa.Engine, size: int) -> None:
    """One finished run an hour ago per job, and one global rule of each kind (app channel)."""
    ended = utcnow() - timedelta(hours=1)
    runs = [
        Run(
            job=f"job{i:05d}",
            status="finished",
            created_at=ended - timedelta(seconds=30),
            started_at=ended - timedelta(seconds=30),
            ended_at=ended,
        )
        for i in range(size)
    ]
    with write_session(engine) as session:
        session.add_all(runs)
    for kind in commands.ALERT_KINDS:
        commands.add_alert_rule(engine, ADMIN, kind=kind, channel="app")


def measure(backend: str, postgres_url: str, size: int, repeat: int) -> float:
    """Print the scheduler's and the checks' cost per poll; return their sum."""
    settings = get_settings()
    with temp_database(backend, postgres_url) as engine:
        add_jobs(engine, size)
        add_history_and_rules(engine, size)
        worker = Worker(engine, settings)
        tick = median_ms(worker.scheduler.tick, repeat)
        check = median_ms(worker.alerts.check, repeat)  # no_success is looked at once a minute
        full = median_ms(lambda: _with_no_success(worker), repeat)
        poll = settings.worker_poll_s
        share = check * poll / settings.alert_check_s + (full - check) * poll / EVERY_S
        total = tick + share
        print(
            f"{backend:<8} at {size:,} jobs: scheduler {tick:6.3f} ms/poll; alert check "
            f"{check:6.3f} ms every {settings.alert_check_s:g} s, {full:6.3f} ms once a minute "
            f"(with no_success) = {share:6.3f} ms/poll (poll {poll:g} s); together "
            f"{total:6.3f} ms/poll, goal < {GOAL_MS:.1f} ms: ratio {total / GOAL_MS:5.3f} "
            f"{'ok' if total < GOAL_MS else 'ABOVE GOAL'}"
        )
        worker.alerts.dispatcher.close()
        return total


def _with_no_success(worker: Worker) -> None:
    """A check that looks at no_success too (as one in six checks does)."""
    worker.alerts.no_success_at = None
    worker.alerts.check()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1000, help="scheduled jobs")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--repeat", type=int, default=500, help="timed calls; the median counts")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    args = parser.parse_args()
    worst = max(
        measure(backend, args.postgres_url, args.size, args.repeat)
        for backend in backends(args.backend)
    )
    raise SystemExit(0 if worst < GOAL_MS else 1)


if __name__ == "__main__":
    main()
