"""Sign-in in a real browser (RUNWATCH_AUTH=password): a viewer's Run now is greyed out, an operator's starts a run."""

from __future__ import annotations

from typing import Any

import pytest

from db.engine import get_engine
from db.models import Role
from db.queries import list_audit, list_runs, read_session
from etl import accounts, commands
from etl.commands import Caller, Source
from tests.e2e.conftest import AppServer, poll, wait_for_app

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"
VIEWER_REFUSED = "Starting a run needs the operator role; you are signed in as a viewer."


@pytest.fixture
def app_env() -> dict[str, str]:
    """The app process signs people in with a password."""
    return {"RUNWATCH_AUTH": "password"}


def add_users(database_url: str) -> None:
    """A viewer (vera) and an operator (otto), made by an admin as the CLI would."""
    engine = get_engine(database_url)
    admin = Caller("root", Source.CLI)
    accounts.add_user(engine, admin, "vera", PASSWORD, Role.VIEWER)
    accounts.add_user(engine, admin, "otto", PASSWORD, Role.OPERATOR)


def sign_in(page: Any, name: str) -> None:
    """Type the name and password into the form and submit it, then wait for Home."""
    page.locator(".st-key-auth_name input").fill(name)
    page.locator(".st-key-auth_password input").fill(PASSWORD)
    page.locator(".st-key-auth_submit button").click()
    page.get_by_text("Demo catalogue").wait_for()


def test_a_viewer_sees_run_now_disabled_and_an_operator_starts_a_run(
    app_server: AppServer, page: Any
) -> None:
    add_users(app_server.database_url)
    page.goto(app_server.url)
    page.get_by_text("Sign in to Runwatch").wait_for()
    assert page.locator(".st-key-home_run_demo").count() == 0
    sign_in(page, "vera")
    page.get_by_text("Signed in as").wait_for()
    wait_for_app(page)
    run_now = page.locator(".st-key-home_run_demo button").first  # with help: drawn twice
    assert run_now.is_disabled()
    page.locator(".st-key-home_run_demo [data-testid=stTooltipHoverTarget]").hover()
    page.get_by_text(VIEWER_REFUSED).wait_for()

    page.locator(".st-key-auth_sign_out button").click()
    page.get_by_text("You signed out.").wait_for()
    sign_in(page, "otto")
    assert page.locator(".st-key-home_run_demo button").is_enabled()
    page.locator(".st-key-home_run_demo button").click()
    page.locator(".st-key-home_params_demo textarea").fill('{"total": 200, "batch_size": 100}')
    page.locator(".st-key-home_confirm button").click()
    page.get_by_text("is queued and starts shortly").wait_for()

    engine = get_engine(app_server.database_url)

    def started_by_otto() -> bool:
        with read_session(engine) as session:
            runs = list_runs(session=session).runs
            triggers = list_audit(session=session, action="trigger")
        return [r.triggered_by for r in runs] == ["otto"] and [
            (a.actor, a.details["source"]) for a in triggers
        ] == [("otto", "app")]

    poll(started_by_otto, timeout_s=30)


def test_an_open_home_page_follows_a_role_change_and_ends_for_a_disabled_user(
    app_server: AppServer, page: Any
) -> None:
    """A tick reruns only Home's live board, and the board checks the sign-in again each time."""
    add_users(app_server.database_url)
    engine = get_engine(app_server.database_url)
    admin = Caller("root", Source.CLI)
    commands.trigger(engine, admin, "demo", {"total": 100_000, "batch_size": 10, "delay_ms": 200})
    page.goto(app_server.url)
    page.get_by_text("Sign in to Runwatch").wait_for()
    sign_in(page, "vera")
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text("viewer").wait_for()
    assert page.locator(".st-key-home_run_demo button").first.is_disabled()

    accounts.set_role(engine, admin, "vera", Role.OPERATOR)
    sidebar.get_by_text("operator").wait_for(timeout=30_000)
    poll(lambda: page.locator(".st-key-home_run_demo button").first.is_enabled(), timeout_s=30)

    accounts.disable_user(engine, admin, "vera")
    page.get_by_text("Sign in to Runwatch").wait_for(timeout=30_000)
    assert page.locator(".st-key-home_run_demo").count() == 0
