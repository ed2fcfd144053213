"""History, Statistics and Download CSV on a large seeded history, each beside its floor.

    .venv/bin/python -m bench.bench_pages_history --size 100000 --events-per-run 20
    (quick: --size 5000 --days 50 --repeat 5)

For each backend (SQLite file, PostgreSQL database created and dropped here) it seeds the
history with etl.seed, then times:
- one History page (filtered, sorted, page of 50 with the count: list_runs), beside
  the very same SQL statements replayed through the bare driver (the floor);
- the Statistics aggregates for 90 days (reports.stats.load_statistics), beside the same floor,
  then each of its data functions beside its own;
- an AppTest rerun of the History and the Statistics page;
- Download CSV of every run (SQLite): rows/s and peak Python memory, beside `sqlite3 -csv`.
Figures print beside their baseline as a ratio.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
import tracemalloc
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session

from bench import DEFAULT_POSTGRES_URL, temp_database
from bench.floor import (
    bare_connection,
    best_ms,
    captured,
    replay,
    rerun_ms,
    row,
    seed,
    with_floor,
)
from db.engine import dispose_engines
from db.models import utcnow
from db.queries import (
    RunFilters,
    RunSort,
    StatsScope,
    daily_stats,
    duration_percentiles,
    duration_points,
    highlighted_runs,
    list_runs,
    mean_time_to_recovery,
    read_session,
)
from db.settings import get_settings
from reports.export import stream_export
from reports.stats import load_statistics, preset_scope

ROOT = Path(__file__).resolve().parents[1]
HISTORY_CASES = {
    "failed, newest first": (RunFilters(statuses=("failed",)), RunSort()),
    "one job, 30 d, by duration": (None, RunSort(key="duration")),  # filters set per history
}


# ---------------------------------------------------------------- measurements


def bench_history(engine: sa.Engine, repeat: int) -> None:
    """One History page: filtered, sorted, page of 50 with the count."""
    with read_session(engine) as session:
        job = list_runs(session=session, page_size=1).runs[0].job
    since = utcnow() - timedelta(days=30)
    for name, (filters, sort) in HISTORY_CASES.items():
        filters = filters or RunFilters(jobs=(job,), since=since)

        def page(filters: RunFilters = filters, sort: RunSort = sort) -> None:
            with read_session(engine) as session:
                list_runs(session=session, filters=filters, sort=sort, page=1, page_size=50)

        with_floor(f"History page ({name})", engine, page, repeat)


def bench_statistics(engine: sa.Engine, repeat: int) -> None:
    """The Statistics aggregates for 90 days, all jobs; then each data function beside its floor."""
    scope = preset_scope("90 d", now=utcnow())
    with_floor(
        "Statistics aggregates, 90 d", engine, lambda: load_statistics(engine, scope), repeat
    )
    for name, part in _statistics_parts(engine, scope).items():
        _part_row(f"  {name}", engine, part, repeat)


def _part_row(name: str, engine: sa.Engine, part: Callable[[Session], object], repeat: int) -> None:
    """One data function in its own read session beside its floor (the goal is the page's)."""

    def action() -> None:
        with read_session(engine) as session:
            part(session)

    statements = captured(engine, action)
    ours = best_ms(action, repeat)
    with bare_connection(engine.url.render_as_string(hide_password=False)) as connection:
        floor = best_ms(lambda: replay(connection, statements), repeat)
    row(name, ours, floor)


def _statistics_parts(
    engine: sa.Engine, scope: StatsScope
) -> dict[str, Callable[[Session], object]]:
    """The data functions behind load_statistics, by name (the highlights reuse percentiles)."""
    with read_session(engine) as session:
        percentiles = duration_percentiles(session=session, scope=scope)
    return {
        "daily_stats": lambda session: daily_stats(session=session, scope=scope),
        "duration_percentiles": lambda session: duration_percentiles(session=session, scope=scope),
        "mean_time_to_recovery": lambda session: mean_time_to_recovery(
            session=session, scope=scope
        ),
        "duration_points": lambda session: duration_points(session=session, scope=scope),
        "highlighted_runs": lambda session: highlighted_runs(
            session=session, scope=scope, percentiles=percentiles
        ),
    }


def bench_apptest(url: str, repeat: int) -> None:
    """Seconds per AppTest rerun of History and of Statistics (90 d), beside an empty page."""
    from streamlit.testing.v1 import AppTest

    os.environ.update(RUNWATCH_DATABASE_URL=url, RUNWATCH_WORKER_ENABLED="false")
    get_settings.cache_clear()
    empty = ROOT / "bench" / "_empty_page.py"
    empty.write_text("import streamlit as st\n\nst.title('empty')\n")
    try:
        baseline = rerun_ms(AppTest.from_file(str(empty), default_timeout=120), repeat)
        history = AppTest.from_file(str(ROOT / "pages" / "1_History.py"), default_timeout=120)
        history.query_params["status"] = "failed"
        row("AppTest rerun: History (failed)", rerun_ms(history, repeat), baseline)
        stats = AppTest.from_file(str(ROOT / "pages" / "2_Statistics.py"), default_timeout=120)
        stats.session_state["statistics_range"] = "90 d"
        row("AppTest rerun: Statistics (90 d)", rerun_ms(stats, repeat), baseline)
    finally:
        empty.unlink(missing_ok=True)


def bench_download(engine: sa.Engine, url: str) -> None:
    """Download CSV of every run: rows/s and peak memory, beside sqlite3's own CSV output."""
    filters = RunFilters()
    with read_session(engine) as session:
        total = list_runs(session=session, filters=filters, page_size=1).total
    start = time.perf_counter()
    size = sum(len(chunk) for chunk in stream_export(engine=engine, fmt="csv", filters=filters))
    ours = time.perf_counter() - start
    tracemalloc.start()
    for _ in stream_export(engine=engine, fmt="csv", filters=filters):
        pass
    streamed_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    floor, floor_rss = _sqlite3_csv(url)
    row(f"Download CSV, {total:,} runs: rows/s", total / ours, total / floor, unit="rows/s")
    print(
        f"  {'':<44} {size / 1e6:>10.1f} MB written; sqlite3 -csv {floor:.2f} s vs ours {ours:.2f} s"
    )
    print(
        f"  {'Download CSV: peak Python memory (streamed)':<44} {streamed_peak / 1e6:>10.1f} MB "
        f"(sqlite3 -csv process max RSS {floor_rss / 1e3:.1f} MB; the button holds the file: {size / 1e6:.1f} MB)"
    )


def _sqlite3_csv(url: str) -> tuple[float, int]:
    query = (
        'SELECT id, job, status, "trigger", triggered_by, started_at, ended_at, '
        '(julianday(ended_at) - julianday(started_at)) * 86400.0, total_records, "offset", '
        "records_loaded, records_rejected, counters, current_step, error_type, error_message, "
        "created_at, resumed_from FROM run ORDER BY created_at DESC, id DESC"
    )
    path = sa.make_url(url).database
    command = ["/usr/bin/time", "-f", "%M", "sqlite3", "-csv", "-header", str(path), query]
    start = time.perf_counter()
    done = subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seconds = time.perf_counter() - start
    return seconds, int(done.stderr.decode().strip().splitlines()[-1])  # max RSS in KiB


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    """Seed each backend and print every figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", "--size", type=int, default=100_000, help="runs to seed")
    parser.add_argument(
        "--events-per-run", type=int, default=20, help="events per run (default 20)"
    )
    parser.add_argument(
        "--days", type=int, default=250, help="days the history spans (default 250)"
    )
    parser.add_argument("--repeat", type=int, default=15, help="timed calls per figure (median)")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--no-apptest", action="store_true", help="skip the AppTest reruns")
    args = parser.parse_args(argv)
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    for backend in backends:
        print(f"\n{backend}: {args.runs:,} runs over {args.days} days")
        with temp_database(backend, args.postgres_url) as engine:
            url = engine.url.render_as_string(hide_password=False)
            seed(engine, args.runs, args.days, args.events_per_run)
            bench_history(engine, args.repeat)
            bench_statistics(engine, args.repeat)
            if not args.no_apptest:
                bench_apptest(url, max(3, args.repeat // 3))
            if backend == "sqlite":
                bench_download(engine, url)
        dispose_engines()


if __name__ == "__main__":
    main()
