"""Audit export of 1,000,000 runs: in process and over HTTP, beside the databases' own CSV.

    python -m bench.bench_export_api [--size 1000000] [--backend sqlite|postgres|both] [--existing URL]

For each backend it seeds `--size` runs (etl.seed: executemany on SQLite, COPY on PostgreSQL) into a
fresh database, then measures, one after the other in the same run:
- the floor: `sqlite3 -csv` / PostgreSQL `COPY (…) TO STDOUT WITH CSV` (through psql) of the same
  rows in the same order;
- the plain script a user would write: the DB-API driver (sqlite3 / psycopg) and Python's csv;
- the export in process as the CLI makes it (`etl.commands.export`: streamed, hashed and audited),
  CSV then JSON, each in a fresh Python process so its peak RSS is its own;
- `GET /api/etl/export.csv` from `runwatch serve-api` (its own process), with its peak RSS.
Each time is the fastest of REPEATS rounds, taken in turns, and each peak RSS the highest of
them. Each figure prints as rows/s beside its baseline with the ratio, and against its goal: CSV
>= 0.5x sqlite3 and >= 0.8x COPY, JSON >= 0.3x of those, peak RSS <= 150 MB, HTTP within 1.2x of
in process.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import sqlalchemy as sa

from bench import DEFAULT_POSTGRES_URL, backends, loopback_only, temp_database, timed
from db.engine import make_engine
from db.queries import count_runs, list_audit, read_session
from etl.seed import seed_history
from tests.apiserver import api_process

MEMORY_GOAL_MB = 150.0
CSV_GOAL = {"sqlite": 0.5, "postgres": 0.8}  # the export's rows/s over the database's own CSV
JSON_SHARE = 0.3  # JSON's goal is this share of the CSV floor
HTTP_GOAL = 1.2  # over HTTP at most this many times the in-process export's time
ORDER = "ORDER BY created_at DESC, id DESC"  # the export's default order: newest first
REPEATS = 3  # each time is the fastest of this many runs: a shared machine's noise only slows

# In a fresh interpreter: one export as `runwatch runs --format …` makes it (etl.commands.export:
# hashed and audited, as over HTTP), its bytes dropped, then its seconds and peak RSS as JSON.
CHILD = """
import json, sys, time
from db.engine import make_engine
from etl.commands import Caller, Source, export
engine = make_engine(sys.argv[1])
start = time.perf_counter()
chunks = export(engine, Caller(actor="bench", source=Source.CLI), sys.argv[2])
size = sum(len(chunk) for chunk in chunks)
seconds = time.perf_counter() - start
peak = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1]
print(json.dumps({"seconds": seconds, "bytes": size, "peak_mb": int(peak) / 1024}))
"""

# The plain script a user would write: the driver's rows through Python's csv module.
PLAIN = """
import csv, sys, time
url, query = sys.argv[1], sys.argv[2]
if url.startswith("sqlite"):
    import sqlite3
    connection = sqlite3.connect(url.split("///", 1)[1])
    rows = connection.execute(query)
else:
    import psycopg
    connection = psycopg.connect(url)
    rows = connection.cursor(name="plain").execute(query)
start = time.perf_counter()
with open("/dev/null", "w", newline="") as out:
    writer = csv.writer(out)
    writer.writerow(["col"] * 18)
    writer.writerows(rows)
print(time.perf_counter() - start)
"""


def seed(engine: sa.Engine, size: int) -> int:
    """About `size` past runs (two events each: the history, not the events, is exported)."""
    days = max(1, min(365, size // 1000))
    return seed_history(engine, days=days, runs_per_day=max(1, size // days), events_per_run=2)


def memory_mb(pid: int, field: str) -> float:
    """A memory field of /proc/<pid>/status (VmRSS now, VmHWM peak) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no {field} for process {pid}")


class RssSampler(threading.Thread):
    """Samples a process's resident memory every 100 ms until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.samples = pid, [memory_mb(pid, "VmRSS")]
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.1):
            self.samples.append(memory_mb(self.pid, "VmRSS"))


def download(url: str) -> int:
    """Bytes of the streamed CSV export."""
    size = 0
    with httpx.stream("GET", f"{url}/api/etl/export.csv", timeout=None) as response:
        response.raise_for_status()
        for chunk in response.iter_raw():
            size += len(chunk)
    return size


def plain_url(engine: sa.Engine) -> str:
    """The engine's URL as the bare drivers take it."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        return f"sqlite:///{url.database}"
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def database_csv_seconds(engine: sa.Engine) -> float:
    """Seconds the database's own CSV tool takes to write every run in export order."""
    url = plain_url(engine)
    if engine.url.get_backend_name() == "sqlite":
        command = [
            "sqlite3",
            "-csv",
            "-header",
            str(engine.url.database),
            f"SELECT * FROM run {ORDER}",
        ]
    else:
        copy = f"COPY (SELECT * FROM run {ORDER}) TO STDOUT WITH CSV HEADER"
        command = ["psql", "-X", "-q", url, "-c", copy]
    _, seconds = timed(lambda: subprocess.run(command, stdout=subprocess.DEVNULL, check=True))
    return seconds


def plain_script_seconds(engine: sa.Engine) -> float:
    """Seconds of the plain driver + csv script over the same rows."""
    command = [sys.executable, "-c", PLAIN, plain_url(engine), f"SELECT * FROM run {ORDER}"]
    return float(subprocess.run(command, capture_output=True, check=True, text=True).stdout)


def in_process(engine: sa.Engine, fmt: str) -> dict[str, float]:
    """One export in a fresh process: its seconds, bytes and peak RSS."""
    url = engine.url.render_as_string(hide_password=False)
    command = [sys.executable, "-c", CHILD, url, fmt]
    result: dict[str, float] = json.loads(
        subprocess.run(command, capture_output=True, check=True, text=True).stdout
    )
    return result


def fastest(runs: list[dict[str, float]]) -> dict[str, float]:
    """The fastest of several runs of one export, with the highest peak RSS of them."""
    return min(runs, key=lambda run: run["seconds"]) | {"peak_mb": max(r["peak_mb"] for r in runs)}


def over_http(engine: sa.Engine) -> tuple[int, float, float, float]:
    """Bytes, seconds, RSS before and peak RSS of the server for GET /api/etl/export.csv."""
    with api_process(engine.url.render_as_string(hide_password=False)) as server:
        sampler = RssSampler(server.pid)
        sampler.start()
        size, seconds = timed(lambda: download(server.url))
        sampler.stopped.set()
        sampler.join()
        peak = max(max(sampler.samples), memory_mb(server.pid, "VmHWM"))
    return size, seconds, sampler.samples[0], peak


def line(name: str, rows_per_s: float, baseline: float, label: str, goal: float | None) -> None:
    """A throughput beside its baseline, with the ratio (higher is better) and the goal."""
    ratio = rows_per_s / baseline
    verdict = (
        "" if goal is None else f"  goal >= {goal:.2f}: {'ok' if ratio >= goal else 'NOT MET'}"
    )
    print(
        f"  {name:<30} {rows_per_s:>11,.0f} rows/s  {label:<16} {baseline:>11,.0f} rows/s  ratio {ratio:5.2f}{verdict}"
    )


def memory(name: str, peak: float, before: float | None = None) -> None:
    """A peak RSS against the memory goal."""
    start = "" if before is None else f" (before {before:.0f} MB)"
    verdict = "ok" if peak <= MEMORY_GOAL_MB else "NOT MET"
    print(
        f"  {name:<30} {peak:>8.0f} MB peak RSS{start}  goal <= {MEMORY_GOAL_MB:.0f} MB: {verdict}"
    )


@contextmanager
def seeded(backend: str, postgres_url: str, size: int, existing: str | None) -> Iterator[sa.Engine]:
    """A fresh database of `backend` seeded with `size` runs, or the `existing` one as it is."""
    if existing:
        engine = make_engine(existing if backend == "sqlite" else loopback_only(existing))
        with read_session(engine) as session:
            print(
                f"{backend}: {count_runs(session=session):,} runs already in {engine.url.database}"
            )
        yield engine
        return
    with temp_database(backend, postgres_url) as engine:
        runs, seed_s = timed(lambda: seed(engine, size))
        print(f"{backend}: seeded {runs:,} runs in {seed_s:.1f} s")
        yield engine


def bench_backend(backend: str, postgres_url: str, size: int, existing: str | None) -> None:
    """Seed, then every figure of the backend in one run."""
    with seeded(backend, postgres_url, size, existing) as engine:
        with read_session(engine) as session:
            runs = count_runs(session=session)
        # each the fastest of REPEATS, with the highest peak RSS of them; the rounds take turns,
        # so a slow spell of a shared machine slows every figure of a round, not one figure's
        # every run (the first floor run also reads the table into the page cache)
        floors, csvs, jsons, https = [], [], [], []
        for _ in range(REPEATS):
            floors.append(database_csv_seconds(engine))
            csvs.append(in_process(engine, "csv"))
            jsons.append(in_process(engine, "json"))
            https.append(over_http(engine))
        floor, csv, js = runs / min(floors), fastest(csvs), fastest(jsons)
        plain = runs / plain_script_seconds(engine)
        http_bytes, http_s, before, _ = min(https, key=lambda figures: figures[1])
        peak = max(figures[3] for figures in https)
        with read_session(engine) as session:
            audited = list_audit(session=session, action="export", limit=1)[0].details["rows"]
    assert audited == runs and http_bytes == csv["bytes"], "the exports are not whole"
    tool = "sqlite3 -csv" if backend == "sqlite" else "psql COPY CSV"
    goal = CSV_GOAL[backend]
    line("CSV in process", runs / csv["seconds"], floor, tool, goal)
    line("JSON in process", runs / js["seconds"], floor, tool, goal * JSON_SHARE)
    line("CSV over HTTP", runs / http_s, runs / csv["seconds"], "CSV in process", 1 / HTTP_GOAL)
    line("CSV in process", runs / csv["seconds"], plain, "driver + csv", None)
    memory("CSV in process", csv["peak_mb"])
    memory("JSON in process", js["peak_mb"])
    memory("serve-api during export.csv", peak, before)
    print(f"  {csv['bytes'] / 2**20:,.1f} MB CSV, {js['bytes'] / 2**20:,.1f} MB JSON")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="runs to seed and export")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument(
        "--existing",
        action="append",
        default=[],
        metavar="URL",
        help="export this already seeded database instead of seeding one (repeat: one per backend)",
    )
    args = parser.parse_args()
    existing = {sa.make_url(url).get_backend_name(): url for url in args.existing}
    existing = {("postgres" if k == "postgresql" else k): v for k, v in existing.items()}
    print(f"audit export: {args.size:,} runs")
    for backend in backends(args.backend):
        bench_backend(backend, args.postgres_url, args.size, existing.get(backend))


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"done in {time.perf_counter() - started:.0f} s")
