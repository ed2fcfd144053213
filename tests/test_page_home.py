"""The Live page, run headless with AppTest on a seeded database (SQLite and PostgreSQL)."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from db.models import RunStatus
from db.queries import create_run, get_run, list_audit, list_runs, read_session, write_session
from db.settings import get_settings
from tests.factories import make_run
from tests.pages import DOWN_URL, run_page, texts
from tests.test_etl_worker import ExitingJob, test_jobs  # noqa: F401 (a fixture)


def home() -> AppTest:
    """The Live page, run once."""
    return run_page("Home.py")


def runs_of(engine: sa.Engine) -> list[tuple[int, str]]:
    with read_session(engine) as session:
        return [(r.id or 0, r.status) for r in list_runs(session=session).runs]


def test_home_empty_database_says_what_to_do(engine: sa.Engine, no_worker: None) -> None:
    at = home()
    assert "No runs yet — click Run now." in texts(at)
    assert "Demo catalogue" in texts(at)


def test_run_now_confirm_creates_a_pending_run(engine: sa.Engine, no_worker: None) -> None:
    at = home()
    at.button(key="home_run_demo").click().run()
    assert not at.exception
    at.text_area(key="home_params_demo").set_value('{"total": 500, "batch_size": 50}')
    at.button(key="home_confirm").click().run()
    assert not at.exception
    [(run_id, status)] = runs_of(engine)
    assert status == RunStatus.PENDING
    assert f"Run #{run_id} of demo is queued" in texts(at)
    with read_session(engine) as session:
        [audit] = list_audit(session=session, action="trigger")
        assert audit.target == f"run:{run_id}" and audit.details["params"]["total"] == 500
    assert "-badge[:material/schedule: Pending]" in texts(at)


def test_second_run_now_is_refused_with_the_active_run(engine: sa.Engine, no_worker: None) -> None:
    with write_session(engine) as session:
        active = make_run(session, status=RunStatus.PENDING, ended_at=None, offset=0)
    at = home()
    at.button(key="home_run_demo").click().run()
    assert not at.exception
    assert f"a run is already active (#{active.id})" in texts(at)
    assert len(runs_of(engine)) == 1


def test_invalid_parameters_get_a_clear_message(engine: sa.Engine, no_worker: None) -> None:
    at = home()
    at.button(key="home_run_demo").click().run()
    at.text_area(key="home_params_demo").set_value('{"total": 10,')
    at.button(key="home_confirm").click().run()
    assert not at.exception
    assert "not valid JSON" in texts(at)
    at.text_area(key="home_params_demo").set_value('{"totl": 10}')
    at.button(key="home_confirm").click().run()
    assert "Unknown demo parameter(s): totl" in texts(at)
    assert runs_of(engine) == []


def test_cancel_run_cancels_and_audits(engine: sa.Engine, no_worker: None) -> None:
    with write_session(engine) as session:
        run = make_run(session, status=RunStatus.PENDING, ended_at=None, offset=0)
    at = home()
    at.button(key="home_cancel_demo").click().run()
    assert not at.exception
    assert runs_of(engine) == [(run.id, RunStatus.CANCELLED)]
    assert f"Run #{run.id} was cancelled" in texts(at)
    with read_session(engine) as session:
        assert [a.target for a in list_audit(session=session, action="cancel")] == [f"run:{run.id}"]


def test_running_run_shows_progress_eta_and_stats(engine: sa.Engine, no_worker: None) -> None:
    with write_session(engine) as session:
        for _ in range(3):
            make_run(session)  # 1000 records in 30 s each: 33 records/s of history
        make_run(
            session,
            status=RunStatus.RUNNING,
            ended_at=None,
            offset=250,
            total_records=1000,
            current_step="load",
        )
    at = home()
    assert "250 / 1,000 records · 25%" in at.get("progress")[0].proto.text
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Step"] == "load" and metrics["ETA"] != "unknown"
    assert "Last successful run:** #3" in texts(at)


def test_unreachable_database_shows_a_banner_then_recovers(
    engine: sa.Engine, no_worker: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNWATCH_DATABASE_URL", DOWN_URL)
    get_settings.cache_clear()
    at = home()
    assert "The database cannot be reached" in texts(at)
    monkeypatch.setenv("RUNWATCH_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    get_settings.cache_clear()
    at.run()
    assert not at.exception
    assert "The database cannot be reached" not in texts(at)
    assert "Demo catalogue" in texts(at)


@pytest.mark.usefixtures("test_jobs")
def test_a_restarted_worker_thread_shows_a_banner(engine: sa.Engine) -> None:
    with write_session(engine) as session:
        run = create_run(session=session, job=ExitingJob.kind)
    at = home()  # starts the app's worker, whose thread dies executing the run
    deadline = time.monotonic() + 120
    while "worker thread stopped and was restarted" not in texts(at):
        assert time.monotonic() < deadline, texts(at)
        time.sleep(0.2)
        at.run()
        assert not at.exception
    assert "SystemExit: job called sys.exit(3)" in texts(at)
    with read_session(engine) as session:
        assert get_run(session=session, run_id=run.id or 0, fresh=True).error_type == "SystemExit"
