"""Small refusals that front ends used to disagree on or word badly (issue 13, item 6)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from db.queries import count_runs, list_jobs, read_session
from etl.cli import main
from etl.seed import seed_history


def test_csv_import_of_a_directory_says_it_is_a_directory(
    engine: sa.Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "csv_import", "-p", f"path={tmp_path}", "-p", "table=t", "-p", "key=id"]
    assert main(argv) == 2
    assert f"Path '{tmp_path}' is a directory" in capsys.readouterr().err
    with read_session(engine) as session:
        assert count_runs(session=session) == 0


def test_csv_import_of_an_empty_file_warns_on_the_cli(
    engine: sa.Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    argv = ["run", "csv_import", "-p", f"path={empty}", "-p", "table=t", "-p", "key=id"]
    assert main(argv) == 0
    assert f"runwatch: warning: {empty} is empty" in capsys.readouterr().err


def test_runs_with_until_before_since_is_refused_as_in_the_api(
    client: httpx.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["runs", "--since", "2026-11-03", "--until", "2026-11-01"]) == 2
    cli = capsys.readouterr().err
    api = client.get("/api/etl/logs", params={"since": "2026-11-03", "until": "2026-11-01"})
    assert api.status_code == 422
    assert "'until' must not be before 'since'." in cli
    assert "'until' must not be before 'since'." in api.json()["message"]


def test_bad_json_body_is_named_as_json_not_as_a_field(client: httpx.Client) -> None:
    headers = {"Content-Type": "application/json"}
    response = client.post("/api/etl/trigger", content=b'{"job": ', headers=headers)
    assert response.status_code == 422
    message = response.json()["message"]
    assert message.startswith("The request body is not valid JSON") and "field" not in message


@pytest.mark.parametrize(
    "path",
    [
        "/api/etl/status?job=nope",
        "/api/etl/logs?job=nope",
        "/api/etl/export.csv?job=nope",
        "/api/etl/export.json?job=demo&job=nope",
        "/api/etl/logs/realtime?job=nope",
        "/api/etl/logs/realtime?channels=job:nope",
    ],
)
def test_an_unknown_job_is_404_everywhere(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert "No job named 'nope'" in response.json()["detail"]


def test_seeded_jobs_have_the_schedules_their_scheduled_runs_imply(engine: sa.Engine) -> None:
    seed_history(engine, days=1, runs_per_day=20, events_per_run=2, seed=1)
    with read_session(engine) as session:
        schedules = {job.name: job.schedule for job in list_jobs(session=session)}
    assert all(schedules.values()), schedules
