"""Live, Logs and Jobs on a large seeded history: one tick's data functions beside their floor.

    .venv/bin/python -m bench.bench_pages_live --runs 100000 --events-per-run 20

For each backend (SQLite file, PostgreSQL database created and dropped here) it seeds the history
with etl.seed (100,000 runs and 2,000,000 events by default), then times:
- the data function behind one Home tick (db.queries.live_overview), and the Logs cursor reads
  (first window of 500, then a tick after 100 new lines, all jobs and one job), each beside the
  very same SQL statements replayed through the bare driver (sqlite3 / psycopg): the floor;
- an AppTest rerun of Home, Logs and Jobs, beside an empty page.
Every figure prints beside its baseline with the ratio; the goal is <= 1.5x and < 50 ms on SQLite.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

from bench.floor import rerun_ms, row, seed, with_floor
from db.engine import dispose_engines, get_engine
from db.migrate import init_db
from db.queries import last_event_id, list_events, live_overview, read_session
from db.settings import get_settings

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get(
    "RUNWATCH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
PAGES = {"Home": "Home.py", "Logs": "pages/3_Logs.py", "Jobs": "pages/4_Jobs.py"}


@contextmanager
def database(backend: str, folder: Path) -> Iterator[str]:
    """A fresh database URL of `backend` (a PostgreSQL one is dropped afterwards)."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'bench.db'}"
        return
    admin = sa.make_url(POSTGRES_URL).set(drivername="postgresql").render_as_string(False)
    name = f"runwatch_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield sa.make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        dispose_engines()
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrated(url: str) -> sa.Engine:
    """The engine of `url`, migrated."""
    engine = get_engine(url)
    init_db(engine)
    return engine


def bench_home(engine: sa.Engine, repeat: int) -> None:
    """The one read behind a Home tick: every job with its latest runs and history."""

    def tick() -> None:
        with read_session(engine) as session:
            live_overview(session=session)

    with_floor("Home tick: live_overview (all jobs)", engine, tick, repeat)


def bench_logs(engine: sa.Engine, repeat: int) -> None:
    """The Logs page's cursor reads: the first window, then a tick with 100 new lines."""
    with read_session(engine) as session:
        newest = last_event_id(session=session)
        job = list_events(session=session, limit=1, newest_first=True)[0].run_id
    cases: dict[str, dict[str, Any]] = {
        "Logs first window (newest 500)": {},
        "Logs tick (after cursor, 100 new)": {"after_id": newest - 100},
        "Logs tick, INFO+ and text search": {
            "after_id": newest - 100,
            "min_level": "INFO",
            "text": "batch",
        },
        "Logs first window of one run": {"run_id": job},
    }
    for name, options in cases.items():

        def read(options: dict[str, Any] = options) -> None:
            with read_session(engine) as session:
                list_events(
                    session=session, limit=500, newest_first=True, with_data=False, **options
                )

        with_floor(name, engine, read, repeat)


def bench_apptest(url: str, repeat: int) -> None:
    """Milliseconds per AppTest rerun of Home, Logs and Jobs, beside an empty page."""
    from streamlit.testing.v1 import AppTest

    os.environ.update(
        RUNWATCH_DATABASE_URL=url, RUNWATCH_WORKER_ENABLED="false", RUNWATCH_CACHE_TTL_S="0"
    )
    get_settings.cache_clear()
    with tempfile.TemporaryDirectory() as folder:
        empty = Path(folder) / "empty.py"
        empty.write_text("import streamlit as st\n\nst.title('empty')\n")
        baseline = rerun_ms(AppTest.from_file(str(empty), default_timeout=120), repeat)
    for name, path in PAGES.items():
        page = AppTest.from_file(str(ROOT / path), default_timeout=120)
        row(f"AppTest rerun: {name} (no cache)", rerun_ms(page, repeat), baseline)


def main(argv: list[str] | None = None) -> None:
    """Seed each backend and print every figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", "--size", type=int, default=100_000, help="runs to seed")
    parser.add_argument("--events-per-run", type=int, default=20, help="events per run")
    parser.add_argument("--days", type=int, default=250, help="days the history spans")
    parser.add_argument("--repeat", type=int, default=15, help="timed calls per figure (median)")
    parser.add_argument(
        "--backends",
        "--backend",
        default="both",
        help="sqlite, postgres, or both (comma-separated)",
    )
    parser.add_argument("--postgres-url", help="server to create the PostgreSQL database on")
    parser.add_argument("--no-apptest", action="store_true", help="skip the AppTest reruns")
    args = parser.parse_args(argv)
    if args.postgres_url:
        global POSTGRES_URL
        POSTGRES_URL = args.postgres_url
    backends = "sqlite,postgres" if args.backends == "both" else args.backends
    for backend in backends.split(","):
        print(f"\n{backend}: {args.runs:,} runs, {args.runs * args.events_per_run:,} events")
        with tempfile.TemporaryDirectory() as folder, database(backend, Path(folder)) as url:
            engine = migrated(url)
            seed(engine, args.runs, args.days, args.events_per_run)
            bench_home(engine, args.repeat)
            bench_logs(engine, args.repeat)
            if not args.no_apptest:
                bench_apptest(url, max(3, args.repeat // 3))
            dispose_engines()


if __name__ == "__main__":
    main()
