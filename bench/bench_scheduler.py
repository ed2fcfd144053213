"""The scheduler's cost per worker poll with 1,000 scheduled jobs, none of them due.

    python -m bench.bench_scheduler [--size 1000] [--backend sqlite|postgres|both] [--repeat 2000]

Every worker asks, on every poll, which jobs are due (etl.scheduler.Scheduler.tick). The figure is
the median of `--repeat` ticks, beside the rest of an idle poll (orphan sweep and claim) for scale.
Goal: under 1 ms per poll.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from bench import DEFAULT_POSTGRES_URL, backends, temp_database
from db.models import Job
from db.queries import write_session
from db.settings import get_settings
from etl.commands import first_tick
from etl.worker import Worker

GOAL_MS = 1.0


def add_jobs(engine: sa.Engine, size: int) -> None:
    """`size` demo jobs on daily schedules spread over the day (none due now)."""
    jobs = []
    for i in range(size):
        job = Job(name=f"job{i:05d}", kind="demo", schedule=f"{i % 60} {i % 24} * * *")
        job.next_run_at = first_tick(job)
        jobs.append(job)
    with write_session(engine) as session:
        session.add_all(jobs)


def median_ms(action: Callable[[], Any], repeat: int) -> float:
    """The median of `repeat` timed calls after a warm-up, in milliseconds."""
    for _ in range(20):
        action()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def measure(backend: str, postgres_url: str, size: int, repeat: int) -> float:
    """Print the scheduler's ms per poll beside the rest of a poll; return it."""
    with temp_database(backend, postgres_url) as engine:
        add_jobs(engine, size)
        worker = Worker(engine, get_settings())
        tick = median_ms(worker.scheduler.tick, repeat)
        rest = median_ms(lambda: idle_poll(worker), repeat)
        ratio = tick / GOAL_MS
        verdict = "ok" if tick < GOAL_MS else "ABOVE GOAL"
        print(
            f"{backend:<8} scheduler check {tick:6.3f} ms/poll at {size:,} jobs   "
            f"(rest of an idle poll {rest:6.3f} ms)   goal < {GOAL_MS:.1f} ms: "
            f"ratio {ratio:5.3f} {verdict}"
        )
        engine.dispose()
        return tick


def idle_poll(worker: Worker) -> None:
    """An idle poll without the scheduler: the orphan sweep and a claim that finds nothing."""
    from db.queries import claim_next_run

    worker.sweep_orphans()
    with write_session(worker.engine) as session:
        claim_next_run(session=session, worker_id=worker.worker_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1000, help="scheduled jobs")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--repeat", type=int, default=2000, help="timed polls; the median counts")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    args = parser.parse_args()
    worst = max(
        measure(backend, args.postgres_url, args.size, args.repeat)
        for backend in backends(args.backend)
    )
    raise SystemExit(0 if worst < GOAL_MS else 1)


if __name__ == "__main__":
    main()
