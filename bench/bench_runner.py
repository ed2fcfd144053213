"""Runner bookkeeping overhead: the demo job with and without progress, heartbeat and events.

    python -m bench.bench_runner [--size 200000] [--backend sqlite|postgres|both] [--repeat 3]

Both sides load the same records into a fresh database; the best of `--repeat` attempts each,
alternating, so background noise on a shared machine hurts both alike. Goal: ratio <= 1.05.
"""

from __future__ import annotations

import argparse
import time

import sqlalchemy as sa

from bench import DEFAULT_POSTGRES_URL, backends, report, temp_database, timed
from db.models import Run, RunStatus
from db.queries import create_run, write_session
from db.settings import get_settings
from etl.runner import Runner

GOAL = 1.05


def one_run(
    backend: str, postgres_url: str, size: int, batch: int, bookkeeping: bool
) -> tuple[float, float]:
    """Wall-clock and CPU seconds of this process to execute one demo run in a fresh database."""
    with temp_database(backend, postgres_url) as engine:
        run = _start(engine, size, batch)
        runner = Runner(engine, get_settings(), bookkeeping=bookkeeping)
        cpu = time.process_time()
        ended, seconds = timed(lambda: runner.execute(run))
        cpu = time.process_time() - cpu
        if ended.status != RunStatus.FINISHED or ended.offset != size:
            raise SystemExit(f"benchmark run ended {ended.status}: {ended.error_message}")
        return seconds, cpu


def _start(engine: sa.Engine, size: int, batch: int) -> Run:
    params = {"total": size, "batch_size": batch, "delay_ms": 0}
    with write_session(engine) as session:
        return create_run(session=session, job="demo", params=params, status=RunStatus.RUNNING)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=200_000, help="records per run")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--repeat", type=int, default=3, help="attempts per side; the best counts")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    args = parser.parse_args()
    print(f"runner: demo, {args.size:,} records, batch {args.batch_size}, delay_ms 0")
    for backend in backends(args.backend):
        wall = {True: float("inf"), False: float("inf")}
        cpu = dict(wall)
        for _ in range(args.repeat):
            for bookkeeping in (False, True):
                figures = one_run(
                    backend, args.postgres_url, args.size, args.batch_size, bookkeeping
                )
                wall[bookkeeping] = min(wall[bookkeeping], figures[0])
                cpu[bookkeeping] = min(cpu[bookkeeping], figures[1])
        rate = args.size / wall[True]
        report(f"runner {backend} wall ({rate:,.0f} rec/s)", wall[True], wall[False], "off", GOAL)
        # CPU time shrugs off other processes on a shared machine (the database server's is not in it).
        report(f"runner {backend} CPU of this process", cpu[True], cpu[False], "off", GOAL)


if __name__ == "__main__":
    main()
