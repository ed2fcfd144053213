"""The HTTP API through a real uvicorn server, on SQLite and PostgreSQL."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import select

from api.app import create_app
from db.models import AuditEvent
from db.queries import (
    RunFilters,
    RunSort,
    append_event,
    get_job,
    get_run,
    list_audit,
    list_runs,
    read_session,
    write_session,
)
from db.settings import Settings
from reports.eta import Pace
from reports.export import stream_export
from tests.apiserver import api_process, running_api, running_app
from tests.factories import make_run

BASE = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


def wait_for(check: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Poll `check` until it returns something truthy (generous timeout, no timing asserts)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def seed(engine: sa.Engine, count: int = 24) -> list[int]:
    """`count` finished, failed and cancelled runs of two jobs, an hour apart, oldest first."""
    statuses = ["finished", "failed", "cancelled"]
    ids = []
    with write_session(engine) as session:
        for i in range(count):
            created = BASE + timedelta(hours=i)
            run = make_run(
                session,
                job="demo" if i % 2 else "csv_import",
                status=statuses[i % 3],
                trigger="api" if i % 4 == 0 else "manual",
                started_at=created,
                created_at=created,
                ended_at=created + timedelta(seconds=10 + i),
                error_message=f"boom {i}" if statuses[i % 3] == "failed" else None,
                records_loaded=100 * i,
            )
            assert run.id is not None
            ids.append(run.id)
    return ids


# ---------------------------------------------------------------- health and status


def test_health_reports_database_and_pending_count(client: httpx.Client, engine: sa.Engine) -> None:
    with write_session(engine) as session:
        make_run(session, status="pending", ended_at=None)
    body = client.get("/health").json()
    assert body == {
        "status": "ok",
        "database": True,
        "worker": None,
        "worker_restarts": None,
        "worker_last_death": None,
        "pending": 1,
        "problem": None,
    }


def test_health_is_503_when_the_database_is_down(settings: Settings) -> None:
    down = settings.model_copy(
        update={"database_url": "postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2"}
    )
    with running_app(create_app(settings=down)) as url:
        health = httpx.get(f"{url}/health", timeout=30)
        status = httpx.get(f"{url}/api/etl/status", timeout=30)
    assert health.status_code == 503
    assert health.json()["database"] is False
    assert status.status_code == 503
    assert "database" in status.json()["detail"]


def test_status_without_runs_is_idle(client: httpx.Client) -> None:
    body = client.get("/api/etl/status").json()
    assert body["is_running"] is False
    assert body["current_log_id"] is None
    assert body["performance_metrics"]["memory_usage"] > 0


def test_status_reports_the_running_run(client: httpx.Client, engine: sa.Engine) -> None:
    started = datetime.now(UTC) - timedelta(seconds=20)
    with write_session(engine) as session:
        make_run(session, job="csv_import", status="finished")
        run = make_run(
            session,
            status="running",
            started_at=started,
            ended_at=None,
            heartbeat_at=datetime.now(UTC),
            total_records=1000,
            offset=400,
            current_step="load",
            pace=Pace(batches=8, records=400, seconds=19.5, log_mean=math.log(0.05)).as_dict(),
        )
    body = client.get("/api/etl/status").json()
    assert body["is_running"] is True
    assert body["current_log_id"] == run.id
    assert body["status"] == "running"
    assert body["progress_percentage"] == 40.0
    assert body["current_step"] == "load"
    assert 0 < body["performance_metrics"]["records_per_second"] <= 400 / 19
    eta = datetime.fromisoformat(body["estimated_completion"])
    ends = body["estimated_completion_range"]
    earliest, latest = (datetime.fromisoformat(ends[name]) for name in ("earliest", "latest"))
    assert datetime.now(UTC) < eta and earliest < eta < latest


def test_status_of_a_job_shows_its_newest_run(client: httpx.Client, engine: sa.Engine) -> None:
    ids = seed(engine, 6)
    body = client.get("/api/etl/status", params={"job": "csv_import"}).json()
    assert body["current_log_id"] == ids[4]
    assert body["is_running"] is False


def test_status_of_an_unknown_job_is_404(client: httpx.Client) -> None:
    response = client.get("/api/etl/status", params={"job": "nope"})
    assert response.status_code == 404
    assert "nope" in response.json()["detail"]


# ---------------------------------------------------------------- trigger


def test_trigger_enqueues_an_api_run_and_audits_it(client: httpx.Client, engine: sa.Engine) -> None:
    response = client.post("/api/etl/trigger", json={"job": "demo", "params": {"total": 50}})
    assert response.status_code == 202
    body = response.json()
    assert body["success"] is True
    with read_session(engine) as session:
        run = get_run(session=session, run_id=body["log_id"])
        audit = list_audit(session=session, action="trigger")
    assert (run.status, run.trigger, run.params["total"]) == ("pending", "api", 50)
    assert [(a.target, a.details["job"]) for a in audit] == [(f"run:{run.id}", "demo")]


def test_trigger_estimates_duration_from_past_runs(client: httpx.Client, engine: sa.Engine) -> None:
    with write_session(engine) as session:
        make_run(session, records_loaded=1000)  # 1000 records in 30 s
    body = client.post("/api/etl/trigger", json={"job": "demo", "params": {"total": 2000}}).json()
    assert body["estimated_duration"] == pytest.approx(60.0)


def test_trigger_of_an_active_job_is_409_naming_the_run(client: httpx.Client) -> None:
    first = client.post("/api/etl/trigger", json={"job": "demo"}).json()["log_id"]
    response = client.post("/api/etl/trigger", json={"job": "demo"})
    assert response.status_code == 409
    assert response.json()["run_id"] == first
    assert f"#{first}" in response.json()["detail"]


def test_trigger_of_a_disabled_job_is_409(client: httpx.Client, engine: sa.Engine) -> None:
    with write_session(engine) as session:
        get_job(session=session, name="demo").enabled = False
    response = client.post("/api/etl/trigger", json={"job": "demo"})
    assert response.status_code == 409
    assert "disabled" in response.json()["detail"]


def test_trigger_of_an_unknown_job_is_404(client: httpx.Client) -> None:
    response = client.post("/api/etl/trigger", json={"job": "nope"})
    assert response.status_code == 404
    assert "nope" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"job": "demo", "params": {"total": "lots"}}, "total"),
        ({"job": "demo", "params": {"colour": 1}}, "colour"),
        ({"job": "demo", "params": {"batch_size": 0}}, "batch_size"),
        ({"job": "demo", "params": {"total": 99999999999999999999999}}, "at most 2,147,483,647"),
        ({"job": "demo", "params": {"total": 10.5}}, "'total' must be a whole number"),
        ({"job": "demo", "params": {"seed": True}}, "'seed' must be a whole number"),
        ('{"job": "demo", "params": {"total": 1e999}}', "total"),
        ({"job": "demo", "params": []}, "params"),
        ({"job": "demo", "extra": 1}, "extra"),
        ({"params": {}}, "job"),
    ],
)
def test_trigger_with_bad_input_is_422_naming_it(
    client: httpx.Client, engine: sa.Engine, body: dict[str, Any] | str, named: str
) -> None:
    if isinstance(body, str):  # JSON that Python parses to infinity
        headers = {"Content-Type": "application/json"}
        response = client.post("/api/etl/trigger", content=body, headers=headers)
    else:
        response = client.post("/api/etl/trigger", json=body)
    assert response.status_code == 422
    payload = response.json()
    assert named in str(payload.get("message", payload["detail"]))
    with read_session(engine) as session:
        assert list_runs(session=session).total == 0


def test_status_at_a_quarter_of_a_slow_run_believes_its_own_pace(
    engine: sa.Engine, settings: Settings
) -> None:
    """Five past runs at 60 ms a batch of 50, then one at 120 ms read at 25%: its ETA must follow
    its own pace, not the history's (the old estimate still gave the history 75% of the weight)."""
    with write_session(engine) as session:
        for minutes in range(5, 0, -1):
            started = datetime.now(UTC) - timedelta(minutes=minutes)
            ended = started + timedelta(seconds=2.4)
            make_run(session, started_at=started, ended_at=ended, total_records=2000, offset=2000)
    with_worker = settings.model_copy(update={"api_worker_enabled": True})
    with running_api(settings=with_worker) as url, httpx.Client(base_url=url, timeout=30) as http:
        params = {"total": 2000, "batch_size": 50, "delay_ms": 120}
        http.post("/api/etl/trigger", json={"job": "demo", "params": params}).raise_for_status()
        at_quarter = wait_for(lambda: quarter_status(http))
        read_at = datetime.now(UTC)
        wait_for(lambda: http.get("/api/etl/status").json()["status"] == "finished")
    eta = datetime.fromisoformat(at_quarter["estimated_completion"])
    ends = at_quarter["estimated_completion_range"]
    earliest, latest = (datetime.fromisoformat(ends[name]) for name in ("earliest", "latest"))
    history_alone = 1500 * 2.4 / 2000  # seconds the history's pace leaves for 75%
    assert (eta - read_at).total_seconds() > 1.5 * history_alone  # sleeps alone make it 2x
    assert earliest < eta < latest


def quarter_status(http: httpx.Client) -> dict[str, Any] | None:
    """The status once the running run is a quarter done (None before)."""
    body: dict[str, Any] = http.get("/api/etl/status").json()
    done = body["progress_percentage"] or 0  # None until the first checkpoint stores the total
    return body if body["status"] == "running" and done >= 25 else None


def test_triggered_run_finishes_in_the_api_worker(engine: sa.Engine, settings: Settings) -> None:
    with_worker = settings.model_copy(update={"api_worker_enabled": True})
    with running_api(settings=with_worker) as url, httpx.Client(base_url=url, timeout=30) as http:
        assert http.get("/health").json()["worker"] is True
        params = {"total": 300, "batch_size": 50}
        run_id = http.post("/api/etl/trigger", json={"job": "demo", "params": params}).json()[
            "log_id"
        ]
        wait_for(lambda: http.get(f"/api/etl/runs/{run_id}").json()["status"] == "finished")
        status = http.get("/api/etl/status").json()
    assert status["current_log_id"] == run_id
    assert status["progress_percentage"] == 100.0
    assert status["is_running"] is False


# ---------------------------------------------------------------- history


@pytest.mark.parametrize(
    ("params", "filters"),
    [
        ({}, RunFilters()),
        ({"status": "failed"}, RunFilters(statuses=("failed",))),
        ({"status": ["failed", "cancelled"]}, RunFilters(statuses=("failed", "cancelled"))),
        ({"job": "demo", "trigger": "api"}, RunFilters(jobs=("demo",), triggers=("api",))),
        (
            {"since": (BASE + timedelta(hours=5)).isoformat(), "until": "2026-01-11T02:00:00"},
            RunFilters(since=BASE + timedelta(hours=5), until=BASE + timedelta(hours=14)),
        ),
        ({"error_text": "boom 1"}, RunFilters(error_text="boom 1")),
        ({"until": "2026-01-10"}, RunFilters(until=BASE + timedelta(hours=12))),
    ],
)
def test_logs_pages_match_the_queries(
    client: httpx.Client, engine: sa.Engine, params: dict[str, Any], filters: RunFilters
) -> None:
    seed(engine)
    for page, limit in [(1, 10), (2, 10), (3, 10), (1, 5), (4, 7)]:
        body = client.get("/api/etl/logs", params={**params, "page": page, "limit": limit}).json()
        with read_session(engine) as session:
            expected = list_runs(session=session, filters=filters, page=page, page_size=limit)
        assert body["total"] == expected.total
        assert (body["page"], body["limit"]) == (page, limit)
        assert [item["id"] for item in body["items"]] == [run.id for run in expected.runs]


def test_logs_items_have_the_dashboard_fields(client: httpx.Client, engine: sa.Engine) -> None:
    ids = seed(engine, 3)
    item = client.get("/api/etl/logs").json()["items"][1]
    assert item["id"] == ids[1]
    assert item["status"] == "failed"
    assert item["error_message"] == "boom 1"
    assert item["duration"] == 11.0
    assert (item["categories_processed"], item["subjects_processed"]) == (20, 1000)
    assert datetime.fromisoformat(item["start_date"]) == BASE + timedelta(hours=1)
    assert datetime.fromisoformat(item["end_date"]) == BASE + timedelta(hours=1, seconds=11)
    for name in ("total_records", "offset", "created_at"):
        assert name in item


def test_logs_are_newest_first(client: httpx.Client, engine: sa.Engine) -> None:
    ids = seed(engine, 5)
    assert [item["id"] for item in client.get("/api/etl/logs").json()["items"]] == ids[::-1]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 5000}, "limit"),
        ({"page": "two"}, "page"),
        ({"page": 0}, "page"),
        ({"status": "exploded"}, "status"),
        ({"trigger": "telepathy"}, "trigger"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-02-01", "until": "2026-01-01"}, "until"),
        ({"job": "a\x00b"}, "job"),
    ],
)
def test_logs_with_bad_parameters_is_422_naming_them(
    client: httpx.Client, params: dict[str, Any], named: str
) -> None:
    response = client.get("/api/etl/logs", params=params)
    assert response.status_code == 422
    assert f"'{named}'" in response.json()["message"]


# ---------------------------------------------------------------- one run


def test_run_detail_has_params_counters_and_error(client: httpx.Client, engine: sa.Engine) -> None:
    with write_session(engine) as session:
        run = make_run(
            session,
            status="failed",
            params={"total": 7},
            error_type="RuntimeError",
            error_message="bad",
            error_detail={"traceback": "Traceback ...", "stage": "load"},
        )
    body = client.get(f"/api/etl/runs/{run.id}").json()
    assert body["id"] == run.id
    assert body["params"] == {"total": 7}
    assert body["counters"]["subjects_processed"] == 1000
    assert body["error_detail"]["stage"] == "load"
    assert body["error_type"] == "RuntimeError"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/etl/runs/999", 404),
        ("/api/etl/runs/999/events", 404),
        ("/api/etl/runs/0", 422),
        ("/api/etl/runs/abc", 422),
        ("/api/etl/runs/99999999999999999999", 422),
        ("/api/etl/runs/1/events?after=-1", 422),
    ],
)
def test_unknown_or_invalid_run_ids(client: httpx.Client, path: str, status: int) -> None:
    response = client.get(path)
    assert response.status_code == status
    if status == 404:
        assert "#999" in response.json()["detail"]


def test_run_events_page_by_cursor(client: httpx.Client, engine: sa.Engine) -> None:
    with write_session(engine) as session:
        run, other = make_run(session), make_run(session, job="csv_import")
        assert run.id is not None and other.id is not None
        ids = [append_event(session=session, run_id=run.id, message=f"line {i}") for i in range(5)]
        append_event(session=session, run_id=other.id, message="other")
    first = client.get(f"/api/etl/runs/{run.id}/events", params={"limit": 3}).json()
    rest = client.get(
        f"/api/etl/runs/{run.id}/events", params={"after": first["next_after"]}
    ).json()
    assert [e["message"] for e in first["items"] + rest["items"]] == [f"line {i}" for i in range(5)]
    assert rest["next_after"] == ids[-1]
    assert rest["items"][0]["run_id"] == run.id


# ---------------------------------------------------------------- cancel and retry


def test_cancel_a_pending_run_at_once(client: httpx.Client, engine: sa.Engine) -> None:
    run_id = client.post("/api/etl/trigger", json={"job": "demo"}).json()["log_id"]
    body = client.post(f"/api/etl/runs/{run_id}/cancel").json()
    assert (body["success"], body["status"]) == (True, "cancelled")
    with read_session(engine) as session:
        assert get_run(session=session, run_id=run_id).status == "cancelled"
        assert list_audit(session=session, action="cancel")[0].target == f"run:{run_id}"


def test_cancel_a_running_run_asks_it_to_stop(client: httpx.Client, engine: sa.Engine) -> None:
    with write_session(engine) as session:
        run = make_run(session, status="running", ended_at=None)
    body = client.post(f"/api/etl/runs/{run.id}/cancel").json()
    assert body["status"] == "running"
    with read_session(engine) as session:
        assert get_run(session=session, run_id=run.id).cancel_requested is True


def test_cancel_a_finished_run_is_409(client: httpx.Client, engine: sa.Engine) -> None:
    with write_session(engine) as session:
        run = make_run(session)
    response = client.post(f"/api/etl/runs/{run.id}/cancel")
    assert response.status_code == 409
    assert "finished" in response.json()["detail"]
    assert client.post("/api/etl/runs/999/cancel").status_code == 404


@pytest.mark.parametrize(("restart", "offset"), [(False, 400), (True, 0)])
def test_retry_resumes_from_the_checkpoint_or_restarts(
    client: httpx.Client, engine: sa.Engine, restart: bool, offset: int
) -> None:
    with write_session(engine) as session:
        failed = make_run(session, status="failed", offset=400, records_loaded=400)
    response = client.post(f"/api/etl/runs/{failed.id}/retry", params={"restart": restart})
    assert response.status_code == 202
    new_id = response.json()["log_id"]
    with read_session(engine) as session:
        run = get_run(session=session, run_id=new_id)
        audit = list_audit(session=session, action="retry")[0]
    assert (run.status, run.trigger, run.resumed_from, run.offset) == (
        "pending",
        "retry",
        failed.id,
        offset,
    )
    assert audit.target == f"run:{new_id}"
    assert audit.details == {
        "job": run.job,
        "resumed_from": failed.id,
        "from_checkpoint": not restart,
        "source": "api",
    }


def test_retry_refusals(client: httpx.Client, engine: sa.Engine) -> None:
    with write_session(engine) as session:
        finished = make_run(session)
        failed = make_run(session, status="failed")
        active = make_run(session, status="pending", ended_at=None)
    assert client.post(f"/api/etl/runs/{finished.id}/retry").status_code == 409
    busy = client.post(f"/api/etl/runs/{failed.id}/retry")
    assert busy.status_code == 409
    assert busy.json()["run_id"] == active.id
    assert client.post("/api/etl/runs/999/retry").status_code == 404


# ---------------------------------------------------------------- exports


EXPORT_CASES = [
    ({}, RunFilters(), RunSort()),
    (
        {"status": ["failed", "finished"], "job": "demo", "sort": "duration", "order": "asc"},
        RunFilters(statuses=("failed", "finished"), jobs=("demo",)),
        RunSort(key="duration", descending=False),
    ),
    (
        {"since": BASE.isoformat(), "until": (BASE + timedelta(hours=9)).isoformat()},
        RunFilters(since=BASE, until=BASE + timedelta(hours=9)),
        RunSort(),
    ),
]


@pytest.mark.parametrize("fmt", ["csv", "json"])
@pytest.mark.parametrize(("params", "filters", "sort"), EXPORT_CASES)
def test_export_bytes_equal_stream_export_and_are_audited(
    client: httpx.Client,
    engine: sa.Engine,
    fmt: str,
    params: dict[str, Any],
    filters: RunFilters,
    sort: RunSort,
) -> None:
    seed(engine)
    with write_session(engine) as session:
        make_run(session, error_message="=HYPERLINK(1)", status="failed", job="demo")
    response = client.get(f"/api/etl/export.{fmt}", params=params)
    expected = b"".join(stream_export(engine=engine, fmt=fmt, filters=filters, sort=sort))  # type: ignore[arg-type]
    assert response.status_code == 200
    assert response.content == expected
    assert response.headers["content-disposition"].startswith("attachment; filename=")
    assert response.headers["content-disposition"].endswith(f'.{fmt}"')
    with read_session(engine) as session:
        audits = session.exec(select(AuditEvent).where(AuditEvent.action == "export")).all()
    api_audit = next(a for a in audits if a.details["source"] == "api")
    assert api_audit.details["filters"] == filters.as_dict()
    assert api_audit.details["format"] == fmt
    rows = api_audit.details["rows"]
    with read_session(engine) as session:
        assert rows == list_runs(session=session, filters=filters).total


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_bytes_equal_the_cli_export(
    client: httpx.Client, engine: sa.Engine, settings: Settings, fmt: str
) -> None:
    seed(engine)
    params = {"status": ["failed", "finished"], "job": "demo", "until": "2026-01-10"}
    cli = ["--status", "failed", "--status", "finished", "--job", "demo", "--until", "2026-01-10"]
    response = client.get(f"/api/etl/export.{fmt}", params=params)
    command = [sys.executable, "-m", "etl", "runs", "--format", fmt, *cli]
    env = {**os.environ, "RUNWATCH_DATABASE_URL": settings.database_url}
    printed = subprocess.run(command, env=env, capture_output=True, check=True, timeout=120)
    assert response.content == printed.stdout
    assert response.content.count(b"boom") == 2  # runs 1 and 7: failed demo runs of that day


def test_serve_api_exports_the_same_bytes_without_loading_numpy(
    engine: sa.Engine, settings: Settings
) -> None:
    # pyarrow imports numpy when it is installed (11 MB that stay in the server after its first
    # export): serve-api runs as if it were not, and its exports are the same bytes
    ids = seed(engine)
    with api_process(settings.database_url) as api:
        exported = {
            fmt: httpx.get(f"{api.url}/api/etl/export.{fmt}", timeout=120)
            for fmt in ("csv", "json")
        }
        answers = {path: httpx.get(api.url + path, timeout=60) for path in read_paths(ids[0])}
        maps = Path(f"/proc/{api.pid}/maps").read_text()
    for fmt, response in exported.items():
        assert response.status_code == 200
        assert response.content == b"".join(stream_export(engine=engine, fmt=fmt))  # type: ignore[arg-type]
    assert {path: r.status_code for path, r in answers.items() if r.status_code != 200} == {}
    assert "/pyarrow/" in maps  # the exports ran in the server
    assert "/numpy" not in maps


# serve-api's start, then pyarrow as an export loads it, then numpy as a job kind would
PYARROW_THEN_NUMPY = """
import sys
from api.app import _without_numpy
_without_numpy()
import pyarrow.compute
print("numpy" in sys.modules)
import numpy
print(int(numpy.arange(4).sum()))
"""


def test_serve_api_runs_pyarrow_without_numpy_and_lets_other_code_import_it() -> None:
    # a job kind in serve-api's worker thread may need numpy: only pyarrow's own import is refused
    result = subprocess.run(
        [sys.executable, "-c", PYARROW_THEN_NUMPY],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "6"]


def read_paths(run_id: int) -> list[str]:
    """Every GET path of the API and its docs but the never-ending live feed (`run_id` for a run's)."""
    from api.app import create_app

    schema = create_app().openapi()["paths"]
    paths = [path for path, methods in schema.items() if "get" in methods]
    paths = [
        path.replace("{run_id}", str(run_id)) for path in paths if not path.endswith("/realtime")
    ]
    assert len(paths) >= 12 and not [path for path in paths if "{" in path]
    return [*paths, "/openapi.json", "/docs"]


def test_export_with_bad_sort_is_422(client: httpx.Client) -> None:
    response = client.get("/api/etl/export.csv", params={"sort": "colour"})
    assert response.status_code == 422
    assert "'sort'" in response.json()["message"]


# ---------------------------------------------------------------- CORS and OpenAPI


def test_cors_allows_a_configured_origin(engine: sa.Engine, settings: Settings) -> None:
    allowed = "http://dashboard.localhost:9000"
    cors = settings.model_copy(update={"cors_origins": f"{allowed}, http://other.localhost"})
    with running_api(settings=cors) as url:
        ok = httpx.get(f"{url}/api/etl/status", headers={"Origin": allowed})
        stranger = httpx.get(f"{url}/api/etl/status", headers={"Origin": "http://evil.localhost"})
        preflight = httpx.options(
            f"{url}/api/etl/trigger",
            headers={"Origin": allowed, "Access-Control-Request-Method": "POST"},
        )
    assert ok.headers["access-control-allow-origin"] == allowed
    assert "access-control-allow-origin" not in stranger.headers
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == allowed


def test_openapi_documents_every_endpoint(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/etl/status",
        "/api/etl/trigger",
        "/api/etl/logs",
        "/api/etl/runs/{run_id}",
        "/api/etl/runs/{run_id}/events",
        "/api/etl/runs/{run_id}/cancel",
        "/api/etl/runs/{run_id}/retry",
        "/api/etl/export.csv",
        "/api/etl/export.json",
        "/health",
    ):
        assert path in paths


def test_jobs_list_shows_paused_and_the_pause_endpoints_change_it(api_url: str) -> None:
    listed = {job["name"]: job for job in httpx.get(f"{api_url}/api/etl/jobs", timeout=30).json()}
    assert listed["demo"]["paused"] is False and listed["demo"]["catchup"] == "latest"
    paused = httpx.post(f"{api_url}/api/etl/jobs/demo/pause", timeout=30)
    assert paused.status_code == 200 and paused.json()["job"]["paused"] is True
    refused = httpx.post(f"{api_url}/api/etl/trigger", json={"job": "demo"}, timeout=30)
    assert refused.status_code == 409 and refused.json()["error"] == "JobPaused"
    listed = {job["name"]: job for job in httpx.get(f"{api_url}/api/etl/jobs", timeout=30).json()}
    assert listed["demo"]["paused"] is True
    resumed = httpx.post(f"{api_url}/api/etl/jobs/demo/unpause", timeout=30)
    assert resumed.status_code == 200 and resumed.json()["job"]["paused"] is False
    missing = httpx.post(f"{api_url}/api/etl/jobs/nope/pause", timeout=30)
    assert missing.status_code == 404 and "No job named 'nope'" in missing.json()["detail"]


def test_the_api_loads_no_client_library_until_a_feature_needs_one() -> None:
    # httpx brings click, rich and pygments; requests and sseclient come with the sse_follow job;
    # psycopg is PostgreSQL's driver: together about 22 MB that serve-api, every worker and the
    # app would otherwise hold from the start, whatever their database
    check = (
        "import sys, api.app, etl.worker, etl.jobs;"
        " print(sorted({'httpx', 'requests', 'sseclient', 'psycopg'} & set(sys.modules)))"
    )
    printed = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, check=True, text=True, timeout=120
    )
    assert printed.stdout.strip() == "[]"
