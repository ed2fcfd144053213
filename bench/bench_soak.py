"""Soak: a worker's and serve-api's resident memory over a long life.

    python -m bench.bench_soak [worker|api] [--runs 200] [--size 200000] [--minutes 9]
                               [--backend sqlite|postgres|both]

`worker`: one `runwatch worker` process executes `--runs` csv_import runs of one generated CSV of
`--size` rows, one after another, into a fresh database; its RSS (VmRSS) is read after each run.
Goal: RSS grows by at most 5 MB from run 10 to the last run (the first runs warm caches up).
`api`: a `runwatch serve-api` process is polled (status, history, health) and opened by short
live-feed connections for `--minutes`; its RSS is read every 10 s; the figure is its growth per
minute over the second half, beside the first half's, to tell a leak from a warm-up.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

from bench import DEFAULT_POSTGRES_URL, backends, temp_database
from bench.bench_csv_import import COLUMNS, write_csv
from bench.bench_sse import free_port
from db.models import RunStatus
from db.queries import create_run, get_run, read_session, write_session

GOAL_MB = 5.0
WARM_RUNS = 10
SAMPLE_S = 10.0


def rss_mb(pid: int) -> float:
    """Resident memory of process `pid` in MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def spawn(engine: sa.Engine, *args: str) -> subprocess.Popen[bytes]:
    """`runwatch ARGS` on `engine`'s database, in its own process."""
    env = dict(os.environ, RUNWATCH_DATABASE_URL=engine.url.render_as_string(hide_password=False))
    env |= {"RUNWATCH_WORKER_POLL_S": "0.05", "RUNWATCH_HEARTBEAT_S": "5"}
    return subprocess.Popen(
        [sys.executable, "-m", "etl", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def import_once(engine: sa.Engine, path: Path) -> None:
    """Queue one csv_import of `path` and wait until a worker has finished it."""
    types = {name: kind for name, kind in COLUMNS.items() if kind != "text"}
    params = {"path": str(path), "table": "soak", "key": "id", "types": types}
    with write_session(engine) as session:
        run_id = create_run(session=session, job="csv_import", params=params).id or 0
    while True:
        with read_session(engine) as session:
            run = get_run(session=session, run_id=run_id, fresh=True)
        if run.status in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.CANCELLED):
            if run.status != RunStatus.FINISHED:
                raise SystemExit(f"import #{run_id} {run.status}: {run.error_message}")
            return
        time.sleep(0.05)


def soak_worker(backend: str, postgres_url: str, runs: int, size: int) -> None:
    """Print the worker's RSS over `runs` imports and its growth after the warm-up."""
    with tempfile.TemporaryDirectory(prefix="runwatch-soak-") as folder:
        path = Path(folder) / "soak.csv"
        write_csv(path, size)
        with temp_database(backend, postgres_url) as engine:
            worker = spawn(engine, "worker")
            try:
                samples = [_timed_import(engine, path, worker.pid) for _ in range(runs)]
            finally:
                worker.terminate()
                worker.wait(60)
    _print_worker(backend, size, samples)


def _timed_import(engine: sa.Engine, path: Path, pid: int) -> tuple[float, float]:
    start = time.perf_counter()
    import_once(engine, path)
    return time.perf_counter() - start, rss_mb(pid)


def _print_worker(backend: str, size: int, samples: list[tuple[float, float]]) -> None:
    marks = sorted(
        {1, WARM_RUNS, 25, 50, 100, 150, 175, len(samples)} & set(range(1, len(samples) + 1))
    )
    print(f"worker soak, {backend}: {len(samples)} csv_import runs of {size:,} rows")
    print("  RSS after run " + ", ".join(f"{n}: {samples[n - 1][1]:.1f}" for n in marks) + " MB")
    warm = samples[min(WARM_RUNS, len(samples)) - 1][1]
    growth = samples[-1][1] - warm
    peak = (
        max(rss for _, rss in samples[WARM_RUNS - 1 :]) - warm if len(samples) >= WARM_RUNS else 0
    )
    verdict = "ok" if growth <= GOAL_MB else "ABOVE GOAL"
    print(
        f"  growth after run {WARM_RUNS}: {growth:+.1f} MB (peak {peak:+.1f} MB), goal <= {GOAL_MB:.0f} MB:"
        f" ratio {growth / GOAL_MB:.2f} {verdict}; median run {_median([s for s, _ in samples]):.2f} s"
    )


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def soak_api(backend: str, postgres_url: str, minutes: float) -> None:
    """Print serve-api's RSS under polling and short feed connections, and its slope per minute."""
    with temp_database(backend, postgres_url) as engine:
        port = free_port()
        server = spawn(engine, "serve-api", "--port", str(port))
        try:
            samples = _poll_api(f"http://127.0.0.1:{port}", server.pid, minutes * 60)
        finally:
            server.terminate()
            server.wait(60)
    _print_api(backend, samples)


def _poll_api(url: str, pid: int, seconds: float) -> list[tuple[float, float]]:
    """Poll like a dashboard and a few feed readers would; sample RSS every SAMPLE_S seconds."""
    with httpx.Client(base_url=url, timeout=30) as http:
        _wait_up(http)
        start = next_sample = time.monotonic()
        samples: list[tuple[float, float]] = []
        while (now := time.monotonic()) - start < seconds:
            if now >= next_sample:
                samples.append((now - start, rss_mb(pid)))
                next_sample += SAMPLE_S
            for path in ("/api/etl/status", "/api/etl/logs?limit=10", "/health"):
                http.get(path).raise_for_status()
            with http.stream("GET", "/api/etl/logs/realtime", timeout=5) as feed:
                next(feed.iter_bytes(), b"")  # a short connection: connect, read, leave
            time.sleep(0.1)
        samples.append((time.monotonic() - start, rss_mb(pid)))
    return samples


def _wait_up(http: httpx.Client) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            http.get("/health")
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("serve-api did not start")


def _print_api(backend: str, samples: list[tuple[float, float]]) -> None:
    half = len(samples) // 2

    def slope(part: list[tuple[float, float]]) -> float:
        (t0, r0), (t1, r1) = part[0], part[-1]
        return (r1 - r0) / ((t1 - t0) / 60) if t1 > t0 else 0.0

    minutes = samples[-1][0] / 60
    print(f"serve-api soak, {backend}: {minutes:.1f} min of polling and short feed connections")
    print(
        "  RSS "
        + ", ".join(f"{t / 60:.1f} min: {r:.1f}" for t, r in samples[:: max(1, len(samples) // 8)])
        + " MB"
    )
    first, second = slope(samples[: half + 1]), slope(samples[half:])
    print(f"  growth per minute: first half {first:+.3f} MB, second half {second:+.3f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", choices=("worker", "api", "both"), default="both")
    parser.add_argument("--runs", type=int, default=200, help="imports (worker)")
    parser.add_argument("--size", type=int, default=200_000, help="rows per CSV (worker)")
    parser.add_argument("--minutes", type=float, default=9.0, help="polling time (api)")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    args = parser.parse_args()
    for backend in backends(args.backend):
        if args.what in ("worker", "both"):
            soak_worker(backend, args.postgres_url, args.runs, args.size)
        if args.what in ("api", "both"):
            soak_api(backend, args.postgres_url, args.minutes)


if __name__ == "__main__":
    main()
