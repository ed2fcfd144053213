"""The Jobs page, run headless with AppTest."""

from __future__ import annotations

import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from db.models import RunStatus
from db.queries import get_job, read_session, write_session
from etl import commands
from etl.commands import Caller, Source
from tests.factories import make_run
from tests.pages import run_page, texts


def jobs_page() -> AppTest:
    """The Jobs page, run once."""
    return run_page("pages/4_Jobs.py")


def test_jobs_lists_every_job_with_its_last_run(engine: sa.Engine, no_worker: None) -> None:
    with write_session(engine) as session:
        get_job(session=session, name="demo").schedule = "*/5 * * * *"
        run = make_run(session, status=RunStatus.FAILED, error_message="boom")
    at = jobs_page()
    table = at.table[0].value.set_index("Kind")
    assert list(table["Job"]) == ["csv_import (CSV import)", "demo (Demo catalogue)"]
    demo = table.loc["demo"]
    assert demo["Schedule"] == "*/5 * * * *"
    assert "batch_size=200" in demo["Default parameters"] and demo["Enabled"] == "yes"
    assert demo["Last run"].startswith(f"#{run.id} · Failed · ")
    assert table.loc["csv_import", "Last run"] == "never"


def test_jobs_database_down_banner(database_down: None) -> None:
    at = jobs_page()
    assert "The database cannot be reached" in at.error[0].value


def test_jobs_page_explains_each_kinds_parameters(engine: sa.Engine, no_worker: None) -> None:
    at = jobs_page()
    assert "- `key` (columns, **required**)" in texts(at)
    assert "- `batch_size` (whole number, default 500)" in texts(at)


def test_jobs_shows_the_schedule_in_words_and_the_next_runs(
    engine: sa.Engine, no_worker: None
) -> None:
    admin = Caller("admin", Source.CLI)
    commands.add_job(engine, admin, name="hourly", kind="demo", schedule="15 * * * *")
    at = jobs_page()
    hourly = at.table[0].value.set_index("Job").loc["hourly"]
    assert hourly["When"] == "every hour at minute 15 (UTC)"
    assert hourly["Next runs"].count(":15") == 3


def test_jobs_pause_button_pauses_and_resume_resumes(engine: sa.Engine, no_worker: None) -> None:
    at = jobs_page()
    at.button(key="jobs_pause_demo").click().run()
    assert not at.exception and "Job demo paused" in at.success[0].value
    assert "Paused: no scheduled run, Run now refused" in texts(at)
    at.button(key="jobs_resume_demo").click().run()
    assert "Job demo resumed" in at.success[0].value
    with read_session(engine) as session:
        assert not get_job(session=session, name="demo").paused
