"""`GET /metrics`: Prometheus' text format, read from the database when scraped.

Nothing is counted in this process: a collector reads the health snapshot (reports.health) and one
aggregate of the run table at scrape time, so every serve-api process answers the same figures,
restarts lose nothing and counters only ever grow with the history. Only the live-feed clients are
this process's own.
"""

from __future__ import annotations

from collections.abc import Iterator

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from api.auth import AUTH_ERRORS, caller_of
from api.feed import open_streams
from db.models import RunStatus, WorkerState
from db.queries import RunTotals, read_session, run_totals
from db.settings import Settings
from reports.health import AlertChannel, HealthReport, health_report

# upper bounds of the run duration histogram, in seconds: from a quick import to a long nightly
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)

# a scraper signs in like any client: `authorization: {credentials: <token>}` in its scrape config
router = APIRouter(tags=["health"], dependencies=[Depends(caller_of)], responses=AUTH_ERRORS)


class RunwatchCollector:
    """Runwatch's metrics, read at each scrape (a prometheus_client custom collector)."""

    def __init__(self, engine: sa.Engine, settings: Settings) -> None:
        self.engine, self.settings = engine, settings

    def describe(self) -> list[Metric]:
        """Nothing: registering the collector must not read the database."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Every family; a database that does not answer leaves only `runwatch_database_up 0`
        and the live-feed clients."""
        health = health_report(self.engine, self.settings)
        yield gauge(
            "runwatch_database_up",
            "1 when the database answers, else 0.",
            int(health.database.reachable),
        )
        yield gauge(
            "runwatch_sse_clients", "Live feed (SSE) streams open on this process.", open_streams()
        )
        if not health.database.reachable:
            return
        yield from health_families(health)
        with read_session(self.engine) as session:
            totals = run_totals(session=session, bounds=DURATION_BUCKETS)
        yield from run_families(totals)
        yield from alert_families(health.alert_channels)


def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    """A gauge without labels."""
    return GaugeMetricFamily(name, documentation, value=value)


def health_families(health: HealthReport) -> Iterator[Metric]:
    """The database's round trip, the workers by state, the queue and the scheduler's last tick."""
    assert health.database.round_trip_ms is not None and health.queue is not None
    yield gauge(
        "runwatch_database_round_trip_seconds",
        "One trivial statement's round trip, as the health check measured it.",
        health.database.round_trip_ms / 1000,
    )
    workers = GaugeMetricFamily(
        "runwatch_workers",
        f"Registered workers by state (lost: no heartbeat for {health.lost_after_s:g} s).",
        labels=["state"],
    )
    for state in WorkerState:
        workers.add_metric([state.value], health.count(state))
    yield workers
    yield gauge("runwatch_queue_depth", "Runs pending, waiting for a worker.", health.queue.depth)
    yield gauge(
        "runwatch_queue_oldest_age_seconds",
        "How long the oldest pending run has waited (0 when none waits).",
        health.queue.oldest_age_s or 0.0,
    )
    if health.scheduler_last_tick is not None:
        yield gauge(
            "runwatch_scheduler_last_tick_timestamp_seconds",
            "When any worker's scheduler last looked for due jobs (Unix time).",
            health.scheduler_last_tick.timestamp(),
        )


def run_families(totals: list[RunTotals]) -> Iterator[Metric]:
    """Runs by job and status, records loaded per job and the duration histogram of finished runs."""
    runs = GaugeMetricFamily(
        "runwatch_runs",
        "Runs by job and status, all time (pending and running: those active now).",
        labels=["etl_job", "status"],
    )
    loaded = CounterMetricFamily(
        "runwatch_records_loaded", "Records loaded by the runs of each job.", labels=["etl_job"]
    )
    durations = HistogramMetricFamily(
        "runwatch_run_duration_seconds",
        "Duration of finished runs, from start to end.",
        labels=["etl_job"],
    )
    records: dict[str, int] = {}
    for total in totals:
        runs.add_metric([total.job, total.status], total.runs)
        records[total.job] = records.get(total.job, 0) + total.records_loaded
        if total.status == RunStatus.FINISHED:
            buckets = [
                (str(float(bound)), count)
                for bound, count in zip(DURATION_BUCKETS, total.buckets, strict=True)
            ]
            buckets.append(("+Inf", total.durations))
            durations.add_metric([total.job], buckets, sum_value=total.duration_sum)
    for job, count in sorted(records.items()):
        loaded.add_metric([job], count)
    yield from (runs, loaded, durations)


def alert_families(channels: tuple[AlertChannel, ...]) -> Iterator[Metric]:
    """Alert deliveries per channel and outcome; absent while no alert channel is configured."""
    if not channels:
        return
    deliveries = CounterMetricFamily(
        "runwatch_alert_deliveries",
        "Alert deliveries per channel, delivered or failed.",
        labels=["channel", "outcome"],
    )
    for channel in channels:
        deliveries.add_metric([channel.name, "delivered"], channel.delivered)
        deliveries.add_metric([channel.name, "failed"], channel.failed)
    yield deliveries


def metrics_registry(engine: sa.Engine, settings: Settings) -> CollectorRegistry:
    """A registry of Runwatch's collector and this process's CPU and memory (`process_*`)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunwatchCollector(engine, settings))
    ProcessCollector(registry=registry)
    return registry


@router.get(
    "/metrics",
    summary="Metrics in Prometheus' text format",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format 0.0.4."}
    },
)
def metrics(request: Request) -> Response:
    """Runs by status, run durations, queue, records loaded, workers, SSE clients, alert deliveries."""
    registry: CollectorRegistry = request.app.state.metrics
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_PLAIN_0_0_4)
