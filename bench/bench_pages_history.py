"""History, Statistics and Download CSV on a large seeded history, each beside its floor.

    .venv/bin/python -m bench.bench_pages_history --size 100000 --events-per-run 20
    (quick: --size 5000 --days 50 --repeat 5)

For each backend (SQLite file, PostgreSQL database created and dropped here) it seeds the
history with etl.seed, then times:
- one History page (filtered, sorted, page of 50 with the count) through db.queries, beside
  the very same SQL statements replayed through the bare driver (the floor);
- the Statistics aggregates for 90 days (etl.stats.load_statistics), beside the same floor;
- an AppTest rerun of the History and the Statistics page;
- Download CSV of every run (SQLite): rows/s and peak Python memory, beside `sqlite3 -csv`.
Figures print beside their baseline as a ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy import event

from bench import DEFAULT_POSTGRES_URL, temp_database
from db.engine import dispose_engines
from db.models import utcnow
from db.queries import RunFilters, RunSort, list_runs, read_session
from db.settings import get_settings
from etl.export import stream_export
from etl.seed import seed_history
from etl.stats import load_statistics, preset_scope

ROOT = Path(__file__).resolve().parents[1]
HISTORY_CASES = {
    "failed, newest first": (RunFilters(statuses=("failed",)), RunSort()),
    "one job, 30 d, by duration": (None, RunSort(key="duration")),  # filters set per history
}


# ---------------------------------------------------------------- timing


def best_ms(action: Callable[[], Any], repeat: int) -> float:
    """The median of `repeat` timed calls after one warm-up, in milliseconds."""
    action()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def row(name: str, value: float, baseline: float, unit: str = "ms", goal: str = "") -> None:
    """One figure beside its baseline, with the ratio."""
    ratio = value / baseline if baseline else float("inf")
    print(
        f"  {name:<44} {value:>10.2f} {unit:<6} floor {baseline:>10.2f} {unit:<6} x{ratio:5.2f} {goal}"
    )


# ---------------------------------------------------------------- the floor: same SQL, bare driver


def captured(engine: sa.Engine, action: Callable[[], Any]) -> list[tuple[str, Any]]:
    """The SQL statements and parameters `action` sends to the driver."""
    statements: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "ROLLBACK", "COMMIT", "SELECT 1")):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", keep)
    try:
        action()
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    return statements


@contextmanager
def bare_connection(url: str) -> Iterator[Any]:
    """A plain DBAPI connection to the same database (no SQLAlchemy)."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        import sqlite3

        connection = sqlite3.connect(str(parsed.database))
    else:
        dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        connection = psycopg.connect(dsn)
    try:
        yield connection
    finally:
        connection.close()


def replay(connection: Any, statements: list[tuple[str, Any]]) -> None:
    """Run the captured statements and fetch every row, as the floor."""
    cursor = connection.cursor()
    for statement, parameters in statements:
        cursor.execute(statement, parameters)
        cursor.fetchall()
    connection.rollback()


def with_floor(
    name: str, engine: sa.Engine, url: str, action: Callable[[], Any], repeat: int
) -> float:
    """Time `action` and the bare replay of its SQL; print both; return the action's ms."""
    statements = captured(engine, action)
    ours = best_ms(action, repeat)
    with bare_connection(url) as connection:
        floor = best_ms(lambda: replay(connection, statements), repeat)
    goal = ""
    if engine.dialect.name == "sqlite":
        goal = "ok" if ours / floor <= 1.5 and ours < 50 else "GOAL MISSED (<=1.5x, <50 ms)"
    row(name, ours, floor, goal=goal)
    return ours


# ---------------------------------------------------------------- databases


def seed(engine: sa.Engine, runs: int, days: int, events_per_run: int) -> None:
    """Seed `runs` runs over `days` days into the migrated `engine`; print how long it took."""
    start = time.perf_counter()
    count = seed_history(
        engine, days=days, runs_per_day=max(1, runs // days), events_per_run=events_per_run
    )
    print(
        f"  seeded {count:,} runs, {count * events_per_run:,} events in {time.perf_counter() - start:.1f} s"
    )
    with engine.connect() as connection:
        connection.execute(sa.text("ANALYZE"))
        connection.commit()


# ---------------------------------------------------------------- measurements


def bench_history(engine: sa.Engine, url: str, repeat: int) -> None:
    """One History page: filtered, sorted, page of 50 with the count."""
    with read_session(engine) as session:
        job = list_runs(session=session, page_size=1).runs[0].job
    since = utcnow() - timedelta(days=30)
    for name, (filters, sort) in HISTORY_CASES.items():
        filters = filters or RunFilters(jobs=(job,), since=since)

        def page(filters: RunFilters = filters, sort: RunSort = sort) -> None:
            with read_session(engine) as session:
                list_runs(session=session, filters=filters, sort=sort, page=1, page_size=50)

        with_floor(f"History page ({name})", engine, url, page, repeat)


def bench_statistics(engine: sa.Engine, url: str, repeat: int) -> None:
    """The Statistics aggregates for 90 days, all jobs."""
    scope = preset_scope("90 d", now=utcnow())
    with_floor(
        "Statistics aggregates, 90 d", engine, url, lambda: load_statistics(engine, scope), repeat
    )


def bench_apptest(url: str, repeat: int) -> None:
    """Seconds per AppTest rerun of History and of Statistics (90 d), beside an empty page."""
    from streamlit.testing.v1 import AppTest

    os.environ.update(RUNWATCH_DATABASE_URL=url, RUNWATCH_WORKER_ENABLED="false")
    get_settings.cache_clear()
    empty = ROOT / "bench" / "_empty_page.py"
    empty.write_text("import streamlit as st\n\nst.title('empty')\n")
    try:
        baseline = _rerun_ms(AppTest.from_file(str(empty), default_timeout=120), repeat)
        history = AppTest.from_file(str(ROOT / "pages" / "1_History.py"), default_timeout=120)
        history.query_params["status"] = "failed"
        row("AppTest rerun: History (failed)", _rerun_ms(history, repeat), baseline)
        stats = AppTest.from_file(str(ROOT / "pages" / "2_Statistics.py"), default_timeout=120)
        stats.session_state["statistics_range"] = "90 d"
        row("AppTest rerun: Statistics (90 d)", _rerun_ms(stats, repeat), baseline)
    finally:
        empty.unlink(missing_ok=True)


def _rerun_ms(at: Any, repeat: int) -> float:
    def rerun() -> None:
        at.run()
        assert not at.exception, at.exception

    return best_ms(rerun, repeat)


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
    row(f"Download CSV, {total:,} runs: rows/s", total / ours, total / floor, "rows/s")
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
            bench_history(engine, url, args.repeat)
            bench_statistics(engine, url, args.repeat)
            if not args.no_apptest:
                bench_apptest(url, max(3, args.repeat // 3))
            if backend == "sqlite":
                bench_download(engine, url)
        dispose_engines()


if __name__ == "__main__":
    main()
