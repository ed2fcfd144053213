"""Load and soak with real processes: the live feed, browser sessions on Home, memory over time.

    python -m bench.bench_load sse   [--clients 50] [--duration 120] [--rate 100]
    python -m bench.bench_load pages [--sessions 50] [--duration 120]
    python -m bench.bench_load soak  [--duration 600]
    python -m bench.bench_load       # all three, full length

Each creates and drops its own database (PostgreSQL on 127.0.0.1 by default; `--backend sqlite`)
and starts Runwatch's own processes on free loopback ports:

- sse: `runwatch serve-api` and a `runwatch worker` executing a demo run that writes about `--rate`
  progress events a second; `--clients` sseclient-py clients follow the feed for `--duration`
  seconds. Prints the commit-to-arrival delay (p50, p95 against 100 ms), the server's CPU and RSS
  every 10 s, and the feed reader's queries/s beside a round with one client (ratio ~1).
- pages: Streamlit (`bench.streamlit_probe`, which times every script run and counts queries) and
  a worker executing a long demo run; `--sessions` Playwright pages of one Chromium stay on Home
  (auto-refresh every 2 s) for `--duration` seconds. Prints the server's CPU (goal <= 1 core), the
  rerun time p50/p95 (goal <= 200 ms) and queries per 2-s tick beside a round with one session.
- soak: serve-api and one worker for `--duration` seconds of back-to-back runs (demo and
  csv_import, triggered over the API) with an SSE client and status polls; prints both processes'
  RSS every 15 s and its growth after the first minute (goal <= 10%).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import requests
import sqlalchemy as sa

from bench import DEFAULT_POSTGRES_URL, temp_database
from bench.bench_sse import FEED, Client, check_delivery, free_port, percentile, serve, until
from bench.procs import ROOT, Meter, runwatch, stop
from db.models import TERMINAL_STATUSES, Job
from db.queries import (
    create_run,
    get_run,
    last_event_id,
    list_events,
    read_session,
    request_cancel,
    save_job,
    write_session,
)
from db.settings import Settings
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS  # the browser the page tests use

SSE_GOAL_MS = 100.0
CPU_GOAL_CORES = 1.0
RERUN_GOAL_MS = 200.0
GROWTH_GOAL = 0.10
TICK_S = 2.0  # Home's refresh interval while a run is active
COMPLETED = ("SCRIPT_STOPPED_WITH_SUCCESS", "FRAGMENT_STOPPED_WITH_SUCCESS")  # a run that drew
BASELINE_S = 30.0  # the one-client / one-session round that the full round is compared with
PAGE_TIMEOUT_S = 60.0  # one page's first draw of Home; a slower page ends the opening
OPEN_BUDGET_S = 360.0  # all pages' opening: the round measures those open by then
SETTLE_S = 5.0  # after the last page opened, before the window
SLICE_S = 10.0  # progress lines and CPU samples
DRAWN = "next refresh in"  # Home's last line: its first script run is complete
ENDED = {str(status) for status in TERMINAL_STATUSES}


def url_of(engine: sa.Engine) -> str:
    """The engine's URL with its password, for child processes."""
    return engine.url.render_as_string(hide_password=False)


def verdict(value: float, goal: float) -> str:
    """`value` beside `goal` as a ratio, and whether it is met."""
    return f"goal {goal:g}   ratio {value / goal:6.3f}  {'ok' if value <= goal else 'ABOVE GOAL'}"


def start_long_run(engine: sa.Engine, params: dict[str, Any], job: str = "demo") -> int:
    """Enqueue a demo-kind run (for the benchmark's workers) that lasts until cancelled."""
    with write_session(engine) as session:
        run = create_run(session=session, job=job, params={"total": 10**9, **params})
    assert run.id is not None
    return run.id


def cancel(engine: sa.Engine, run_ids: list[int]) -> None:
    """Ask the runs to stop after their batch and wait until they have."""
    with write_session(engine) as session:
        for run_id in run_ids:
            request_cancel(session=session, run_id=run_id)
    for run_id in run_ids:
        until(lambda run_id=run_id: status_of(engine, run_id) in ENDED, "the runs to stop", 120)


def status_of(engine: sa.Engine, run_id: int) -> str:
    """The run's status now."""
    with read_session(engine) as session:
        return str(get_run(session=session, run_id=run_id, fresh=True).status)


# ---------------------------------------------------------------- sse: item 3


WRITERS = 4  # runs writing at once: one alone waits on each commit's WAL flush between events


def writer_jobs(engine: sa.Engine) -> list[str]:
    """Demo-kind jobs, one per writing run (a job has one active run at a time)."""
    names = [f"load_{n}" for n in range(WRITERS)]
    with write_session(engine) as session:
        for name in names:
            save_job(session=session, job=Job(name=name, title=name, kind="demo", params={}))
    return names


def sse_round(
    engine: sa.Engine, api: str, clients: int, seconds: float, rate: float, meter: Meter | None
) -> dict[str, Any]:
    """`clients` clients on the feed while runs write ~`rate` events/s for `seconds`."""
    with read_session(engine) as session:
        start = last_event_id(session=session)
    subscribers = [Client(f"{api}{FEED}", runs=WRITERS) for _ in range(clients)]
    for subscriber in subscribers:
        subscriber.start()
    until(lambda: feed_stats(api)["subscribers"] >= clients, "the clients to connect", 120)
    before, began = feed_queries(api), time.monotonic()
    if meter:
        meter.start()
    pace = {"batch_size": 10, "delay_ms": int(1000 * WRITERS / rate)}
    runs = [start_long_run(engine, pace, job) for job in writer_jobs(engine)]
    time.sleep(seconds)
    cancel(engine, runs)
    for subscriber in subscribers:
        subscriber.join(120)
    elapsed = time.monotonic() - began
    if meter:
        meter.stop()
    with read_session(engine) as session:
        events = list_events(session=session, after_id=start, limit=None)
    queries = feed_queries(api) - before
    return {"clients": subscribers, "events": events, "queries": queries, "seconds": elapsed}


def feed_stats(api: str) -> dict[str, Any]:
    """The serve-api process's feed counters."""
    return dict(httpx.get(f"{api}{FEED}/stats", timeout=30).json())


def feed_queries(api: str) -> int:
    """Database queries the feed made so far: its reader's and clients' catch-up reads."""
    stats = feed_stats(api)
    return int(stats["reader_queries"]) + int(stats["catchup_queries"])


def bench_sse_load(options: argparse.Namespace) -> None:
    """Item 3: the live feed under `--clients` clients for `--duration` seconds."""
    with temp_database(options.backend, options.postgres_url) as engine:
        port = free_port()
        api_url = f"http://127.0.0.1:{port}"
        server = serve(url_of(engine), port)
        workers = [
            runwatch(url_of(engine), "worker", RUNWATCH_PROGRESS_INTERVAL_S="0")
            for _ in range(WRITERS)
        ]
        meter = Meter(server.pid, every=10)
        try:
            one = sse_round(
                engine, api_url, 1, min(BASELINE_S, options.duration), options.rate, None
            )
            many = sse_round(
                engine, api_url, options.clients, options.duration, options.rate, meter
            )
        finally:
            for worker in workers:
                stop(worker)
            stop(server)
    report_sse(options, one, many, meter)


def report_sse(
    options: argparse.Namespace, one: dict[str, Any], many: dict[str, Any], meter: Meter
) -> None:
    """Print item 3's figures."""
    delays = check_delivery(many)
    check_delivery(one)
    tag, events = f"[sse {options.backend}]", len(many["events"])
    print(
        f"{tag} {options.clients} clients x {many['seconds']:.0f} s: each got all {events}"
        f" events once, in order ({events / many['seconds']:.0f} events/s written)"
    )
    for name, share in (("p50", 0.5), ("p95", 0.95)):
        print(f"{tag} commit-to-arrival {name} {percentile(delays, share):8.1f} ms", end="")
        print(f"   {verdict(percentile(delays, share), SSE_GOAL_MS)}" if name == "p95" else "")
    print(f"{tag} max {max(delays):.1f} ms")
    print(f"{tag} serve-api CPU {meter.mean_cores():.2f} cores; every 10 s: {meter.series()}")
    # the reader wakes once per notified commit, so its queries follow the events, not the clients
    per = [r["queries"] / max(len(r["events"]), 1) * 100 for r in (one, many)]
    print(
        f"{tag} feed queries: {many['queries'] / many['seconds']:.1f}/s with {options.clients}"
        f" clients, {one['queries'] / one['seconds']:.1f}/s with 1; per 100 events written"
        f" {per[1]:.1f} vs {per[0]:.1f}   {verdict(per[1] / per[0], 1.5)}"
    )


# ---------------------------------------------------------------- pages: item 4


def start_streamlit(database_url: str, port: int, log: Path, profile: str = "") -> Any:
    """Streamlit with the probe on `port` (no in-process worker: the benchmark's worker runs);
    with `profile`, the probe writes the script runs' cProfile statistics there when it stops."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RUNWATCH_")},
        "RUNWATCH_DATABASE_URL": database_url,
        "RUNWATCH_WORKER_ENABLED": "false",
        "RUNWATCH_PROBE_LOG": str(log),
        "RUNWATCH_PROBE_PROFILE": profile,
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    }
    options = ["--server.headless", "true", "--server.address", "127.0.0.1"]
    command = [sys.executable, "-m", "bench.streamlit_probe", "Home.py", *options]
    process = subprocess.Popen(
        [*command, "--server.port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    until(lambda: _healthy(f"http://127.0.0.1:{port}"), "Streamlit to start", 120)
    return process


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/_stcore/health", timeout=5).text.strip() == "ok"
    except httpx.TransportError:
        return False


def reruns(log: Path, since: float, until_ts: float) -> list[tuple[float, float, str, int]]:
    """The probe's script runs that ended in [since, until_ts): (time, seconds, ending, queries)."""
    return [
        (float(at), float(took), ending, int(queries))
        for at, took, ending, queries in _logged(log, since, until_ts)
    ]


def collections(log: Path, since: float, until_ts: float) -> list[tuple[float, int]]:
    """The probe's passes of the garbage collector in [since, until_ts): (seconds, generation)."""
    gc_log = log.with_name(log.name + ".gc")
    return [(float(took), int(gen)) for _, took, gen in _logged(gc_log, since, until_ts)]


def _logged(path: Path, since: float, until_ts: float) -> list[list[str]]:
    """The fields of each line of a probe log whose first field, a Unix time, is in [since, until_ts)."""
    lines = (line.split() for line in path.read_text().splitlines())
    return [fields for fields in lines if since <= float(fields[0]) < until_ts]


def say(text: str) -> None:
    """Print a line at once: a long benchmark shows where it is while it runs."""
    print(text, flush=True)


@dataclass
class PagesRound:
    """What one round of pages measured (as far as it got)."""

    asked: int  # sessions asked for
    loads: list[float] = field(default_factory=list)  # seconds each open page took to draw Home
    reruns: list[tuple[float, float, str, int]] = field(default_factory=list)
    collections: list[tuple[float, int]] = field(default_factory=list)  # the server's GC passes
    seconds: float = 0.0  # length of the measured window
    failure: str = ""  # why fewer pages were opened than asked, if so

    def done(self) -> list[float]:
        """Milliseconds of each script run that completed in the window: the whole page's, or
        only a fragment's (a tick of Home reruns only its live board)."""
        return [row[1] * 1000 for row in self.reruns if row[2] in COMPLETED]


def open_pages(context: Any, url: str, result: PagesRound, pages: list[Any], tag: str) -> None:
    """Open up to `result.asked` pages on Home one after another into `pages`, each waited for
    until its first script run has drawn the page; stop at the first slower than PAGE_TIMEOUT_S."""
    from playwright.sync_api import Error as PlaywrightError

    began = time.monotonic()
    for n in range(1, result.asked + 1):
        if time.monotonic() - began > OPEN_BUDGET_S:
            result.failure = f"stopped opening pages after {OPEN_BUDGET_S:.0f} s"
            break
        page, start = context.new_page(), time.monotonic()
        pages.append(page)
        try:
            page.goto(url, wait_until="commit", timeout=PAGE_TIMEOUT_S * 1000)
            left = PAGE_TIMEOUT_S - (time.monotonic() - start)
            page.get_by_text(DRAWN).first.wait_for(timeout=max(left, 1) * 1000)
        except PlaywrightError as error:
            result.failure = f"page {n} did not draw Home within {PAGE_TIMEOUT_S:.0f} s"
            say(f"{tag} {result.failure}: {str(error).splitlines()[0]}")
            break
        result.loads.append(time.monotonic() - start)
        if n in (1, result.asked) or n % 5 == 0:
            say(
                f"{tag} page {n}/{result.asked} drew Home in {result.loads[-1]:.1f} s"
                f" ({time.monotonic() - began:.0f} s since the first)"
            )


def measure(
    log: Path, result: PagesRound, seconds: float, meters: dict[str, Meter], tag: str
) -> None:
    """Collect the probe's script runs for `seconds`, saying every SLICE_S what the last slice saw."""
    for meter in meters.values():
        meter.start()
    began = time.time()
    try:
        while (left := began + seconds - time.time()) > 0:
            start = time.time()
            time.sleep(min(SLICE_S, left))
            times = PagesRound(0, reruns=reruns(log, start, time.time())).done()
            cpu = "  ".join(  # each meter's latest reading of its own 10 s
                f"{name} {m.samples[-1].cores:.2f} cores"
                for name, m in meters.items()
                if len(m.samples) > 1
            )
            say(
                f"{tag} {time.time() - began:4.0f} s: {len(times)} reruns, p50 {percentile(times, 0.5) if times else 0:.0f} ms,"
                f" p95 {percentile(times, 0.95) if times else 0:.0f} ms   {cpu}"
            )
    finally:
        result.seconds = time.time() - began
        result.reruns = reruns(log, began, time.time())
        result.collections = collections(log, began, time.time())
        for meter in meters.values():
            meter.stop()


def pages_round(
    browser: Any, url: str, log: Path, result: PagesRound, seconds: float, meters: dict[str, Meter]
) -> None:
    """`result.asked` pages on Home for `seconds` (or as many as would open): the probe's reruns."""
    tag = f"[pages {result.asked}]"
    context = browser.new_context()  # its pages share one HTTP cache; each page is its own session
    pages: list[Any] = []
    try:
        open_pages(context, url, result, pages, tag)
        opened = len(result.loads)
        if not opened:
            return
        say(f"{tag} {opened} pages open; measuring for {seconds:.0f} s")
        time.sleep(SETTLE_S)  # every session past its first script run
        measure(log, result, seconds, meters, tag)
    finally:
        for page in pages:
            page.close()
        context.close()


def bench_pages(options: argparse.Namespace) -> None:
    """Item 4: `--sessions` browser sessions on Home with auto-refresh while a run is active."""
    from playwright.sync_api import sync_playwright

    one, many = PagesRound(1), PagesRound(options.sessions)
    meters: dict[str, Meter] = {}
    say(f"[pages] load average at the start: {load_average()}")
    try:
        with (
            temp_database(options.backend, options.postgres_url) as engine,
            tempfile.TemporaryDirectory(prefix="runwatch-bench-") as folder,
        ):
            log, port = Path(folder) / "reruns.log", free_port()
            log.touch()
            worker = runwatch(url_of(engine), "worker")
            run_id = start_long_run(engine, {"batch_size": 100, "delay_ms": 50})
            app = start_streamlit(url_of(engine), port, log, options.profile)
            try:
                with sync_playwright() as playwright:
                    browser = playwright.chromium.launch(
                        executable_path=CHROMIUM, args=CHROMIUM_ARGS
                    )
                    url = f"http://127.0.0.1:{port}/"
                    pages_round(browser, url, log, one, min(BASELINE_S, options.duration), {})
                    meters = {
                        "Streamlit": Meter(app.pid, SLICE_S),
                        "Chromium": Meter(os.getpid(), SLICE_S, named="chrom"),
                    }
                    pages_round(browser, url, log, many, options.duration, meters)
                    browser.close()
                cancel(engine, [run_id])
            finally:
                stop(app)
                stop(worker)
    finally:
        report_pages(options, one, many, meters)


def load_average() -> str:
    """The machine's 1-, 5- and 15-minute load averages."""
    return " / ".join(f"{load:.2f}" for load in os.getloadavg())


def report_pages(
    options: argparse.Namespace, one: PagesRound, many: PagesRound, meters: dict[str, Meter]
) -> None:
    """Print item 4's figures, as far as the rounds got."""
    tag = f"[pages {options.backend}]"
    opened = len(many.loads)
    say(f"{tag} load average at the end: {load_average()}")
    if many.failure:
        say(f"{tag} only {opened} of {options.sessions} pages: {many.failure}")
    if many.loads:
        say(
            f"{tag} first draw of a page: p50 {percentile(many.loads, 0.5):.1f} s,"
            f" max {max(many.loads):.1f} s"
        )
    times = many.done()
    if not times:
        say(f"{tag} no script run completed while {opened} sessions were open")
        return
    asked = opened / TICK_S
    say(
        f"{tag} {opened} sessions x {many.seconds:.0f} s: {len(times)} reruns"
        f" ({len(times) / many.seconds:.1f}/s of the {asked:.1f}/s the pages' refresh asks for;"
        f" {len(many.reruns) - len(times)} cut short)"
    )
    for name, meter in meters.items():
        summed = " (RSS summed over its processes: shared pages count in each)" * bool(meter.named)
        say(
            f"{tag} {name} CPU {meter.mean_cores():.2f} cores; every {SLICE_S:g} s{summed}:"
            f" {meter.series()}"
        )
    server = meters["Streamlit"].mean_cores()
    say(
        f"{tag} Streamlit CPU {server:.2f} cores ({server * many.seconds / len(times) * 1000:.0f} ms"
        f" per rerun)   {verdict(server, CPU_GOAL_CORES)}"
    )
    whole = [row[1] * 1000 for row in many.reruns if row[2] == "SCRIPT_STOPPED_WITH_SUCCESS"]
    say(
        f"{tag} of them {len(times) - len(whole)} of the live board alone and {len(whole)} of the"
        f" whole page (p50 {percentile(whole, 0.5) if whole else 0:.1f} ms)"
    )
    say(f"{tag} rerun p50 {percentile(times, 0.5):.1f} ms")
    p95 = percentile(times, 0.95)
    say(f"{tag} rerun p95 {p95:.1f} ms   {verdict(p95, RERUN_GOAL_MS)}")
    report_collections(tag, many)
    report_queries(tag, opened, one, many)


def report_collections(tag: str, many: PagesRound) -> None:
    """The server's garbage-collector passes in the window: each holds the GIL, so every rerun
    under way waits for it; the full ones (generation 2) are what the p95 meets."""
    for generation, name in ((2, "full"), (1, "generation 1")):
        pauses = [took * 1000 for took, g in many.collections if g == generation]
        if pauses:
            say(
                f"{tag} GC {name} passes: {len(pauses)}, p50 {percentile(pauses, 0.5):.0f} ms,"
                f" max {max(pauses):.0f} ms, {sum(pauses) / 1000:.1f} s in all"
            )


def report_queries(tag: str, opened: int, one: PagesRound, many: PagesRound) -> None:
    """Queries per tick with `opened` sessions beside one session."""
    per_tick = [queries_per_tick(r.reruns) for r in (one, many)]
    ratio = per_tick[1] / per_tick[0] if per_tick[0] else float("inf")
    # the tick's reads are cached for the TTL and shared: at most TICK_S / TTL refills per tick,
    # however many sessions ask (one session alone refills once per tick)
    bound = max(1.0, TICK_S / Settings.model_fields["cache_ttl_s"].default)
    say(
        f"{tag} queries per {TICK_S:g}-s tick: {opened} sessions {per_tick[1]:.1f},"
        f" 1 session {per_tick[0]:.1f}; ratio {ratio:.2f} (bound {bound:g} refills)"
        f"   {verdict(ratio, bound)}"
    )


def queries_per_tick(rows: list[tuple[float, float, str, int]]) -> float:
    """Database queries of the server per refresh tick, over a round's script runs."""
    if len(rows) < 2:
        return 0.0
    span = rows[-1][0] - rows[0][0]
    return (rows[-1][3] - rows[0][3]) / span * TICK_S if span else 0.0


# ---------------------------------------------------------------- soak: item 5


class Follower(threading.Thread):
    """One SSE client reading the whole feed until `stop()` (it only counts the events)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.events, self.stopping = url, 0, threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                with requests.get(self.url, stream=True, timeout=(10, 60)) as response:
                    for line in response.iter_lines():
                        self.events += line.startswith(b"id:")
                        if self.stopping.is_set():
                            return
            except requests.RequestException:
                time.sleep(1)

    def stop(self) -> None:
        """Stop at the next line (a keep-alive comes at least every 15 s)."""
        self.stopping.set()


def soak_jobs(engine: sa.Engine, folder: Path) -> dict[str, dict[str, Any]]:
    """A csv_import job of a 5,000-row file beside the demo job; each job's run parameters."""
    path = folder / "soak.csv"
    path.write_text("id,name,amount\n" + "".join(f"{i},n{i},{i}.5\n" for i in range(5000)))
    params = {"path": str(path), "table": "soak_rows", "key": "id", "batch_size": 500}
    with write_session(engine) as session:
        save_job(
            session=session,
            job=Job(name="soak_csv", title="soak", kind="csv_import", params=params),
        )
    return {"demo": {"total": 3000, "batch_size": 100, "delay_ms": 5}, "soak_csv": {}}


def keep_busy(api: str, jobs: dict[str, dict[str, Any]], seconds: float) -> int:
    """Trigger each job again whenever it is idle, and poll its status, for `seconds`; runs started."""
    started, deadline = 0, time.monotonic() + seconds
    with httpx.Client(base_url=api, timeout=30) as client:
        while time.monotonic() < deadline:
            for job, params in jobs.items():
                answer = client.post("/api/etl/trigger", json={"job": job, "params": params})
                started += answer.status_code == 202
                client.get("/api/etl/status", params={"job": job})
            time.sleep(0.5)
    return started


def bench_soak(options: argparse.Namespace) -> None:
    """Item 5: serve-api and one worker under back-to-back runs; their RSS growth."""
    with (
        temp_database(options.backend, options.postgres_url) as engine,
        tempfile.TemporaryDirectory(prefix="runwatch-bench-") as folder,
    ):
        jobs = soak_jobs(engine, Path(folder))
        port = free_port()
        server = serve(url_of(engine), port)
        worker = runwatch(url_of(engine), "worker")
        meters = {
            "serve-api": Meter(server.pid, 15).start(),
            "worker": Meter(worker.pid, 15).start(),
        }
        follower = Follower(f"http://127.0.0.1:{port}{FEED}")
        follower.start()
        try:
            started = keep_busy(f"http://127.0.0.1:{port}", jobs, options.duration)
        finally:
            follower.stop()
            for meter in meters.values():
                meter.stop()
            stop(worker)
            stop(server)
    tag = f"[soak {options.backend}]"
    print(
        f"{tag} {options.duration:.0f} s: {started} runs triggered over the API,"
        f" {follower.events} events followed"
    )
    for name, meter in meters.items():
        report_growth(f"{tag} {name}", meter)


def report_growth(tag: str, meter: Meter) -> None:
    """Print one process's RSS series and its growth after the first minute."""
    samples = meter.samples
    warm = next((s for s in samples if s.at >= 60), samples[0])
    growth = samples[-1].rss / warm.rss - 1
    print(
        f"{tag} RSS {samples[0].rss:.0f} MB at start, {warm.rss:.0f} MB after {warm.at:.0f} s,"
        f" {samples[-1].rss:.0f} MB at {samples[-1].at:.0f} s: growth {growth:+.1%}"
        f"   {verdict(max(growth, 0.0), GROWTH_GOAL)}"
    )
    print(f"{tag} every 15 s: {meter.series()}")


# ---------------------------------------------------------------- command line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="postgres")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    commands = parser.add_subparsers(dest="command")
    sse = commands.add_parser("sse", help="item 3: SSE clients while runs write events")
    sse.add_argument("--clients", type=int, default=50)
    sse.add_argument("--duration", type=float, default=120.0, help="seconds")
    sse.add_argument("--rate", type=float, default=100.0, help="events per second to write")
    pages = commands.add_parser("pages", help="item 4: browser sessions on Home")
    pages.add_argument("--sessions", type=int, default=50)
    pages.add_argument("--duration", type=float, default=120.0, help="seconds")
    pages.add_argument(
        "--profile", default="", help="write the script runs' cProfile statistics to this file"
    )
    soak = commands.add_parser("soak", help="item 5: memory of serve-api and a worker")
    soak.add_argument("--duration", type=float, default=600.0, help="seconds")
    options = parser.parse_args()
    benches = {"sse": bench_sse_load, "pages": bench_pages, "soak": bench_soak}
    for name in [options.command] if options.command else list(benches):
        if not options.command:  # all three, each with its defaults
            options = parser.parse_args([*sys.argv[1:], name])
        benches[name](options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
