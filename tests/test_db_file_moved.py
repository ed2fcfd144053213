"""A SQLite file moved, deleted or replaced under a running Runwatch is noticed, never split silently.

SQLite only: a PostgreSQL database has no file a user can move.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from db.engine import file_problem, sqlite_file
from db.queries import write_session
from etl.cli import main
from tests.factories import make_run
from tests.pages import run_page, texts

pytestmark = pytest.mark.sqlite_only


def database_file(engine: sa.Engine) -> Path:
    """The file behind the test's SQLite engine."""
    path = sqlite_file(engine.url.render_as_string())
    assert path is not None
    return path


def move_away(engine: sa.Engine) -> Path:
    """Move the database file and its WAL companions aside, as a user might; return the file."""
    path = database_file(engine)
    for companion in path.parent.glob(path.name + "*"):
        companion.rename(companion.with_name("moved-" + companion.name))
    return path


def test_file_problem_tells_moved_from_replaced(engine: sa.Engine) -> None:
    with write_session(engine) as session:
        make_run(session)
    assert file_problem(engine) is None
    path = move_away(engine)
    assert "has been moved or deleted" in (file_problem(engine) or "")
    path.write_bytes(b"")
    assert "has been replaced by another file" in (file_problem(engine) or "")


def test_health_is_503_naming_the_moved_file(client: httpx.Client, engine: sa.Engine) -> None:
    assert client.get("/health").status_code == 200
    path = move_away(engine)
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert str(path) in response.json()["problem"]


def test_app_shows_a_banner_when_its_file_is_moved(engine: sa.Engine, no_worker: None) -> None:
    at = run_page("Home.py")
    assert "moved or deleted" not in texts(at)
    move_away(engine)
    at.run()
    assert not at.exception
    assert "has been moved or deleted since Runwatch opened it" in texts(at)


def test_cli_refuses_to_create_a_database_except_init_db(
    engine: sa.Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    with write_session(engine) as session:
        make_run(session)
    path = move_away(engine)
    engine.dispose()
    for argv in (["runs"], ["run", "demo", "--detach"], ["worker", "--once"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"No database at {path}" in err and "runwatch init-db" in err
        assert err.count("\n") == 1
        assert not path.exists()
    assert main(["init-db"]) == 0
    assert path.exists()
    assert main(["runs"]) == 0
