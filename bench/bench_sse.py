"""Live feed under load: 50 sseclient-py clients while a demo run emits 2,000 events.

    python -m bench.bench_sse [--size 2000] [--clients 50] [--backend sqlite|postgres|both]

For each backend it serves the API (`runwatch serve-api`, its own process) on a fresh database,
connects `--clients` sseclient-py clients (threads of this process) to the feed, and has another
process execute a demo run that writes `--size` progress events. It checks that every client
received every event, once and in order, and prints the delay from each event's commit (its `ts`)
to its arrival: p50, p95 and max against the goal (p95 under 300 ms on SQLite, 100 ms on
PostgreSQL). Then it repeats the run with one client and prints the feed reader's database queries
per second with 1 and with `--clients` clients: the ratio should stay near 1.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import requests
import sqlalchemy as sa
from sseclient import SSEClient

from bench import DEFAULT_POSTGRES_URL, backends, temp_database
from db.engine import make_engine
from db.models import TERMINAL_STATUSES, RunStatus
from db.queries import create_run, last_event_id, list_events, read_session, write_session
from db.settings import get_settings
from etl.runner import Runner

ROOT = Path(__file__).resolve().parent.parent
GOALS_MS = {"sqlite": 300.0, "postgres": 100.0}
FEED = "/api/etl/logs/realtime"
WAIT_S = 600.0
ENDED = {str(status) for status in TERMINAL_STATUSES}


class Client(threading.Thread):
    """One sseclient-py subscriber: records (event id, arrival time) until the run(s) end."""

    def __init__(self, url: str, runs: int = 1) -> None:
        super().__init__(daemon=True)
        self.url, self.runs = url, runs  # it stops once `runs` runs have ended
        self.arrivals: list[tuple[int, float]] = []
        self.error: str | None = None

    def run(self) -> None:
        try:
            response = requests.get(self.url, stream=True, timeout=(10, WAIT_S))
            for event in SSEClient(response.iter_content(chunk_size=None)).events():
                self.arrivals.append((int(event.id), time.time()))
                if event.event == "run" and json.loads(event.data)["status"] in ENDED:
                    self.runs -= 1
                    if not self.runs:
                        break
            response.close()
        except Exception as error:  # reported beside the figures
            self.error = repr(error)


def emit(database_url: str, size: int) -> None:
    """(Child process) execute a demo run writing one progress event per batch of 10 records."""
    engine = make_engine(database_url)
    settings = get_settings().model_copy(update={"progress_interval_s": 0.0})
    params = {"total": size * 10, "batch_size": 10, "delay_ms": 2}
    with write_session(engine) as session:
        run = create_run(session=session, job="demo", params=params, status=RunStatus.RUNNING)
    ended = Runner(engine, settings).execute(run)
    if ended.status != RunStatus.FINISHED:
        raise SystemExit(f"demo run ended {ended.status}: {ended.error_message}")


def serve(database_url: str, port: int) -> subprocess.Popen[bytes]:
    """`runwatch serve-api` on `port`, once /health answers."""
    env = {**os.environ, "RUNWATCH_DATABASE_URL": database_url}
    command = [sys.executable, "-m", "etl", "serve-api", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    until(lambda: _answers(f"http://127.0.0.1:{port}/health"), "the API to start")
    return process


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code < 500
    except httpx.TransportError:
        return False


def until(check: Any, what: str, timeout: float = WAIT_S) -> Any:
    """Poll `check` until truthy and return that; exit naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.05)
    raise SystemExit(f"gave up waiting for {what}")


def _stats(api: str) -> dict[str, Any]:
    return dict(httpx.get(f"{api}{FEED}/stats", timeout=30).json())


def one_round(engine: sa.Engine, api: str, clients: int, size: int) -> dict[str, Any]:
    """Connect `clients` clients, run the demo in another process; arrivals, queries/s, ids."""
    with read_session(engine) as session:
        start = last_event_id(session=session)
    subscribers = [Client(f"{api}{FEED}?job=demo") for _ in range(clients)]
    for subscriber in subscribers:
        subscriber.start()
    until(lambda: _stats(api)["subscribers"] >= clients, "the clients to connect")
    before, began = _stats(api)["reader_queries"], time.monotonic()
    url = engine.url.render_as_string(hide_password=False)
    code = "from bench.bench_sse import emit; import sys; emit(sys.argv[1], int(sys.argv[2]))"
    subprocess.run([sys.executable, "-c", code, url, str(size)], cwd=ROOT, check=True)
    for subscriber in subscribers:
        subscriber.join(WAIT_S)
    queries_per_s = (_stats(api)["reader_queries"] - before) / (time.monotonic() - began)
    with read_session(engine) as session:
        events = list_events(session=session, after_id=start, limit=None)
    return {"clients": subscribers, "events": events, "queries_per_s": queries_per_s}


def percentile(values: list[float], share: float) -> float:
    """The value below which `share` of `values` fall (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def check_delivery(result: dict[str, Any]) -> list[float]:
    """Delays in ms of every arrival; exits when a client missed, repeated or reordered an event."""
    committed = {event.id: event.ts.timestamp() for event in result["events"]}
    expected = sorted(committed)
    delays = []
    for client in result["clients"]:
        ids = [event_id for event_id, _ in client.arrivals]
        if client.error or ids != expected:
            raise SystemExit(f"a client got {len(ids)} of {len(expected)} events: {client.error}")
        delays += [(arrived - committed[i]) * 1000 for i, arrived in client.arrivals]
    return delays


def bench_backend(backend: str, postgres_url: str, size: int, clients: int, port: int) -> None:
    """Both rounds on one backend; prints the figures."""
    with temp_database(backend, postgres_url) as engine:
        server = serve(engine.url.render_as_string(hide_password=False), port)
        try:
            many = one_round(engine, f"http://127.0.0.1:{port}", clients, size)
            one = one_round(engine, f"http://127.0.0.1:{port}", 1, size)
        finally:
            server.terminate()  # open streams hold uvicorn's graceful shutdown: kill after a while
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(15)
    delays = check_delivery(many)
    check_delivery(one)
    events = len(many["events"])
    print(f"[{backend}] {clients} clients each received all {events} events, in order, once")
    goal = GOALS_MS[backend]
    for name, value in (
        ("p50", percentile(delays, 0.5)),
        ("p95", percentile(delays, 0.95)),
        ("max", max(delays)),
    ):
        verdict = f"  goal: {'ok' if value <= goal else 'ABOVE GOAL'}" if name == "p95" else ""
        print(
            f"[{backend}] commit-to-arrival {name:<4} {value:8.1f} ms   goal {goal:6.1f} ms"
            f"   ratio {value / goal:6.3f}{verdict}"
        )
    ratio = many["queries_per_s"] / one["queries_per_s"] if one["queries_per_s"] else 0.0
    print(
        f"[{backend}] reader queries/s   {clients} clients {many['queries_per_s']:7.1f}"
        f"   1 client {one['queries_per_s']:7.1f}   ratio {ratio:6.3f}"
        f"  goal <= 1.50: {'ok' if ratio <= 1.5 else 'ABOVE GOAL'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2000, help="progress events the run writes")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    options = parser.parse_args()
    for backend in backends(options.backend):
        bench_backend(backend, options.postgres_url, options.size, options.clients, free_port())
    return 0


if __name__ == "__main__":
    sys.exit(main())
