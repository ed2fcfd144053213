"""What the health checks cost: the worker heartbeat per poll, /api/health/details and /metrics.

    python -m bench.bench_health [--size 100000] [--backend sqlite|postgres|both] [--repeat 300]

1. The registry heartbeat's cost per worker poll (etl.presence): a poll with no beat due, a poll
   whose beat writes (one UPDATE, its own transaction), and the two amortised at the default
   settings (a poll every RUNWATCH_WORKER_POLL_S, a write every RUNWATCH_HEARTBEAT_S), beside the
   rest of an idle poll (orphan sweep, scheduler check, empty claim). Goal: under 1 ms per poll.
2. The health report and the /metrics aggregate in process, beside their SQL replayed on the bare
   driver (the floor), on `--size` seeded runs and `--workers` registered workers.
3. GET /api/health/details and GET /metrics from `runwatch serve-api` (its own process), beside
   GET /health (one count of the pending runs).
"""

from __future__ import annotations

import argparse
from datetime import timedelta

import httpx
import sqlalchemy as sa

from bench import DEFAULT_POSTGRES_URL, backends, temp_database
from bench.bench_scheduler import GOAL_MS, idle_poll
from bench.floor import best_ms, seed, with_floor
from db.models import WorkerKind, utcnow
from db.queries import read_session, register_worker, run_totals, write_session
from db.settings import Settings, get_settings
from etl.presence import Presence
from etl.worker import Worker
from reports.health import health_report
from tests.apiserver import api_process

DEFAULTS = Settings.model_fields  # the shipped defaults, whatever this shell's environment says
POLLS_PER_BEAT = DEFAULTS["heartbeat_s"].default / DEFAULTS["worker_poll_s"].default


def line(name: str, value: float, baseline: float, against: str, note: str = "") -> None:
    """One figure beside its baseline, with the ratio."""
    ratio = value / baseline if baseline else float("inf")
    print(f"  {name:<40} {value:9.4f} ms   {against:<22} {baseline:9.4f} ms   x{ratio:6.3f} {note}")


def add_workers(engine: sa.Engine, count: int) -> None:
    """`count` registered workers, every other one silent for a minute (lost)."""
    now = utcnow()
    with write_session(engine) as session:
        for i in range(count):
            beat = now - timedelta(minutes=i % 2)
            register_worker(
                session=session,
                name=f"h{i}:{i}:worker:1",
                kind="worker",
                host=f"h{i}",
                pid=i,
                now=beat,
            )


def heartbeat_per_poll(engine: sa.Engine, repeat: int) -> float:
    """Print the heartbeat's cost per poll (no beat due, a beat that writes, amortised); return
    the amortised ms."""
    clock = [0.0]
    presence = Presence(
        engine,
        name="bench:1:worker:1",
        kind=WorkerKind.PROCESS,
        interval_s=5.0,
        clock=lambda: clock[0],
    )
    presence.beat()  # registers

    def due() -> None:
        clock[0] += 5.0
        presence.beat()

    quiet = best_ms(presence.beat, repeat * 10)
    writes = best_ms(due, repeat)
    amortised = quiet + (writes - quiet) / POLLS_PER_BEAT
    worker = Worker(engine, get_settings())
    rest = best_ms(lambda: idle_poll_with_scheduler(worker), repeat)
    line("poll, no beat due", quiet, rest, "rest of an idle poll")
    line("poll whose beat writes", writes, rest, "rest of an idle poll")
    verdict = "ok" if amortised < GOAL_MS else "ABOVE GOAL"
    note = f"goal < {GOAL_MS:.0f} ms: x{amortised / GOAL_MS:.3f} {verdict}"
    line(
        f"amortised (1 write in {POLLS_PER_BEAT:g} polls)",
        amortised,
        rest,
        "rest of an idle poll",
        note,
    )
    return amortised


def idle_poll_with_scheduler(worker: Worker) -> None:
    """An idle poll as a worker makes it, without the heartbeat: sweep, scheduler check, claim."""
    worker.scheduler.tick()
    idle_poll(worker)


def in_process(engine: sa.Engine, repeat: int) -> None:
    """The report and the metrics aggregate, each beside its bare SQL."""
    settings = get_settings()
    report = lambda: health_report(engine, settings)  # noqa: E731
    with_floor("health_report", engine, report, repeat, page_goal=False)

    def totals() -> None:
        with read_session(engine) as session:
            run_totals(session=session, bounds=(1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 3600.0))

    with_floor(
        "run_totals (the /metrics aggregate)", engine, totals, max(repeat // 10, 5), page_goal=False
    )


def over_http(engine: sa.Engine, repeat: int) -> float:
    """GET /api/health/details and /metrics beside GET /health, from serve-api; details' ms."""
    url = engine.url.render_as_string(hide_password=False)
    with api_process(url) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        health = best_ms(lambda: http.get("/health").raise_for_status(), repeat)
        details = best_ms(lambda: http.get("/api/health/details").raise_for_status(), repeat)
        metrics = best_ms(lambda: http.get("/metrics").raise_for_status(), max(repeat // 10, 5))
    line("GET /api/health/details", details, health, "GET /health")
    line("GET /metrics", metrics, health, "GET /health")
    return details


def measure(backend: str, postgres_url: str, size: int, workers: int, repeat: int) -> float:
    """Every figure of one backend; return the heartbeat's amortised ms per poll."""
    with temp_database(backend, postgres_url) as engine:
        print(f"{backend}:")
        if size:
            seed(engine, size, days=30, events_per_run=2)
        add_workers(engine, workers)
        amortised = heartbeat_per_poll(engine, repeat)
        in_process(engine, repeat)
        over_http(engine, repeat)
        return amortised


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000, help="runs to seed")
    parser.add_argument("--workers", type=int, default=10, help="registered workers, half lost")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--repeat", type=int, default=300, help="timed calls; the median counts")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    args = parser.parse_args()
    worst = max(
        measure(backend, args.postgres_url, args.size, args.workers, args.repeat)
        for backend in backends(args.backend)
    )
    raise SystemExit(0 if worst < GOAL_MS else 1)


if __name__ == "__main__":
    main()
