"""Alerts in a real browser: a run fails, and its notification appears on Home with a toast."""

from __future__ import annotations

from typing import Any

import pytest

from db.engine import get_engine
from etl import commands
from etl.commands import Caller, Source
from tests.e2e.conftest import AppServer, screenshot

pytestmark = pytest.mark.e2e
ADMIN = Caller("admin", Source.CLI)


@pytest.fixture
def app_env() -> dict[str, str]:
    """Alert checks twice a second in the app's worker."""
    return {"RUNWATCH_ALERT_CHECK_S": "0.5"}


def test_a_failed_run_shows_up_in_the_notifications_on_home(
    app_server: AppServer, page: Any
) -> None:
    engine = get_engine(app_server.database_url)
    commands.add_alert_rule(engine, ADMIN, kind="failed", channel="app")
    page.goto(app_server.url)
    page.get_by_text("Demo catalogue").wait_for()
    page.get_by_text("No alerts yet").wait_for(state="attached")  # in the closed expander
    run = commands.trigger(engine, ADMIN, "demo", {"total": 100, "batch_size": 10, "fail_at": 50})
    failed = f"Run #{run.id} of demo failed: RuntimeError"
    page.locator('[data-testid="stToast"]').filter(has_text=failed).wait_for(timeout=90_000)
    page.get_by_text("Notifications · 1 unread").wait_for()
    page.locator('[data-testid="stTable"]').filter(has_text=failed).wait_for()
    screenshot(page, "home-alert")
    page.locator(".st-key-home_alerts_read button").click()
    page.get_by_text("1 alert marked read.").wait_for()
