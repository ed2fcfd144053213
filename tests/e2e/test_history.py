"""History and Statistics in a real browser: filter by status, Download CSV, compare with the database."""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta
from typing import Any

import pytest

from db.engine import get_engine
from db.models import utcnow
from db.queries import RunFilters, iter_runs, list_audit, read_session, write_session
from tests.e2e.conftest import AppServer, poll, screenshot, wait_for_app
from tests.export_reference import csv_bytes
from tests.factories import make_run

pytestmark = pytest.mark.e2e

FORMULA = "=cmd|' /C calc'!A0"
WAIT_MS = 120_000  # the machine is shared and slow: wait generously, never assert on time


def seed(database_url: str) -> None:
    """Eight days of runs of two jobs: mostly finished, some failed (one with a formula)."""
    start = utcnow() - timedelta(days=8)
    with write_session(get_engine(database_url)) as session:
        for i in range(24):
            failed = i % 4 == 3
            make_run(
                session,
                job="csv_import" if i % 3 == 0 else "demo",
                started_at=start + timedelta(hours=8 * i),
                ended_at=start + timedelta(hours=8 * i, seconds=20 + 7 * (i % 5)),
                status="failed" if failed else "finished",
                records_loaded=500 + 37 * i,
                error_type="JobError" if failed else None,
                error_message=(FORMULA if i == 3 else f"source timed out (attempt {i})")
                if failed
                else None,
            )


def test_filter_by_status_and_download_csv_equals_the_database(
    app_server: AppServer, page: Any, tmp_path: Any
) -> None:
    seed(app_server.database_url)
    page.goto(f"{app_server.url}/History")
    wait_for_app(page)
    page.get_by_text("of 24", exact=False).first.wait_for(timeout=WAIT_MS)
    status = page.locator(".st-key-history_status input")
    status.click()
    status.fill("failed")
    status.press("Enter")
    page.keyboard.press("Escape")
    page.get_by_text("Runs 1–6 of 6", exact=False).wait_for(timeout=WAIT_MS)
    poll(lambda: "status=failed" in page.url)
    wait_for_app(page)
    screenshot(page, "history")
    with page.expect_download(timeout=WAIT_MS) as download_info:
        page.get_by_role("button", name="Download CSV").click()
    path = tmp_path / "export.csv"
    download_info.value.save_as(path)
    data = path.read_bytes()
    engine = get_engine(app_server.database_url)
    with read_session(engine) as session:
        runs = list(iter_runs(session=session, filters=RunFilters(statuses=("failed",))))
        expected = csv_bytes(runs)
        audit = list_audit(session=session, action="export")
    assert data == expected
    assert len(data.decode().splitlines()) == 1 + 6
    assert "'" + FORMULA in data.decode()
    assert audit and audit[0].details["rows"] == 6
    assert audit[0].details["sha256"] == hashlib.sha256(data).hexdigest()
    page.reload()  # the filtered view lives in the URL, so it survives a reload
    wait_for_app(page)
    page.get_by_text("Runs 1–6 of 6", exact=False).wait_for(timeout=WAIT_MS)


def test_statistics_page_draws_cards_and_charts(app_server: AppServer, page: Any) -> None:
    seed(app_server.database_url)
    page.goto(f"{app_server.url}/Statistics")
    wait_for_app(page)
    page.get_by_text("Mean time to recovery").wait_for(timeout=WAIT_MS)
    poll(lambda: page.locator('[data-testid="stVegaLiteChart"]').count() >= 4)
    page.locator(
        '[data-testid="stVegaLiteChart"] canvas, [data-testid="stVegaLiteChart"] svg'
    ).first.wait_for()
    time.sleep(1)  # let the charts finish their first paint before the picture
    screenshot(page, "statistics")
