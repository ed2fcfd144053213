"""The Jobs page, run headless with AppTest."""

from __future__ import annotations

import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from db.models import RunStatus
from db.queries import get_job, write_session
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
