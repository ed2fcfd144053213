"""Benchmarks: each script prints its figures beside their baselines as ratios.

Every script takes `--size` (so a quick run is possible) and creates and drops its own temporary
databases: a SQLite file in a temporary folder, and a PostgreSQL database on the loopback server.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import psycopg
import sqlalchemy as sa

from db.engine import make_engine
from db.migrate import init_db

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
T = TypeVar("T")


def loopback_only(url: str) -> str:
    """The URL, if its server is on this machine; benchmarks target nothing else."""
    host = sa.make_url(url).host
    if host not in LOOPBACK:
        raise SystemExit(f"benchmarks only use a PostgreSQL server on 127.0.0.1 or ::1, not {host}")
    return url


@contextmanager
def temp_database(backend: str, postgres_url: str = DEFAULT_POSTGRES_URL) -> Iterator[sa.Engine]:
    """A migrated engine on a fresh database of `backend` (sqlite | postgres), dropped afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="runwatch-bench-") as folder:
            engine = make_engine(f"sqlite:///{Path(folder) / 'bench.db'}")
            init_db(engine)
            try:
                yield engine
            finally:
                engine.dispose()
        return
    server = sa.make_url(loopback_only(postgres_url))
    admin = server.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"runwatch_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    engine = make_engine(server.set(database=name).render_as_string(hide_password=False))
    try:
        init_db(engine)
        yield engine
    finally:
        engine.dispose()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def timed(action: Callable[[], T]) -> tuple[T, float]:
    """The action's result and its wall-clock seconds."""
    start = time.perf_counter()
    result = action()
    return result, time.perf_counter() - start


def report(
    name: str, seconds: float, baseline: float, label: str, goal: float | None = None
) -> float:
    """Print a figure beside its baseline as a ratio (and against the goal); return the ratio."""
    ratio = seconds / baseline if baseline else float("inf")
    verdict = ""
    if goal is not None:
        verdict = f"  goal <= {goal:.2f}: {'ok' if ratio <= goal else 'ABOVE GOAL'}"
    print(f"{name:<40} {seconds:9.2f} s   {label} {baseline:9.2f} s   ratio {ratio:6.3f}{verdict}")
    return ratio


def backends(choice: str) -> list[str]:
    """The backends a `--backend sqlite|postgres|both` option names."""
    return ["sqlite", "postgres"] if choice == "both" else [choice]
