"""The Live page, run headless with AppTest on a seeded database (SQLite and PostgreSQL)."""

from __future__ import annotations

import gc
import math
import re
import time
from datetime import datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from db.models import RunStatus, utcnow
from db.queries import create_run, get_run, list_audit, list_runs, read_session, write_session
from db.settings import get_settings
from etl import commands
from etl.commands import Caller, Source
from etl.progress import ProgressBar
from reports.eta import Pace
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


def test_the_first_script_run_takes_the_imports_out_of_the_collectors_sight(
    engine: sa.Engine, no_worker: None
) -> None:
    from ui.app import _imports_frozen

    gc.unfreeze()
    _imports_frozen.cache_clear()
    try:
        assert not home().exception
        assert gc.get_freeze_count() > 100_000  # Streamlit's, SQLAlchemy's, the app's objects
    finally:
        gc.unfreeze()  # the rest of the test process collects as before
        _imports_frozen.cache_clear()


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


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ('{"total": 99999999999999999999999}', "'total' must be at most 2,147,483,647"),
        ('{"total": 10.5}', "'total' must be a whole number, not 10.5"),
    ],
)
def test_numbers_the_database_cannot_store_are_refused_in_the_dialog(
    engine: sa.Engine, no_worker: None, params: str, message: str
) -> None:
    at = home()
    at.button(key="home_run_demo").click().run()
    at.text_area(key="home_params_demo").set_value(params)
    at.button(key="home_confirm").click().run()
    assert not at.exception
    assert message in [error.value for error in at.error][0]
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


def seconds_of(text: str) -> float:
    """`1h 02m`, `3m05s` or `12s` (as the app and the CLI write durations) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)([hms])", text))


def test_home_api_and_cli_show_the_same_eta(
    engine: sa.Engine, no_worker: None, api_url: str
) -> None:
    """Likely, early and late apart by the same seconds everywhere (their distance from now is
    the one thing that differs, as each reads at its own moment)."""
    # two 15 s batches: however slowly the reads below come, none sees a late batch (over 30 s)
    pace = Pace(batches=2, records=1000, seconds=30.0, log_mean=math.log(0.03), log_m2=0.02)
    with write_session(engine) as session:
        for _ in range(5):
            make_run(session)  # 1000 records in 30 s each
        run = make_run(
            session,
            status=RunStatus.RUNNING,
            started_at=utcnow() - timedelta(seconds=30),
            ended_at=None,
            offset=1000,
            total_records=20_000,
            pace=pace.as_dict(),
        )
    body = httpx.get(f"{api_url}/api/etl/status").json()
    api_likely, api_early, api_late = (
        datetime.fromisoformat(t)
        for t in (
            body["estimated_completion"],
            *(body["estimated_completion_range"][n] for n in ("earliest", "latest")),
        )
    )
    at = home()
    metric = next(m for m in at.metric if m.label == "ETA")
    early, late = next(c.value for c in at.caption if " – " in c.value).split(" – ")
    bar = ProgressBar("run", 20_000, history=[1000 / 30] * 5)
    bar.update(1000, pace=pace)
    cli = re.search(r"ETA (\S+) \((\S+)–(\S+)\)", bar.eta_text())
    assert cli is not None
    spans = {
        "api": ((api_late - api_early).total_seconds(), (api_likely - api_early).total_seconds()),
        "app": (seconds_of(late) - seconds_of(early), seconds_of(metric.value) - seconds_of(early)),
        "cli": (seconds_of(cli[3]) - seconds_of(cli[2]), seconds_of(cli[1]) - seconds_of(cli[2])),
    }
    for width, likely in spans.values():  # durations shown to the second: 2 s of rounding
        assert width == pytest.approx(spans["api"][0], abs=2)
        assert likely == pytest.approx(spans["api"][1], abs=2)
    assert run.id == body["current_log_id"]


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


def test_refused_run_now_warning_stays_through_refreshes_until_dismissed(
    engine: sa.Engine, no_worker: None
) -> None:
    with write_session(engine) as session:
        active = make_run(session, status=RunStatus.PENDING, ended_at=None, offset=0)
    at = home()
    at.button(key="home_run_demo").click().run()
    at.run()  # the 2 s auto-refresh while a run is active
    at.run()
    assert not at.exception
    assert f"a run is already active (#{active.id})" in texts(at)
    at.button(key="home_note_dismiss").click().run()
    assert "already active" not in texts(at)


def test_dialog_error_stays_through_refreshes_until_the_next_confirm(
    engine: sa.Engine, no_worker: None
) -> None:
    with write_session(engine) as session:
        make_run(session, status=RunStatus.RUNNING, ended_at=None, offset=0)  # refresh every 2 s
    at = home()
    at.button(key="home_run_csv_import").click().run()
    at.text_area(key="home_params_csv_import").set_value("{}")
    at.button(key="home_confirm").click().run()
    at.run()
    at.run()
    assert not at.exception
    assert "Parameter 'path' is required" in texts(at)
    at.text_area(key="home_params_csv_import").set_value('{"path": "x.csv"}')
    at.button(key="home_confirm").click().run()
    assert "Parameter 'path' is required" not in texts(at)
    assert "Parameter 'table' is required" in texts(at)


def test_run_now_dialog_says_which_parameters_are_required(
    engine: sa.Engine, no_worker: None
) -> None:
    at = home()
    at.button(key="home_run_csv_import").click().run()
    assert not at.exception
    assert "- `path` (text, **required**): a CSV file or a glob" in texts(at)
    assert "- `on_error` (reject | fail, default reject)" in texts(at)


def test_a_paused_job_says_run_now_is_refused(engine: sa.Engine, no_worker: None) -> None:
    commands.pause(engine, Caller("admin", Source.CLI), "demo")
    at = home()
    assert "Paused: no scheduled run, Run now refused" in texts(at)
    at.button(key="home_run_demo").click().run()
    at.button(key="home_confirm").click().run()
    assert not at.exception and "Job 'demo' is paused" in at.warning[0].value
