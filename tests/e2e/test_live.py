"""The Live page in a real browser: Run now, live progress, the toast, and Pause auto-refresh."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any

import pytest

from db.engine import get_engine
from db.models import RunStatus, utcnow
from db.queries import create_run, get_run, read_session, write_session
from tests.e2e.conftest import AppServer, poll, screenshot
from tests.factories import make_run

pytestmark = pytest.mark.e2e

# 40 batches of 100 with 400 ms each: about 16 s, so several 2 s refreshes see it move
SMALL_RUN = '{"total": 4000, "batch_size": 100, "delay_ms": 400, "seed": 42}'
PERCENT = re.compile(r"(\d+)%")


def progress_percent(page: Any) -> int | None:
    """The % on the demo job's progress bar, or None when no bar is shown."""
    bars = page.locator('[data-testid="stProgress"]')
    if bars.count() == 0:
        return None
    match = PERCENT.search(bars.first.inner_text())
    return int(match.group(1)) if match else None


def start_small_run(page: Any) -> None:
    """Run now → edit the parameters → Confirm, as a user does."""
    page.locator(".st-key-home_run_demo button").click()
    params = page.locator(".st-key-home_params_demo textarea")
    params.fill(SMALL_RUN)
    page.locator(".st-key-home_confirm button").click()
    page.get_by_text("is queued and starts shortly").wait_for()


def seed_history(database_url: str) -> None:
    """Two earlier successful demo runs (4,000 records in 16 and 20 s), so the ETA has a range."""
    with write_session(get_engine(database_url)) as session:
        for minutes, seconds in ((30, 16), (20, 20)):
            started = utcnow() - timedelta(minutes=minutes)
            make_run(
                session,
                started_at=started,
                ended_at=started + timedelta(seconds=seconds),
                total_records=4000,
                offset=4000,
                records_loaded=4000,
                counters={"subjects_processed": 4000, "categories_processed": 80},
            )


def test_run_now_progress_finish_and_toast(app_server: AppServer, page: Any) -> None:
    seed_history(app_server.database_url)
    page.goto(app_server.url)
    page.get_by_text("Demo catalogue").wait_for()
    screenshot(page, "home-idle")
    start_small_run(page)
    seen: list[int] = []

    def moved_twice() -> bool:
        percent = progress_percent(page)
        if percent is not None and (not seen or percent > seen[-1]):
            seen.append(percent)
            if len(seen) == 2:
                screenshot(page, "home-running")
        return len(seen) >= 3 and seen[-1] < 100

    poll(moved_twice)
    assert seen == sorted(seen) and len(set(seen)) >= 3
    assert (
        "unknown"
        not in page.locator('[data-testid="stMetric"]').filter(has_text="ETA").inner_text()
    )
    page.locator('[data-testid="stToast"]').filter(has_text="finished").wait_for(timeout=90_000)
    page.locator('[data-testid="stMarkdownContainer"]').filter(has_text="Finished").first.wait_for()
    screenshot(page, "home-finished")


def test_pause_freezes_the_page_while_a_run_advances(app_server: AppServer, page: Any) -> None:
    engine = get_engine(app_server.database_url)
    with write_session(engine) as session:
        run = create_run(
            session=session, job="demo", params={"total": 4000, "batch_size": 100, "delay_ms": 300}
        )
    page.goto(app_server.url)
    poll(lambda: progress_percent(page))
    page.locator(".st-key-home_pause label").click()
    page.get_by_text("auto-refresh paused").wait_for()
    time.sleep(1)  # let the rerun that the toggle caused settle before taking the reference
    main = page.locator('[data-testid="stMain"]')
    before = main.inner_text()
    offset_before = _offset(engine, run.id)
    time.sleep(5)
    assert main.inner_text() == before
    assert _offset(engine, run.id) > offset_before or _status(engine, run.id) != RunStatus.RUNNING


def _offset(engine: Any, run_id: int | None) -> int:
    with read_session(engine) as session:
        return get_run(session=session, run_id=run_id or 0, fresh=True).offset


def _status(engine: Any, run_id: int | None) -> str:
    with read_session(engine) as session:
        return get_run(session=session, run_id=run_id or 0, fresh=True).status
