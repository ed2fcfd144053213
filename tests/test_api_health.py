"""`/api/health/details` and `/metrics` on a real uvicorn server, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from api.app import create_app
from db.engine import make_engine
from db.models import utcnow
from db.queries import beat_worker, register_worker, write_session
from db.settings import Settings
from tests.apiserver import running_app
from tests.factories import make_run
from tests.pages import DOWN_URL

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def history(engine: sa.Engine) -> None:
    """Three finished demo runs (2 s, 40 s, 100 s), a failed csv_import, a pending demo run, a live
    worker holding nothing and a worker silent for a minute."""
    start, now = utcnow() - timedelta(hours=1), utcnow()
    with write_session(engine) as session:
        for seconds, loaded in ((2, 100), (40, 200), (100, 300)):
            ended = start + timedelta(seconds=seconds)
            make_run(session, started_at=start, ended_at=ended, records_loaded=loaded)
        make_run(session, job="csv_import", status="failed", records_loaded=7)
        make_run(
            session,
            status="pending",
            started_at=now - timedelta(seconds=30),
            ended_at=None,
            records_loaded=0,
            offset=0,
        )
        register_worker(session=session, name="a:1:worker:1", kind="worker", host="a", pid=1)
        tick = now - timedelta(seconds=3)
        lost = register_worker(
            session=session,
            name="b:2:worker:2",
            kind="worker",
            host="b",
            pid=2,
            now=now - timedelta(minutes=1),
        )
        beat_worker(
            session=session,
            worker_id=lost,
            run_id=None,
            scheduler_tick=tick,
            now=now - timedelta(minutes=1),
        )


def samples(text: str) -> dict[str, list[Sample]]:
    """Each metric family's samples, by family name, parsed as Prometheus parses the text."""
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(
    found: dict[str, list[Sample]], family: str, name: str | None = None, **labels: str
) -> float:
    """The value of the one sample of `family` named `name` (the family's own by default) with these labels."""
    matches = [
        s
        for s in found[family]
        if s.name == (name or family) and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(matches) == 1, (family, name, labels, found[family])
    return matches[0].value


def test_health_details_lists_workers_queue_and_says_no_alert_channels(
    client: httpx.Client, history: None, settings: Settings
) -> None:
    answer = client.get("/api/health/details")
    assert answer.status_code == 200
    details = answer.json()
    assert details["status"] == "ok" and details["database"]["reachable"]
    assert 0 < details["database"]["round_trip_ms"] < 5000
    assert (details["workers_live"], details["workers_lost"], details["workers_stopped"]) == (
        1,
        1,
        0,
    )
    assert [(w["host"], w["pid"], w["state"]) for w in details["workers"]] == [
        ("a", 1, "live"),
        ("b", 2, "lost"),
    ]
    assert details["lost_after_s"] == settings.worker_lost_after_s
    assert details["queue"]["depth"] == 1 and 29 < details["queue"]["oldest_age_s"] < 120
    assert details["scheduler_last_tick"] is not None
    assert details["alerts"] == {"summary": "No alert channels configured.", "channels": []}


def test_health_details_is_in_the_openapi_schema(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "HealthDetails" in str(paths["/api/health/details"]["get"]["responses"]["200"])
    assert "/metrics" in paths


def test_metrics_parse_as_prometheus_text_with_every_family(
    client: httpx.Client, history: None
) -> None:
    answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith(
        "text/plain; version=0.0.4"
    )
    found = samples(answer.text)
    assert value(found, "runwatch_database_up") == 1
    assert value(found, "runwatch_runs", etl_job="demo", status="finished") == 3
    assert value(found, "runwatch_runs", etl_job="demo", status="pending") == 1
    assert value(found, "runwatch_runs", etl_job="csv_import", status="failed") == 1
    assert (
        value(found, "runwatch_records_loaded", "runwatch_records_loaded_total", etl_job="demo")
        == 600
    )
    assert (
        value(
            found, "runwatch_records_loaded", "runwatch_records_loaded_total", etl_job="csv_import"
        )
        == 7
    )
    histogram = "runwatch_run_duration_seconds"
    buckets = {s.labels["le"]: s.value for s in found[histogram] if s.name.endswith("_bucket")}
    assert (buckets["1.0"], buckets["5.0"], buckets["60.0"], buckets["120.0"], buckets["+Inf"]) == (
        0,
        1,
        2,
        3,
        3,
    )
    assert value(found, histogram, f"{histogram}_sum", etl_job="demo") == pytest.approx(142)
    assert value(found, histogram, f"{histogram}_count", etl_job="demo") == 3
    assert value(found, "runwatch_queue_depth") == 1
    assert 29 < value(found, "runwatch_queue_oldest_age_seconds") < 120
    assert value(found, "runwatch_workers", state="live") == 1
    assert value(found, "runwatch_workers", state="lost") == 1
    assert value(found, "runwatch_workers", state="stopped") == 0
    assert value(found, "runwatch_scheduler_last_tick_timestamp_seconds") > 0
    assert value(found, "runwatch_sse_clients") == 0
    assert "runwatch_alert_deliveries" not in found, "absent until alert channels exist"
    assert "process_resident_memory_bytes" in found


def test_metrics_count_open_live_feed_streams(client: httpx.Client, api_url: str) -> None:
    with (
        httpx.Client(base_url=api_url, timeout=30) as feed,
        feed.stream("GET", "/api/etl/logs/realtime") as stream,
    ):
        lines = stream.iter_lines()  # kept: a dropped line iterator closes the stream
        next(lines)  # the stream is open and registered
        assert value(samples(client.get("/metrics").text), "runwatch_sse_clients") == 1


@pytest.fixture
def down_api(settings: Settings) -> Iterator[httpx.Client]:
    """The API on a database that cannot be reached."""
    app = create_app(make_engine(DOWN_URL), settings)
    with running_app(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield http


@pytest.mark.sqlite_only  # the database is unreachable whichever backend the settings name
def test_an_unreachable_database_is_503_in_details_and_down_in_metrics(
    down_api: httpx.Client,
) -> None:
    answer = down_api.get("/api/health/details")
    assert answer.status_code == 503
    details = answer.json()
    assert details["status"] == "unavailable" and not details["database"]["reachable"]
    assert details["database"]["error"].startswith("OperationalError") and details["queue"] is None
    metrics = down_api.get("/metrics")
    assert metrics.status_code == 200
    found = samples(metrics.text)
    assert value(found, "runwatch_database_up") == 0 and "runwatch_runs" not in found
