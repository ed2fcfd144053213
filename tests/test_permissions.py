"""Who may do what: every command × every role, through the command layer, the CLI and the HTTP API.

A refused action raises Forbidden (CLI exit 4, HTTP 403) and writes exactly one `forbidden` audit
row: runs, jobs, users and tokens are as they were. Both backends, real servers, no mocks.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import select

from api.app import hide_query_tokens, is_loopback
from db.models import Alert, AlertRule, ApiToken, AppUser, AuditEvent, Job, Role, Run, RunStatus
from db.queries import Forbidden, read_session, write_session
from db.settings import Settings, get_settings
from etl import accounts, commands
from etl.cli import main
from etl.commands import Caller, Source
from etl.schedules import Catchup, Policy
from tests.apiserver import running_api
from tests.factories import make_run

ADMIN = Caller("root", Source.CLI)
PASSWORD = "correct horse battery"
OPERATOR, VIEWER = Role.OPERATOR, Role.VIEWER


@dataclass
class World:
    """What the commands act on: one object for each, so every command can succeed once."""

    pending: int  # a pending run of `demo`, to cancel
    resumable: int  # a failed run of `resumable`, to resume
    retryable: int  # a failed run of `retryable`, to retry
    tick: Any  # the next tick of job `cron` (scheduled every minute)
    rule: int  # an alert rule, to remove


@pytest.fixture
def world(engine: sa.Engine) -> World:
    """Jobs, runs, users and a token to act on; the audit trail is empty after them."""
    for name in ("nightly", "resumable", "retryable", "pausable", "paused"):
        commands.add_job(engine, ADMIN, name=name, kind="demo", params={"total": 10})
    cron, _ = commands.add_job(engine, ADMIN, name="cron", kind="demo", schedule="* * * * *")
    commands.pause(engine, ADMIN, "paused")
    accounts.add_user(engine, ADMIN, "ana", PASSWORD, Role.OPERATOR)
    accounts.add_user(engine, ADMIN, "dis", PASSWORD, Role.VIEWER)
    accounts.disable_user(engine, ADMIN, "dis")
    accounts.create_token(engine, ADMIN, "old", Role.VIEWER)
    rule = commands.add_alert_rule(engine, ADMIN, kind="failed", channel="app")
    with write_session(engine) as session:
        ids = [
            make_run(session, job="demo", status=RunStatus.PENDING, ended_at=None).id,
            make_run(session, job="resumable", status=RunStatus.FAILED, offset=4).id,
            make_run(session, job="retryable", status=RunStatus.FAILED).id,
        ]
        session.execute(sa.delete(AuditEvent))
    pending, resumable, retryable = (int(i or 0) for i in ids)
    return World(pending, resumable, retryable, cron.next_run_at, int(rule.id or 0))


Command = Callable[[sa.Engine, Caller, World], object]
SCHEDULE = Policy(Catchup.LATEST, 10, timedelta(seconds=60))


@dataclass(frozen=True)
class Case:
    """What one command needs, and how its refusal is audited."""

    needs: Role
    action: str  # the action a refusal's audit row names
    target: str  # its target, {pending}, {resumable} and {retryable} filled in from the World


def case(needs: Role, action: str, target: str = "") -> Case:
    return Case(needs, action, target)


COMMANDS: dict[str, tuple[Case, Command]] = {
    "trigger": (
        case(OPERATOR, "trigger", "job:nightly"),
        lambda e, c, w: commands.trigger(e, c, "nightly"),
    ),
    "cancel": (
        case(OPERATOR, "cancel", "run:{pending}"),
        lambda e, c, w: commands.cancel(e, c, w.pending),
    ),
    "resume": (
        case(OPERATOR, "retry", "run:{resumable}"),
        lambda e, c, w: commands.resume(e, c, w.resumable),
    ),
    "retry": (
        case(OPERATOR, "retry", "run:{retryable}"),
        lambda e, c, w: commands.retry(e, c, w.retryable),
    ),
    "run_schedule": (
        case(OPERATOR, "trigger", "job:cron"),
        lambda e, c, w: commands.run_schedule(
            e, c, "cron", seen=w.tick, now=w.tick + timedelta(seconds=1), policy=SCHEDULE
        ),
    ),
    "add_job": (
        case(Role.ADMIN, "config_change", "job:fresh"),
        lambda e, c, w: commands.add_job(e, c, name="fresh", kind="demo"),
    ),
    "pause": (
        case(Role.ADMIN, "pause", "job:pausable"),
        lambda e, c, w: commands.pause(e, c, "pausable"),
    ),
    "unpause": (
        case(Role.ADMIN, "unpause", "job:paused"),
        lambda e, c, w: commands.unpause(e, c, "paused"),
    ),
    "export": (
        case(VIEWER, "export", "runs"),
        lambda e, c, w: list(commands.export(e, c, "csv")),
    ),
    "export_audit": (
        case(VIEWER, "export", "audit"),
        lambda e, c, w: list(commands.export_audit(e, c, "json")),
    ),
    "add_user": (
        case(Role.ADMIN, "user_add", "user:newbie"),
        lambda e, c, w: accounts.add_user(e, c, "newbie", PASSWORD, Role.VIEWER),
    ),
    "set_password": (
        case(Role.ADMIN, "user_password", "user:ana"),
        lambda e, c, w: accounts.set_password(e, c, "ana", "another password!"),
    ),
    "set_role": (
        case(Role.ADMIN, "user_role", "user:ana"),
        lambda e, c, w: accounts.set_role(e, c, "ana", "admin"),
    ),
    "disable_user": (
        case(Role.ADMIN, "user_disable", "user:ana"),
        lambda e, c, w: accounts.disable_user(e, c, "ana"),
    ),
    "enable_user": (
        case(Role.ADMIN, "user_enable", "user:dis"),
        lambda e, c, w: accounts.enable_user(e, c, "dis"),
    ),
    "list_users": (
        case(Role.ADMIN, "user_list", "users"),
        lambda e, c, w: accounts.list_users(e, c),
    ),
    "create_token": (
        case(Role.ADMIN, "token_create", "token:new"),
        lambda e, c, w: accounts.create_token(e, c, "new", Role.VIEWER),
    ),
    "list_tokens": (
        case(Role.ADMIN, "token_list", "tokens"),
        lambda e, c, w: accounts.list_tokens(e, c),
    ),
    "revoke_token": (
        case(Role.ADMIN, "token_revoke", "token:old"),
        lambda e, c, w: accounts.revoke_token(e, c, "old"),
    ),
    "add_alert_rule": (
        case(Role.ADMIN, "alert_rule", "alert_rule"),
        lambda e, c, w: commands.add_alert_rule(e, c, kind="failed", channel="app"),
    ),
    "remove_alert_rule": (
        case(Role.ADMIN, "alert_rule", "alert_rule:{rule}"),
        lambda e, c, w: commands.remove_alert_rule(e, c, w.rule),
    ),
    "test_alert": (
        case(Role.ADMIN, "alert_test", "channel:app"),
        lambda e, c, w: commands.test_alert(e, c, "app"),
    ),
    "mark_alerts_read": (
        case(VIEWER, "alerts_read", "alerts"),
        lambda e, c, w: commands.mark_alerts_read(e, c),
    ),
}

# the CLI's commands; with RUNWATCH_TOKEN set the CLI acts as that token
CLI: dict[str, tuple[Case, str]] = {
    "run": (case(OPERATOR, "trigger", "job:nightly"), "run nightly --detach"),
    "cancel": (case(OPERATOR, "cancel", "run:{pending}"), "cancel {pending}"),
    "resume": (case(OPERATOR, "retry", "run:{resumable}"), "resume {resumable} --detach"),
    "retry": (
        case(OPERATOR, "retry", "run:{retryable}"),
        "resume {retryable} --restart --detach",
    ),
    "add-job": (case(Role.ADMIN, "config_change", "job:fresh"), "add-job fresh --kind demo"),
    "pause": (case(Role.ADMIN, "pause", "job:pausable"), "pause pausable"),
    "unpause": (case(Role.ADMIN, "unpause", "job:paused"), "unpause paused"),
    "export": (case(VIEWER, "export", "runs"), "runs --format csv -o {folder}/runs.csv"),
    "user add": (
        case(Role.ADMIN, "user_add", "user:newbie"),
        "user add newbie --role viewer --password-stdin",
    ),
    "user passwd": (
        case(Role.ADMIN, "user_password", "user:ana"),
        "user passwd ana --password-stdin",
    ),
    "user role": (case(Role.ADMIN, "user_role", "user:ana"), "user role ana admin"),
    "user disable": (case(Role.ADMIN, "user_disable", "user:ana"), "user disable ana"),
    "user enable": (case(Role.ADMIN, "user_enable", "user:dis"), "user enable dis"),
    "user list": (case(Role.ADMIN, "user_list", "users"), "user list"),
    "token create": (
        case(Role.ADMIN, "token_create", "token:new"),
        "token create new --role viewer",
    ),
    "token list": (case(Role.ADMIN, "token_list", "tokens"), "token list"),
    "token revoke": (case(Role.ADMIN, "token_revoke", "token:old"), "token revoke old"),
    "alerts add": (
        case(Role.ADMIN, "alert_rule", "alert_rule"),
        "alerts add --kind failed --channel app",
    ),
    "alerts remove": (case(Role.ADMIN, "alert_rule", "alert_rule:{rule}"), "alerts remove {rule}"),
    "alerts test": (case(Role.ADMIN, "alert_test", "channel:app"), "alerts test app"),
    "alerts list": (case(VIEWER, "read"), "alerts list"),
    "jobs": (case(VIEWER, "read"), "jobs"),
    "runs": (case(VIEWER, "read"), "runs"),
    "audit verify": (case(VIEWER, "read"), "audit verify"),
}

# the API's changes and exports (method, path, query); reads are READS
API: dict[str, tuple[Case, str, str, dict[str, str]]] = {
    "trigger": (case(OPERATOR, "trigger", "job:nightly"), "POST", "/api/etl/trigger", {}),
    "cancel": (
        case(OPERATOR, "cancel", "run:{pending}"),
        "POST",
        "/api/etl/runs/{pending}/cancel",
        {},
    ),
    "resume": (
        case(OPERATOR, "retry", "run:{resumable}"),
        "POST",
        "/api/etl/runs/{resumable}/retry",
        {},
    ),
    "retry": (
        case(OPERATOR, "retry", "run:{retryable}"),
        "POST",
        "/api/etl/runs/{retryable}/retry",
        {"restart": "true"},
    ),
    "pause": (
        case(Role.ADMIN, "pause", "job:pausable"),
        "POST",
        "/api/etl/jobs/pausable/pause",
        {},
    ),
    "unpause": (
        case(Role.ADMIN, "unpause", "job:paused"),
        "POST",
        "/api/etl/jobs/paused/unpause",
        {},
    ),
    "add_alert_rule": (
        case(Role.ADMIN, "alert_rule", "alert_rule"),
        "POST",
        "/api/alerts/rules",
        {},
    ),
    "remove_alert_rule": (
        case(Role.ADMIN, "alert_rule", "alert_rule:{rule}"),
        "DELETE",
        "/api/alerts/rules/{rule}",
        {},
    ),
    "export.csv": (case(VIEWER, "export", "runs"), "GET", "/api/etl/export.csv", {}),
    "export.json": (case(VIEWER, "export", "runs"), "GET", "/api/etl/export.json", {}),
}
READS = [
    "/api/etl/status",
    "/api/etl/logs",
    "/api/etl/jobs",
    "/api/etl/runs/{pending}",
    "/api/etl/runs/{pending}/events",
    "/api/etl/logs/realtime/stats",
    "/api/alerts",
    "/api/alerts/rules",
    "/api/health/details",
    "/metrics",
]
BODIES = {"trigger": {"job": "nightly"}, "add_alert_rule": {"kind": "failed", "channel": "app"}}


def state(engine: sa.Engine) -> list[list[tuple[Any, ...]]]:
    """Every run, job, user and token as rows (a token's last use aside): what a refusal leaves be."""
    tables = [Run, Job, AlertRule, Alert, AppUser, ApiToken]
    with read_session(engine) as session:
        rows = [[tuple(r) for r in session.execute(sa.select(t)).all()] for t in tables]  # type: ignore[call-overload]
        tokens = sa.select(*(c for c in ApiToken.__table__.c if c.name != "last_used_at"))  # type: ignore[attr-defined]
        rows[-1] = [tuple(r) for r in session.execute(tokens).all()]
    return rows


def audits(engine: sa.Engine) -> list[AuditEvent]:
    with read_session(engine) as session:
        return list(session.exec(select(AuditEvent).order_by(AuditEvent.id)).all())  # type: ignore[arg-type]


@dataclass
class Before:
    """The state and the audit trail's length before a command."""

    state: list[list[tuple[Any, ...]]]
    audited: int

    @classmethod
    def take(cls, engine: sa.Engine) -> Before:
        return cls(state(engine), len(audits(engine)))


def assert_refused_and_audited(
    engine: sa.Engine, before: Before, what: Case, world: World, caller: Caller
) -> None:
    """Nothing changed but one `forbidden` audit row naming the action, the role and the role needed."""
    assert state(engine) == before.state, what
    [row] = audits(engine)[before.audited :]
    assert (row.actor, row.action, row.target) == (
        caller.actor,
        "forbidden",
        what.target.format(**vars(world)),
    )
    assert row.details == {
        "action": what.action,
        "role": str(caller.role),
        "needs": str(what.needs),
        "source": str(caller.source),
    }


def assert_done(engine: sa.Engine, before: Before, what: Case) -> None:
    """Allowed: no `forbidden` row (and a change is audited as its action)."""
    done = [row.action for row in audits(engine)[before.audited :]]
    assert "forbidden" not in done, what
    assert what.action in done or what.action in ("read", "user_list", "token_list"), what


# ---------------------------------------------------------------- the roles


def test_each_role_allows_what_the_roles_below_it_allow() -> None:
    allowed = {(role, needed) for role in Role for needed in Role if role.allows(needed)}
    assert allowed == {
        (VIEWER, VIEWER),
        (OPERATOR, VIEWER),
        (OPERATOR, OPERATOR),
        (Role.ADMIN, VIEWER),
        (Role.ADMIN, OPERATOR),
        (Role.ADMIN, Role.ADMIN),
    }


def test_every_action_has_a_permission_and_every_permission_a_command() -> None:
    actions = {what.action for what, _ in COMMANDS.values()}
    assert actions == set(commands.PERMISSIONS)
    for what, _ in COMMANDS.values():
        assert commands.PERMISSIONS[what.action].needs == what.needs


def test_refusals_of_access_exit_4_and_answer_401_or_403() -> None:
    forbidden = Forbidden("Starting a run", OPERATOR, VIEWER)
    assert (
        str(forbidden) == "Starting a run needs the operator role; you are signed in as a viewer."
    )
    assert commands.refusal(forbidden) == commands.Refusal(4, 403)
    for error in (accounts.Unauthenticated("x"), accounts.SignInFailed()):
        assert commands.refusal(error) == commands.Refusal(4, 401)


# ---------------------------------------------------------------- the command layer


@pytest.mark.parametrize("role", list(Role))
def test_every_command_through_the_command_layer(
    engine: sa.Engine, world: World, role: Role
) -> None:
    caller = Caller("someone", Source.APP, role)
    for what, command in COMMANDS.values():
        before = Before.take(engine)
        if not role.allows(what.needs):
            with pytest.raises(Forbidden, match=f"needs the {what.needs} role; you are signed in"):
                command(engine, caller, world)
            assert_refused_and_audited(engine, before, what, world, caller)
            continue
        command(engine, caller, world)
        assert_done(engine, before, what)


# ---------------------------------------------------------------- the CLI


@pytest.fixture
def as_token(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> Callable[[Role], Caller]:
    """Makes the CLI act as a new API token of a role (RUNWATCH_TOKEN); returns that caller."""

    def use(role: Role) -> Caller:
        raw = accounts.create_token(engine, ADMIN, f"as-{role}", role)
        monkeypatch.setenv("RUNWATCH_TOKEN", raw)
        get_settings.cache_clear()
        return Caller(f"token:as-{role}", Source.CLI, role)

    return use


@pytest.mark.parametrize("role", list(Role))
def test_every_command_through_the_cli(
    engine: sa.Engine,
    world: World,
    role: Role,
    as_token: Callable[[Role], Caller],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caller = as_token(role)
    for name, (what, line) in CLI.items():
        before = Before.take(engine)
        monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
        argv = line.format(folder=tmp_path, **vars(world)).split()
        code, printed = main(argv), capsys.readouterr()
        if not role.allows(what.needs):
            assert code == 4, (name, printed)
            assert printed.err.startswith("runwatch: ") and printed.err.count("\n") == 1
            assert f"needs the {what.needs} role; you are signed in as a" in printed.err
            assert_refused_and_audited(engine, before, what, world, caller)
            continue
        assert code == 0, (name, printed)
        assert_done(engine, before, what)


def test_the_cli_refuses_a_revoked_or_malformed_token_whatever_the_command(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = accounts.create_token(engine, ADMIN, "gone", Role.ADMIN)
    accounts.revoke_token(engine, ADMIN, "gone")
    for token, message in ((raw, "unknown or was revoked"), ("hunter2", "malformed")):
        monkeypatch.setenv("RUNWATCH_TOKEN", token)
        get_settings.cache_clear()
        assert main(["jobs"]) == 4
        err = capsys.readouterr().err
        assert err.startswith("runwatch: ") and message in err and err.count("\n") == 1


def test_token_create_prints_the_token_once_and_list_never_shows_it(
    engine: sa.Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "create", "grafana", "--role", "viewer"]) == 0
    printed = capsys.readouterr()
    raw = printed.out.strip()
    assert raw.startswith("rwt_") and "will not be shown again" in printed.err
    assert main(["token", "list"]) == 0
    listed = capsys.readouterr().out
    with read_session(engine) as session:
        digest = session.exec(select(ApiToken.token_hash)).one()
    assert "grafana" in listed and raw not in listed and digest not in listed


def test_user_add_without_a_terminal_or_stdin_password_says_how(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["user", "add", "admin", "--role", "admin"]) == 2
    assert "--password-stdin" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("too short\n"))
    assert main(["user", "add", "admin", "--role", "admin", "--password-stdin"]) == 2
    assert "at least 12 characters" in capsys.readouterr().err


# ---------------------------------------------------------------- the HTTP API


@pytest.fixture
def auth_api(
    engine: sa.Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The API with RUNWATCH_AUTH=password in a real uvicorn server; yields its URL."""
    monkeypatch.setenv("RUNWATCH_AUTH", "password")
    get_settings.cache_clear()
    with running_api(settings.database_url, settings=get_settings()) as url:
        yield url


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("role", list(Role))
def test_every_command_through_the_api(
    engine: sa.Engine, world: World, auth_api: str, role: Role
) -> None:
    token = accounts.create_token(engine, ADMIN, f"as-{role}", role)
    caller = Caller(f"token:as-{role}", Source.API, role)
    with httpx.Client(base_url=auth_api, headers=bearer(token), timeout=30) as http:
        for path in READS:
            assert http.get(path.format(**vars(world))).status_code == 200, path
        for name, (what, method, path, query) in API.items():
            before = Before.take(engine)
            body = BODIES.get(name)
            url = path.format(**vars(world))
            answer = http.request(method, url, params=query, json=body)
            if not role.allows(what.needs):
                assert answer.status_code == 403, (name, answer.text)
                assert answer.json()["error"] == "Forbidden"
                assert f"needs the {what.needs} role" in answer.json()["detail"]
                assert_refused_and_audited(engine, before, what, world, caller)
                continue
            assert answer.status_code in (200, 201, 202), (name, answer.text)
            assert_done(engine, before, what)


def test_every_endpoint_but_health_needs_a_token(engine: sa.Engine, auth_api: str) -> None:
    openapi = httpx.get(f"{auth_api}/openapi.json", timeout=30).json()
    assert openapi["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    asked = 0
    for path, methods in openapi["paths"].items():
        for method, spec in methods.items():
            url = auth_api + path.format(run_id=1, job="demo", rule_id=1)
            answer = httpx.request(method, url, timeout=30, json={"job": "demo"})
            if path == "/health":
                assert answer.status_code == 200 and "security" not in spec
                continue
            asked += 1
            assert answer.status_code == 401, (method, path)
            assert answer.headers["WWW-Authenticate"] == "Bearer"
            assert answer.json()["error"] == "Unauthenticated"
            assert spec["security"] == [{"HTTPBearer": []}]
    assert asked >= 14  # every operation of the API but /health


def test_bad_tokens_are_401_and_the_feed_takes_one_as_a_query_parameter(
    engine: sa.Engine, auth_api: str
) -> None:
    good = accounts.create_token(engine, ADMIN, "dashboard", VIEWER)
    gone = accounts.create_token(engine, ADMIN, "gone", Role.ADMIN)
    accounts.revoke_token(engine, ADMIN, "gone")
    status = f"{auth_api}/api/etl/status"
    for headers, message in (
        ({}, "needs an API token"),
        ({"Authorization": f"Basic {good}"}, "needs an API token"),
        (bearer("not-a-token"), "malformed"),
        (bearer(gone), "unknown or was revoked"),
    ):
        answer = httpx.get(status, headers=headers, timeout=30)
        assert answer.status_code == 401 and message in answer.json()["detail"], headers
    feed = f"{auth_api}/api/etl/logs/realtime"
    assert httpx.get(feed, params={"access_token": gone}, timeout=30).status_code == 401
    for how in ({"params": {"access_token": good}}, {"headers": bearer(good)}):
        with httpx.stream("GET", feed, timeout=30, **how) as stream:  # type: ignore[arg-type]
            assert stream.status_code == 200
            assert next(stream.iter_text()).startswith("retry: ")


def test_serve_api_refuses_to_listen_beyond_loopback_without_sign_in(
    engine: sa.Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve-api", "--host", "0.0.0.0", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("runwatch: Refusing to serve the API on 0.0.0.0 with RUNWATCH_AUTH=none")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.7", False),
        ("runwatch.example.org", False),
    ],
)
def test_only_loopback_hosts_count_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_access_log_lines_hide_a_query_token() -> None:
    path = "/api/etl/logs/realtime?job=demo&access_token=rwt_secret&run=4"
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, "", 0, '%s - "%s %s"', ("127.0.0.1:5", "GET", path), None
    )
    assert hide_query_tokens(record)
    assert record.getMessage() == (
        '127.0.0.1:5 - "GET /api/etl/logs/realtime?job=demo&access_token=***&run=4"'
    )
