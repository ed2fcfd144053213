"""The Logs and Jobs pages in a real browser: lines of a running run arrive without reloading."""

from __future__ import annotations

import re
from typing import Any

import pytest

from db.engine import get_engine
from db.queries import create_run, write_session
from tests.e2e.conftest import AppServer, poll, screenshot

pytestmark = pytest.mark.e2e

SHOWING = re.compile(r"Showing the newest (\d+) matching lines")


def shown_lines(page: Any) -> int:
    """How many lines the Logs page says it shows (0 before any)."""
    match = SHOWING.search(page.locator('[data-testid="stMain"]').inner_text())
    return int(match.group(1)) if match else 0


def test_logs_show_lines_of_a_running_run_arrive(app_server: AppServer, page: Any) -> None:
    engine = get_engine(app_server.database_url)
    with write_session(engine) as session:
        create_run(
            session=session, job="demo", params={"total": 6000, "batch_size": 100, "delay_ms": 400}
        )
    page.goto(f"{app_server.url}/Logs")
    seen: list[int] = []

    def grew_twice() -> bool:
        count = shown_lines(page)
        if count and (not seen or count > seen[-1]):
            seen.append(count)
        return len(seen) >= 3

    poll(grew_twice)
    page.locator("tr[data-level='INFO']").filter(has_text="Extracting from offset 0").wait_for()
    page.wait_for_timeout(500)  # the table draws its cells on a canvas just after the rerun
    screenshot(page, "logs")
    assert seen == sorted(seen)


def test_jobs_page_lists_the_jobs(app_server: AppServer, page: Any) -> None:
    page.goto(f"{app_server.url}/Jobs")
    page.get_by_text("Start a job from the Live page").wait_for()
    screenshot(page, "jobs")
