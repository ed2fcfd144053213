"""The floor: the very SQL a data function sends, replayed through the bare driver, timed beside it.

Shared by the page benchmarks (bench_pages_history, bench_pages_live).
"""

from __future__ import annotations

import sqlite3
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy import event

from db import driver
from etl.seed import seed_history

# statements that are transaction control or a liveness ping, not the data function's own work
NOT_THE_WORK = ("BEGIN", "ROLLBACK", "COMMIT", "SELECT 1")


def best_ms(action: Callable[[], Any], repeat: int) -> float:
    """The median of `repeat` timed calls after one warm-up, in milliseconds."""
    action()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def rerun_ms(at: Any, repeat: int) -> float:
    """The median milliseconds of an AppTest rerun that raises no exception."""

    def rerun() -> None:
        at.run()
        assert not at.exception, at.exception

    return best_ms(rerun, repeat)


def row(name: str, value: float, baseline: float, unit: str = "ms", goal: str = "") -> None:
    """One figure beside its baseline, with the ratio."""
    ratio = value / baseline if baseline else float("inf")
    print(
        f"  {name:<44} {value:>10.2f} {unit:<6} floor {baseline:>10.2f} {unit:<6} x{ratio:5.2f} {goal}"
    )


def captured(engine: sa.Engine, action: Callable[[], Any]) -> list[tuple[str, Any]]:
    """The SQL statements and parameters `action` sends to the driver (through SQLAlchemy or
    db.driver)."""
    statements: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if not statement.lstrip().upper().startswith(NOT_THE_WORK):
            statements.append((statement, parameters))

    def read(statement: str, parameters: Any) -> None:
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", keep)
    driver.listen(read)
    try:
        action()
    finally:
        event.remove(engine, "before_cursor_execute", keep)
        driver.unlisten(read)
    return statements


@contextmanager
def bare_connection(url: str) -> Iterator[Any]:
    """A plain DBAPI connection to the same database (no SQLAlchemy)."""
    parsed = sa.make_url(url)
    connection: Any
    if parsed.get_backend_name() == "sqlite":
        connection = sqlite3.connect(str(parsed.database))
    else:
        dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        connection = psycopg.connect(dsn)
    try:
        yield connection
    finally:
        connection.close()


def replay(connection: Any, statements: list[tuple[str, Any]]) -> None:
    """Run the captured statements and fetch every row: the floor."""
    cursor = connection.cursor()
    for statement, parameters in statements:
        cursor.execute(statement, parameters)
        cursor.fetchall()
    connection.rollback()


def with_floor(
    name: str, engine: sa.Engine, action: Callable[[], Any], repeat: int, *, page_goal: bool = True
) -> float:
    """Time `action` and the bare replay of its SQL; print both (with the pages' goal on SQLite
    unless `page_goal` is false); return the action's ms."""
    statements = captured(engine, action)
    ours = best_ms(action, repeat)
    with bare_connection(engine.url.render_as_string(hide_password=False)) as connection:
        floor = best_ms(lambda: replay(connection, statements), repeat)
    goal = f"({len(statements)} queries)"
    if page_goal and engine.dialect.name == "sqlite":
        goal += " ok" if ours / floor <= 1.5 and ours < 50 else " GOAL MISSED (<=1.5x, <50 ms)"
    row(name, ours, floor, goal=goal)
    return ours


def seed(engine: sa.Engine, runs: int, days: int, events_per_run: int) -> None:
    """Seed `runs` runs over `days` days into the migrated `engine`; print how long it took."""
    start = time.perf_counter()
    count = seed_history(
        engine, days=days, runs_per_day=max(1, runs // days), events_per_run=events_per_run
    )
    took = time.perf_counter() - start
    print(f"  seeded {count:,} runs, {count * events_per_run:,} events in {took:.1f} s")
    if engine.dialect.name == "sqlite":
        return  # seed_history refreshed the statistics, as the app's every start does
    with engine.connect() as connection:  # what autovacuum does soon after a bulk load
        connection.execute(sa.text("ANALYZE"))
        connection.commit()
