"""csv_import throughput: the job through the Runner versus a plain bulk load of the same rows.

    python -m bench.bench_csv_import [--size 1000000] [--backend sqlite|postgres|both] [--repeat 1]

A generated CSV of `--size` rows (written to a temporary folder, deleted afterwards) is imported by
the csv_import job through the Runner, bookkeeping on, into a fresh database. Baselines, into an
equivalent fresh table (same columns, types and primary key):
- SQLite: one plain `sqlite3` executemany of the parsed rows;
- PostgreSQL: one psycopg `cursor.copy` (COPY FROM STDIN) of the parsed rows.
Each baseline is timed twice: the load alone (rows parsed beforehand, untimed: the issue's literal
baseline) and reading + parsing + loading (what a hand-written import script costs, the same work
the job does minus its checks, batching and bookkeeping). Goal: ratio <= 1.5.
"""

from __future__ import annotations

import argparse
import csv
import random
import sqlite3
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from bench import DEFAULT_POSTGRES_URL, backends, loopback_only, report, temp_database, timed
from db.models import RunStatus
from db.queries import create_run, write_session
from db.settings import get_settings
from etl.jobs.csv_params import BATCH_SIZE
from etl.jobs.csv_rows import target_table
from etl.runner import Runner

GOAL = 1.5
COLUMNS = {"id": "int", "name": "text", "category": "text", "amount": "float"}
COLUMNS |= {"quantity": "int", "day": "date"}
Row = tuple[Any, ...]


def write_csv(path: Path, size: int) -> None:
    """A CSV of `size` deterministic rows of the COLUMNS layout."""
    rand = random.Random(7)
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(COLUMNS)
        for i in range(size):
            amount = f"{rand.random() * 1000:.2f}"
            day = f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}"
            out.writerow([i, f"Item {i:07d}", f"cat-{i % 97}", amount, rand.randint(0, 500), day])


def parse_csv(path: Path, sqlite_values: bool) -> list[Row]:
    """The typed rows of the CSV, as a plain script would parse them (dates as text for SQLite)."""
    day: Callable[[str], Any] = str if sqlite_values else date.fromisoformat
    with path.open(newline="", encoding="utf-8") as handle:
        records = csv.reader(handle)
        next(records)
        return [(int(a), b, c, float(d), int(e), day(f)) for a, b, c, d, e, f in records]


def bench_table() -> sa.Table:
    """The table csv_import creates for the COLUMNS layout keyed by id."""
    return target_table("bench_items", list(COLUMNS), COLUMNS, ["id"])


def job_seconds(backend: str, postgres_url: str, path: Path, size: int, batch: int) -> float:
    """Seconds the Runner takes to import the CSV into a fresh database."""
    params = {
        "path": str(path),
        "table": "bench_items",
        "key": "id",
        "types": {name: kind for name, kind in COLUMNS.items() if kind != "text"},
        "batch_size": batch,
    }
    with temp_database(backend, postgres_url) as engine:
        with write_session(engine) as session:
            run = create_run(session=session, job="csv_import", params=params, status="running")
        ended, seconds = timed(lambda: Runner(engine, get_settings()).execute(run))
    if ended.status != RunStatus.FINISHED or ended.records_loaded != size:
        raise SystemExit(f"benchmark run ended {ended.status}: {ended.error_message}")
    return seconds


def sqlite_seconds(path: Path, folder: Path, rows: list[Row] | None) -> float:
    """Seconds for one executemany of the rows (parsed inside the timing when `rows` is None)."""
    database = folder / f"baseline-{uuid.uuid4().hex[:8]}.db"
    connection = sqlite3.connect(database, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")  # as Runwatch's own SQLite engine
        connection.execute("PRAGMA synchronous=NORMAL")
        ddl = str(sa.schema.CreateTable(bench_table()).compile(dialect=sqlite.dialect()))
        connection.execute(ddl)
        insert = f"INSERT INTO bench_items VALUES ({', '.join('?' for _ in COLUMNS)})"

        def load() -> None:
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(insert, rows or parse_csv(path, sqlite_values=True))
            connection.execute("COMMIT")

        return timed(load)[1]
    finally:
        connection.close()
        database.unlink()


def postgres_seconds(postgres_url: str, path: Path, rows: list[Row] | None) -> float:
    """Seconds for one COPY of the rows (parsed inside the timing when `rows` is None)."""
    with postgres_database(postgres_url) as dsn, psycopg.connect(dsn) as connection:
        ddl = str(sa.schema.CreateTable(bench_table()).compile(dialect=postgresql.dialect()))
        connection.execute(ddl)
        connection.commit()
        copy_sql = f"COPY bench_items ({', '.join(COLUMNS)}) FROM STDIN"

        def load() -> None:
            with connection.cursor() as cursor, cursor.copy(copy_sql) as copy:
                for row in rows or parse_csv(path, sqlite_values=False):
                    copy.write_row(row)
            connection.commit()

        return timed(load)[1]


@contextmanager
def postgres_database(postgres_url: str) -> Iterator[str]:
    """The DSN of a fresh, empty PostgreSQL database, dropped afterwards."""
    server = sa.make_url(loopback_only(postgres_url)).set(drivername="postgresql")
    admin = server.render_as_string(hide_password=False)
    name = f"runwatch_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def measure(backend: str, args: argparse.Namespace, path: Path, folder: Path) -> dict[str, float]:
    """Best seconds of `--repeat` attempts: the job, the load alone, and parse + load."""
    best = {"job": float("inf"), "load": float("inf"), "parse_load": float("inf")}
    parsed = parse_csv(path, sqlite_values=backend == "sqlite")
    for _ in range(args.repeat):
        if backend == "sqlite":
            baseline = {
                "load": sqlite_seconds(path, folder, parsed),
                "parse_load": sqlite_seconds(path, folder, None),
            }
        else:
            baseline = {
                "load": postgres_seconds(args.postgres_url, path, parsed),
                "parse_load": postgres_seconds(args.postgres_url, path, None),
            }
        baseline["job"] = job_seconds(backend, args.postgres_url, path, args.size, args.batch_size)
        best = {name: min(best[name], baseline[name]) for name in best}
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="rows in the generated CSV")
    parser.add_argument(
        "--batch-size", type=int, default=BATCH_SIZE, help="csv_import batch_size (its default)"
    )
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--repeat", type=int, default=1, help="attempts per side; the best counts")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="runwatch-bench-csv-") as tmp:
        folder = Path(tmp)
        path = folder / "items.csv"
        write_csv(path, args.size)
        print(
            f"csv_import: {args.size:,} rows, {path.stat().st_size / 1e6:.0f} MB, batch {args.batch_size}"
        )
        for backend in backends(args.backend):
            best = measure(backend, args, path, folder)
            plain = "executemany" if backend == "sqlite" else "COPY"
            rate = args.size / best["job"]
            name = f"csv_import {backend} ({rate:,.0f} rows/s)"
            report(name, best["job"], best["load"], f"{plain} of parsed rows", GOAL)
            report(name, best["job"], best["parse_load"], f"parse + {plain}", GOAL)


if __name__ == "__main__":
    main()
