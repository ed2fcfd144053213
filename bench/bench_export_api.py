"""Audit export over HTTP: `GET /api/etl/export.csv` of 1,000,000 runs, beside the databases' own CSV.

    python -m bench.bench_export_api [--size 1000000] [--backend sqlite|postgres|both]

For each backend it seeds `--size` runs (etl.seed: executemany on SQLite, COPY on PostgreSQL) into a
fresh database, serves the API (`runwatch serve-api`, its own process) and downloads the whole
history as CSV. It prints the export's time and rows/s beside `sqlite3 -csv` / PostgreSQL
`COPY (…) TO STDOUT WITH CSV` (through psql) of the same rows in the same order, as a ratio, and the
server's resident memory before the export and at its peak (goal: flat, under 150 MB).
"""

from __future__ import annotations

import argparse
import subprocess
import threading
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

from bench import DEFAULT_POSTGRES_URL, backends, report, temp_database, timed
from db.queries import list_audit, read_session
from etl.seed import seed_history
from tests.apiserver import api_process

MEMORY_GOAL_MB = 150.0
ORDER = "ORDER BY created_at DESC, id DESC"  # the export's default order: newest first


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


def database_csv_seconds(engine: sa.Engine) -> float:
    """Seconds the database's own CSV tool takes to write every run in export order."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        command = ["sqlite3", "-csv", "-header", str(url.database), f"SELECT * FROM run {ORDER}"]
    else:
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        copy = f"COPY (SELECT * FROM run {ORDER}) TO STDOUT WITH CSV HEADER"
        command = ["psql", "-X", "-q", dsn, "-c", copy]
    _, seconds = timed(lambda: subprocess.run(command, stdout=subprocess.DEVNULL, check=True))
    return seconds


def bench_backend(backend: str, postgres_url: str, size: int) -> None:
    """Seed, export over HTTP, compare with the database's CSV, print the figures."""
    with temp_database(backend, postgres_url) as engine:
        runs, seed_s = timed(lambda: seed(engine, size))
        print(f"{backend}: seeded {runs:,} runs in {seed_s:.1f} s")
        baseline = database_csv_seconds(engine)
        url = engine.url.render_as_string(hide_password=False)
        with api_process(url) as server:
            sampler = RssSampler(server.pid)
            sampler.start()
            size_bytes, seconds = timed(lambda: download(server.url))
            sampler.stopped.set()
            sampler.join()
            peak = memory_mb(server.pid, "VmHWM")
        with read_session(engine) as session:
            rows = list_audit(session=session, action="export", limit=1)[0].details["rows"]
    assert rows == runs, f"exported {rows:,} rows of {runs:,}"
    name = f"export.csv {backend} {rows / seconds:,.0f} rows/s"
    report(name, seconds, baseline, f"{'sqlite3 -csv' if backend == 'sqlite' else 'psql COPY'}")
    print(
        f"  {size_bytes / 2**20:,.1f} MB; {rows / baseline:,.0f} rows/s for the database's own CSV"
    )
    start, top = sampler.samples[0], max(max(sampler.samples), peak)
    verdict = "ok" if top <= MEMORY_GOAL_MB else "ABOVE GOAL"
    print(
        f"{'server RSS ' + backend:<40} {top:9.1f} MB  before {start:9.1f} MB   "
        f"goal {MEMORY_GOAL_MB:.0f} MB ratio {top / MEMORY_GOAL_MB:6.3f}: {verdict}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="runs to seed and export")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    args = parser.parse_args()
    print(f"export.csv over HTTP: {args.size:,} runs")
    for backend in backends(args.backend):
        bench_backend(backend, args.postgres_url, args.size)


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"done in {time.perf_counter() - started:.0f} s")
