"""Sign-in to the app and the buttons each role gets, run headless with AppTest (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
import sqlalchemy as sa
from streamlit import config
from streamlit.testing.v1 import AppTest

from db.models import AuditEvent, Role, RunStatus, utcnow
from db.queries import Forbidden, list_audit, list_runs, read_session, write_session
from db.settings import Settings, get_settings
from etl import accounts, commands
from etl.commands import Caller, Source
from tests.factories import make_run
from tests.pages import ROOT, TIMEOUT_S, run_page, texts
from ui import auth

PASSWORD = "correct horse battery"
ADMIN = Caller("root", Source.CLI)
PAGES = [
    "Home.py",
    "pages/1_History.py",
    "pages/2_Statistics.py",
    "pages/3_Logs.py",
    "pages/4_Jobs.py",
    "pages/5_Audit.py",
    "pages/6_Health.py",
]
REFUSED = "{doing} needs the {needs} role; you are signed in as {role}."


@pytest.fixture
def password_auth(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The app with RUNWATCH_AUTH=password, no worker, and an account locked after 3 failures."""
    monkeypatch.setenv("RUNWATCH_AUTH", "password")
    monkeypatch.setenv("RUNWATCH_WORKER_ENABLED", "false")
    monkeypatch.setenv("RUNWATCH_LOCKOUT_ATTEMPTS", "3")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def users(engine: sa.Engine, password_auth: None) -> None:
    """A viewer (vera), an operator (otto) and an admin (ada), all with PASSWORD."""
    for name, role in (("vera", Role.VIEWER), ("otto", Role.OPERATOR), ("ada", Role.ADMIN)):
        accounts.add_user(engine, ADMIN, name, PASSWORD, role)


def sign_in(at: AppTest, name: str, password: str = PASSWORD) -> AppTest:
    """Fill in the sign-in form and submit it, as a person does."""
    at.text_input(key="auth_name").input(name)
    at.text_input(key="auth_password").input(password)
    at.button(key="auth_submit").click().run()
    assert not at.exception
    return at


def page_as(name: str, path: str = "Home.py", query: dict[str, str] | None = None) -> AppTest:
    """The page at `path` with `name` signed in."""
    at = sign_in(run_page(path, query), name)
    assert at.title[0].value != "Sign in to Runwatch", texts(at)
    return at


def audits(engine: sa.Engine, action: str) -> list[AuditEvent]:
    with read_session(engine) as session:
        return list(list_audit(session=session, action=action))


def sidebar(at: AppTest) -> str:
    return "\n".join(str(e.value) for e in (*at.sidebar.markdown, *at.sidebar.caption))


def shows_the_form_only(at: AppTest) -> bool:
    return (
        [t.value for t in at.title] == ["Sign in to Runwatch"]
        and [b.key for b in at.button] == ["auth_submit"]
        and not at.dataframe
        and not at.table
    )


# ---------------------------------------------------------------- password


@pytest.mark.sqlite_only
@pytest.mark.parametrize("path", PAGES)
def test_every_page_shows_the_sign_in_form_and_nothing_else(
    engine: sa.Engine, users: None, path: str
) -> None:
    with write_session(engine) as session:
        make_run(session, status=RunStatus.FAILED)
    at = run_page(path)
    assert shows_the_form_only(at), texts(at)
    assert "Demo catalogue" not in texts(at) and not sidebar(at)


def test_wrong_password_and_unknown_user_get_one_message_and_are_audited(
    engine: sa.Engine, users: None
) -> None:
    at = sign_in(run_page("Home.py"), "otto", "not the password")
    assert [e.value for e in at.error] == ["The user name or the password is wrong."]
    at = sign_in(at, "nobody")
    assert [e.value for e in at.error] == ["The user name or the password is wrong."]
    assert shows_the_form_only(at)
    failed = audits(engine, "sign_in_failed")
    assert {(a.actor, a.details["reason"], a.details["source"]) for a in failed} == {
        ("otto", "password", "app"),
        ("nobody", "unknown", "app"),
    }


def test_failed_sign_ins_lock_the_account_until_a_time(engine: sa.Engine, users: None) -> None:
    at = run_page("Home.py")
    for _ in range(2):
        assert "wrong" in sign_in(at, "otto", "guess guess guess").error[0].value
    at = sign_in(at, "otto", "guess guess guess")
    assert "Too many failed sign-ins: this account is locked until " in at.error[0].value
    at = sign_in(at, "otto")  # the right password is refused too while locked
    assert "locked until" in at.error[0].value and shows_the_form_only(at)


def test_signing_in_shows_home_with_who_and_which_role(engine: sa.Engine, users: None) -> None:
    at = page_as("otto")
    assert at.title[0].value == "Runwatch — Live" and "Demo catalogue" in texts(at)
    assert "Signed in as `otto` · operator" in sidebar(at)
    assert auth.OPEN not in sidebar(at)
    [signed] = audits(engine, "sign_in")
    assert (signed.actor, signed.details["source"], signed.details["role"]) == (
        "otto",
        "app",
        "operator",
    )


def test_sign_out_is_audited_and_shows_the_form_again(engine: sa.Engine, users: None) -> None:
    at = page_as("vera")
    at.button(key="auth_sign_out").click().run()
    assert not at.exception and shows_the_form_only(at)
    assert "You signed out." in texts(at)
    assert [(a.actor, a.details["source"]) for a in audits(engine, "sign_out")] == [("vera", "app")]
    at.run()  # and stays signed out
    assert shows_the_form_only(at)


def test_a_session_ends_after_session_minutes(engine: sa.Engine, users: None) -> None:
    at = page_as("otto")
    held = at.session_state[auth.SESSION]
    minutes = get_settings().session_minutes + 1
    at.session_state[auth.SESSION] = replace(held, since=utcnow() - timedelta(minutes=minutes))
    at.run()
    assert shows_the_form_only(at)
    assert "Your session has ended; sign in again." in texts(at)


def test_a_role_change_applies_at_once_and_a_disabled_user_is_signed_out(
    engine: sa.Engine, users: None
) -> None:
    at = page_as("otto")
    assert not at.button(key="home_run_demo").disabled
    accounts.set_role(engine, ADMIN, "otto", Role.VIEWER)
    at.run()
    assert at.button(key="home_run_demo").disabled
    assert "Signed in as `otto` · viewer" in sidebar(at)
    accounts.disable_user(engine, ADMIN, "otto")
    at.run()
    assert shows_the_form_only(at) and "disabled" in texts(at)


def test_an_open_session_ends_when_an_admin_sets_the_password(
    engine: sa.Engine, users: None
) -> None:
    at = page_as("otto")
    accounts.set_password(engine, ADMIN, "otto", "someone else knew the old one")
    at.run()
    assert shows_the_form_only(at)
    assert "Your password was changed; sign in again with the new one." in texts(at)


@pytest.mark.sqlite_only
def test_sign_in_with_the_database_down_shows_the_banner(
    password_auth: None, database_down: None
) -> None:
    at = run_page("Home.py")
    assert "The database cannot be reached" in at.error[0].value and not at.text_input


# ---------------------------------------------------------------- what each role may do


def test_a_viewer_sees_run_now_and_cancel_disabled_with_the_reason(
    engine: sa.Engine, users: None
) -> None:
    with write_session(engine) as session:
        make_run(session, status=RunStatus.PENDING, ended_at=None, offset=0)
    at = page_as("vera")
    run_now, cancel = at.button(key="home_run_demo"), at.button(key="home_cancel_demo")
    assert run_now.disabled and cancel.disabled
    assert run_now.help == REFUSED.format(doing="Starting a run", needs="operator", role="a viewer")
    assert cancel.help == REFUSED.format(
        doing="Cancelling a run", needs="operator", role="a viewer"
    )


def test_a_viewer_sees_retry_and_resume_disabled_on_history(engine: sa.Engine, users: None) -> None:
    with write_session(engine) as session:
        failed = make_run(session, status=RunStatus.FAILED, offset=400)
    at = page_as("vera", "pages/1_History.py", {"run": str(failed.id)})
    reason = REFUSED.format(doing="Resuming or retrying a run", needs="operator", role="a viewer")
    for key in ("history_retry", "history_resume"):
        assert at.button(key=key).disabled and at.button(key=key).help == reason
    assert not at.get("download_button")[0].proto.disabled  # a viewer may export


def test_an_operator_may_retry_but_not_pause_a_job(engine: sa.Engine, users: None) -> None:
    with write_session(engine) as session:
        failed = make_run(session, status=RunStatus.FAILED, offset=400)
    history = page_as("otto", "pages/1_History.py", {"run": str(failed.id)})
    assert not history.button(key="history_retry").disabled
    assert history.button(key="history_retry").help == "Run the job again from the start"
    pause = page_as("otto", "pages/4_Jobs.py").button(key="jobs_pause_demo")
    assert pause.disabled
    assert pause.help == REFUSED.format(doing="Pausing a job", needs="admin", role="an operator")
    assert not page_as("ada", "pages/4_Jobs.py").button(key="jobs_pause_demo").disabled


def test_an_operators_run_now_starts_a_run_audited_as_them(engine: sa.Engine, users: None) -> None:
    at = page_as("otto")
    at.button(key="home_run_demo").click().run()
    at.button(key="home_confirm").click().run()
    assert not at.exception
    with read_session(engine) as session:
        [run] = list_runs(session=session).runs
    assert run.status == RunStatus.PENDING and run.triggered_by == "otto"
    [trigger] = audits(engine, "trigger")
    assert (trigger.actor, trigger.details["source"]) == ("otto", "app")


def test_a_viewer_forcing_an_action_is_refused_and_audited(engine: sa.Engine, users: None) -> None:
    viewer = Caller("vera", Source.APP, Role.VIEWER)
    with pytest.raises(Forbidden, match="Starting a run needs the operator role"):
        commands.trigger(engine, viewer, "demo")
    [refused] = audits(engine, "forbidden")
    assert (refused.actor, refused.target, refused.details["action"]) == (
        "vera",
        "job:demo",
        "trigger",
    )
    with read_session(engine) as session:
        assert list_runs(session=session).total == 0


def test_a_stale_page_cannot_bypass_the_command_layer(engine: sa.Engine, users: None) -> None:
    """Cancel was drawn for an operator who has since become a viewer: the click is refused."""
    with write_session(engine) as session:
        run = make_run(session, status=RunStatus.PENDING, ended_at=None, offset=0)
    at = page_as("otto")
    cancel = at.button(key="home_cancel_demo")
    assert not cancel.disabled
    accounts.set_role(engine, ADMIN, "otto", Role.VIEWER)
    cancel.click().run()
    assert not at.exception
    assert "Cancelling a run needs the operator role" in texts(at)
    assert [a.actor for a in audits(engine, "forbidden")] == ["otto"]
    with read_session(engine) as session:
        assert list_runs(session=session).runs[0].status == RunStatus.PENDING == run.status


# ---------------------------------------------------------------- sign-in off


@pytest.mark.parametrize(
    ("address", "local"),
    [
        (None, True),
        ("", True),
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("runwatch.example.org", False),
    ],
)
def test_which_addresses_count_as_local(address: str | None, local: bool) -> None:
    assert auth.is_local(address) is local
    refusal = auth.open_refusal("none", address)
    assert (refusal is None) is local
    assert auth.open_refusal("password", address) is None


@pytest.mark.sqlite_only
def test_sign_in_off_says_so_and_everyone_is_admin(engine: sa.Engine, no_worker: None) -> None:
    at = run_page("Home.py")
    assert auth.OPEN in sidebar(at)
    assert not at.button(key="home_run_demo").disabled


@pytest.mark.sqlite_only
def test_sign_in_off_on_a_public_address_shows_only_the_refusal(
    engine: sa.Engine, no_worker: None
) -> None:
    before = config.get_option("server.address")
    config.set_option("server.address", "0.0.0.0")
    try:
        at = run_page("Home.py")
    finally:
        config.set_option("server.address", before)
    assert [e.value for e in at.error] == [auth.open_refusal("none", "0.0.0.0")]
    assert "RUNWATCH_AUTH=password" in at.error[0].value
    assert not at.title and not at.button


# ---------------------------------------------------------------- identity provider


@pytest.fixture
def oidc_auth(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The app with RUNWATCH_AUTH=oidc and no worker."""
    monkeypatch.setenv("RUNWATCH_AUTH", "oidc")
    monkeypatch.setenv("RUNWATCH_WORKER_ENABLED", "false")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def as_user(user: dict[str, object]) -> AppTest:
    """Home with `user` as what the identity provider said (st.user)."""
    at = AppTest.from_file(str(ROOT / "Home.py"), default_timeout=TIMEOUT_S)
    at.user = dict(user)
    at.run()
    assert not at.exception
    return at


@pytest.mark.sqlite_only
def test_oidc_without_a_provider_says_how_to_set_one_up(engine: sa.Engine, oidc_auth: None) -> None:
    at = run_page("Home.py")  # AppTest's user has no is_logged_in: no [auth] section
    assert [e.value for e in at.error] == [auth.NO_PROVIDER] and not at.title


@pytest.mark.sqlite_only
def test_oidc_before_sign_in_offers_the_provider(engine: sa.Engine, oidc_auth: None) -> None:
    at = as_user({"is_logged_in": False})
    assert [t.value for t in at.title] == ["Sign in to Runwatch"]
    assert [b.label for b in at.button] == ["Sign in"]


def test_oidc_signs_in_once_with_the_claimed_role(engine: sa.Engine, oidc_auth: None) -> None:
    at = as_user({"is_logged_in": True, "email": "eve@example.org", "runwatch_role": ["operator"]})
    assert at.title[0].value == "Runwatch — Live"
    assert "Signed in as `eve@example.org` · operator" in sidebar(at)
    assert not at.button(key="home_run_demo").disabled
    at.run()
    [signed] = audits(engine, "sign_in")
    assert (signed.actor, signed.details["method"], signed.details["source"]) == (
        "eve@example.org",
        "oidc",
        "app",
    )
    at.button(key="auth_sign_out").click().run()
    assert [t.value for t in at.title] == ["Sign in to Runwatch"]
    assert [a.actor for a in audits(engine, "sign_out")] == ["eve@example.org"]


def test_oidc_role_comes_from_the_user_of_that_email(engine: sa.Engine, oidc_auth: None) -> None:
    accounts.add_user(engine, ADMIN, "eve@example.org", PASSWORD, Role.VIEWER)
    at = as_user({"is_logged_in": True, "email": "eve@example.org", "runwatch_role": "admin"})
    assert "Signed in as `eve@example.org` · viewer" in sidebar(at)
    assert at.button(key="home_run_demo").disabled
    accounts.disable_user(engine, ADMIN, "eve@example.org")
    at.run()
    assert [t.value for t in at.title] == ["Sign in to Runwatch"] and "disabled" in texts(at)
    again = as_user({"is_logged_in": True, "email": "eve@example.org"})  # a new browser session
    assert [t.value for t in again.title] == ["Sign in to Runwatch"] and "disabled" in texts(again)
    [failed] = audits(engine, "sign_in_failed")
    assert (failed.details["reason"], failed.details["method"]) == ("disabled", "oidc")
