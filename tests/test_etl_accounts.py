"""Users, sign-in and API tokens through `etl.accounts` (both backends): checked, audited, never leaked."""

from __future__ import annotations

import hashlib
import json
from contextlib import nullcontext
from datetime import timedelta

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from sqlmodel import select

from db.models import ApiToken, AppUser, AuditEvent, Role, utcnow
from db.queries import (
    AccountLocked,
    BadParams,
    InvalidState,
    NotFound,
    SignInFailed,
    Unauthenticated,
    read_session,
    write_session,
)
from db.settings import get_settings
from etl import accounts
from etl.commands import Caller, Source
from reports.ledger import verify_ledger

ADMIN = Caller("root", Source.CLI)
PASSWORD = "correct horse battery"


@pytest.fixture
def ana(engine: sa.Engine) -> str:
    """An operator, `ana`, who signs in with PASSWORD; the audit trail is empty after her."""
    accounts.add_user(engine, ADMIN, "ana", PASSWORD, Role.OPERATOR)
    with write_session(engine) as session:
        session.execute(sa.delete(AuditEvent))
    return "ana"


@pytest.fixture
def three_strikes(monkeypatch: pytest.MonkeyPatch, settings: object) -> None:
    """Three failed sign-ins in a row lock an account (the default is five)."""
    monkeypatch.setenv("RUNWATCH_LOCKOUT_ATTEMPTS", "3")
    get_settings.cache_clear()


def audits(engine: sa.Engine) -> list[AuditEvent]:
    with read_session(engine) as session:
        return list(session.exec(select(AuditEvent).order_by(AuditEvent.id)).all())  # type: ignore[arg-type]


def user(engine: sa.Engine, name: str) -> AppUser:
    with read_session(engine) as session:
        found = session.get(AppUser, name)
        assert found is not None
        return found


def no_secret_anywhere(engine: sa.Engine, *secrets: str) -> None:
    """No audit row holds any of `secrets` (a password or a token)."""
    text = json.dumps([[a.actor, a.target, a.details] for a in audits(engine)])
    assert not any(secret in text for secret in secrets)


# ---------------------------------------------------------------- signing in


def test_sign_in_gives_the_users_role_and_is_audited(engine: sa.Engine, ana: str) -> None:
    caller = accounts.sign_in(engine, ana, PASSWORD, source=Source.APP)
    assert caller == Caller("ana", Source.APP, Role.OPERATOR)
    [row] = audits(engine)
    assert (row.actor, row.action, row.target) == ("ana", "sign_in", "user:ana")
    assert row.details == {"role": "operator", "source": "app"}
    assert user(engine, ana).password_hash.startswith("$argon2id$")
    no_secret_anywhere(engine, PASSWORD)


@pytest.mark.parametrize(
    ("name", "password", "reason"),
    [
        ("ana", "wrong horse battery", "password"),
        ("bob", PASSWORD, "unknown"),
        ("ana\x00", PASSWORD, "unknown"),
        ("dis", PASSWORD, "disabled"),
    ],
)
def test_every_failed_sign_in_reads_the_same_and_is_audited(
    engine: sa.Engine, ana: str, name: str, password: str, reason: str
) -> None:
    accounts.add_user(engine, ADMIN, "dis", PASSWORD, Role.ADMIN)
    accounts.disable_user(engine, ADMIN, "dis")
    with pytest.raises(SignInFailed, match="^The user name or the password is wrong.$"):
        accounts.sign_in(engine, name, password, source=Source.APP)
    failed = audits(engine)[-1]
    assert (failed.actor, failed.action) == (name.strip("\x00"), "sign_in_failed")
    assert failed.details == {"reason": reason, "locked_until": None, "source": "app"}
    no_secret_anywhere(engine, PASSWORD, "wrong horse battery")


def test_failures_in_a_row_lock_the_account_until_the_lock_ends(
    engine: sa.Engine, ana: str, three_strikes: None
) -> None:
    for _ in range(2):
        with pytest.raises(SignInFailed):
            accounts.sign_in(engine, ana, "not the password", source=Source.APP)
    with pytest.raises(AccountLocked, match="locked until") as locked:
        accounts.sign_in(engine, ana, "not the password", source=Source.APP)
    assert timedelta(minutes=14) < locked.value.until - utcnow() <= timedelta(minutes=15)
    with pytest.raises(AccountLocked):  # even the right password, while locked
        accounts.sign_in(engine, ana, PASSWORD, source=Source.APP)
    reasons = [a.details["reason"] for a in audits(engine)]
    assert reasons == ["password", "password", "password", "locked"]
    assert audits(engine)[2].details["locked_until"] == locked.value.until.isoformat()
    with write_session(engine) as session:  # the lock's fifteen minutes pass
        session.execute(sa.update(AppUser).values(locked_until=utcnow() - timedelta(seconds=1)))
    assert accounts.sign_in(engine, ana, PASSWORD, source=Source.APP).role == Role.OPERATOR


def test_a_success_starts_the_count_of_failures_again(
    engine: sa.Engine, ana: str, three_strikes: None
) -> None:
    for attempt in ("wrong 1", "wrong 2", PASSWORD, "wrong 3", "wrong 4"):
        with pytest.raises(SignInFailed) if attempt != PASSWORD else nullcontext():
            accounts.sign_in(engine, ana, attempt, source=Source.APP)
    assert user(engine, ana).failed_attempts == 2 and user(engine, ana).locked_until is None


def test_a_weaker_hash_is_replaced_at_sign_in(engine: sa.Engine, ana: str) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    with write_session(engine) as session:
        session.execute(sa.update(AppUser).values(password_hash=weak))
    accounts.sign_in(engine, ana, PASSWORD, source=Source.APP)
    stronger = user(engine, ana).password_hash
    assert stronger != weak and not PasswordHasher().check_needs_rehash(stronger)


def test_sign_out_is_audited(engine: sa.Engine, ana: str) -> None:
    caller = accounts.sign_in(engine, ana, PASSWORD, source=Source.APP)
    accounts.sign_out(engine, caller)
    assert [(a.actor, a.action, a.target) for a in audits(engine)][-1] == (
        "ana",
        "sign_out",
        "user:ana",
    )


def test_a_session_follows_its_users_role_and_ends(engine: sa.Engine, ana: str) -> None:
    caller = accounts.sign_in(engine, ana, PASSWORD, source=Source.APP)
    now = utcnow()
    accounts.set_role(engine, ADMIN, ana, Role.VIEWER)
    assert accounts.check_session(engine, caller, now).role == Role.VIEWER
    with pytest.raises(Unauthenticated, match="session has ended"):
        accounts.check_session(engine, caller, now - timedelta(minutes=481))
    accounts.disable_user(engine, ADMIN, ana)
    with pytest.raises(Unauthenticated, match="disabled"):
        accounts.check_session(engine, caller, now)


def test_setting_a_password_ends_the_sessions_signed_in_before(engine: sa.Engine, ana: str) -> None:
    before = accounts.sign_in(engine, ana, PASSWORD, source=Source.APP)
    signed_in_before = utcnow()
    accounts.set_role(engine, ADMIN, ana, Role.VIEWER)  # other changes leave sessions open
    assert accounts.check_session(engine, before, signed_in_before).role == Role.VIEWER
    accounts.set_password(engine, ADMIN, ana, "a brand new password")
    with pytest.raises(Unauthenticated, match="Your password was changed; sign in again"):
        accounts.check_session(engine, before, signed_in_before)
    after = accounts.sign_in(engine, ana, "a brand new password", source=Source.APP)
    assert accounts.check_session(engine, after, utcnow()) == after


def test_oidc_sign_in_takes_the_highest_claimed_role_or_the_default(engine: sa.Engine) -> None:
    claims = {"email": "eve@example.org", "runwatch_role": ["viewer", "operator"]}
    assert accounts.sign_in_oidc(engine, claims, source=Source.APP).role == Role.OPERATOR
    plain = accounts.sign_in_oidc(
        engine, {"sub": "u-17", "runwatch_role": "root"}, source=Source.APP
    )
    assert plain == Caller("u-17", Source.APP, Role.VIEWER)
    assert [a.details.get("method") for a in audits(engine)] == ["oidc", "oidc"]
    with pytest.raises(Unauthenticated):
        accounts.sign_in_oidc(engine, {}, source=Source.APP)


def test_an_oidc_session_keeps_its_role_until_it_ends(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNWATCH_AUTH", "oidc")
    get_settings.cache_clear()
    caller = accounts.sign_in_oidc(engine, {"email": "eve@example.org"}, source=Source.APP)
    assert accounts.check_session(engine, caller, utcnow()) == caller
    with pytest.raises(Unauthenticated, match="session has ended"):
        accounts.check_session(engine, caller, utcnow() - timedelta(hours=9))


# ---------------------------------------------------------------- users


def test_user_changes_are_checked_and_audited(engine: sa.Engine, ana: str) -> None:
    with pytest.raises(BadParams, match="at least 12 characters"):
        accounts.add_user(engine, ADMIN, "cy", "short", Role.VIEWER)
    with pytest.raises(BadParams, match="unknown; use viewer, operator or admin"):
        accounts.add_user(engine, ADMIN, "cy", PASSWORD, "root")
    with pytest.raises(BadParams, match="not 'scheduler'"):
        accounts.add_user(engine, ADMIN, "scheduler", PASSWORD, Role.VIEWER)
    with pytest.raises(InvalidState, match="exists already"):
        accounts.add_user(engine, ADMIN, ana, PASSWORD, Role.VIEWER)
    accounts.set_password(engine, ADMIN, ana, "a new password, long")
    accounts.set_role(engine, ADMIN, ana, "admin")
    with pytest.raises(InvalidState, match="has the admin role already"):
        accounts.set_role(engine, ADMIN, ana, "admin")
    accounts.disable_user(engine, ADMIN, ana)
    with pytest.raises(InvalidState, match="is disabled already"):
        accounts.disable_user(engine, ADMIN, ana)
    accounts.enable_user(engine, ADMIN, ana)
    with pytest.raises(NotFound, match="No user named 'nobody'"):
        accounts.set_role(engine, ADMIN, "nobody", "admin")
    assert [(a.action, a.target, a.details) for a in audits(engine)] == [
        ("user_password", "user:ana", {"source": "cli"}),
        ("user_role", "user:ana", {"role": "admin", "was": "operator", "source": "cli"}),
        ("user_disable", "user:ana", {"source": "cli"}),
        ("user_enable", "user:ana", {"source": "cli"}),
    ]
    [listed] = accounts.list_users(engine, ADMIN)
    assert (listed.name, listed.role, listed.disabled) == ("ana", "admin", False)
    assert "password_hash" not in listed._fields
    assert accounts.sign_in(engine, ana, "a new password, long", source=Source.APP).role == "admin"


# ---------------------------------------------------------------- API tokens


def test_a_token_is_shown_once_and_stored_as_its_sha256(engine: sa.Engine) -> None:
    raw = accounts.create_token(engine, ADMIN, "grafana", Role.VIEWER)
    assert raw.startswith("rwt_") and len(raw) == 47
    with read_session(engine) as session:
        [stored] = session.exec(select(ApiToken)).all()
    assert stored.token_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert (stored.role, stored.created_by, stored.last_used_at) == ("viewer", "root", None)
    [row] = audits(engine)
    assert (row.action, row.target, row.details) == (
        "token_create",
        "token:grafana",
        {"role": "viewer", "source": "cli"},
    )
    no_secret_anywhere(engine, raw, stored.token_hash)
    assert accounts.authenticate_token(engine, raw) == Caller(
        "token:grafana", Source.API, Role.VIEWER
    )
    with pytest.raises(InvalidState, match="exists"):
        accounts.create_token(engine, ADMIN, "grafana", Role.ADMIN)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "needs an API token"),
        ("", "needs an API token"),
        ("hunter2", "malformed"),
        ("rwt_" + "a" * 42 + "!", "malformed"),
        ("rwt_" + "a" * 43, "unknown or was revoked"),
    ],
)
def test_missing_malformed_and_unknown_tokens_are_refused(
    engine: sa.Engine, raw: str | None, message: str
) -> None:
    with pytest.raises(Unauthenticated, match=message):
        accounts.authenticate_token(engine, raw)


def test_a_revoked_token_is_refused_and_keeps_its_name(engine: sa.Engine) -> None:
    raw = accounts.create_token(engine, ADMIN, "ci", Role.OPERATOR)
    accounts.revoke_token(engine, ADMIN, "ci")
    with pytest.raises(Unauthenticated, match="unknown or was revoked"):
        accounts.authenticate_token(engine, raw)
    with pytest.raises(InvalidState, match="revoked already"):
        accounts.revoke_token(engine, ADMIN, "ci")
    [listed] = accounts.list_tokens(engine, ADMIN)
    assert listed.name == "ci" and listed.revoked_at is not None
    assert [a.action for a in audits(engine)] == ["token_create", "token_revoke"]


def test_a_tokens_last_use_is_written_at_most_once_a_minute(engine: sa.Engine) -> None:
    raw = accounts.create_token(engine, ADMIN, "ci", Role.OPERATOR)

    def last_used() -> object:
        with read_session(engine) as session:
            return session.exec(select(ApiToken.last_used_at)).one()

    accounts.authenticate_token(engine, raw)
    first = last_used()
    accounts.authenticate_token(engine, raw)
    assert first is not None and last_used() == first
    with write_session(engine) as session:  # a minute passes
        session.execute(sa.update(ApiToken).values(last_used_at=utcnow() - timedelta(minutes=2)))
    accounts.authenticate_token(engine, raw)
    assert last_used() > utcnow() - timedelta(seconds=30)  # type: ignore[operator]


def test_the_ledger_stays_intact_through_account_commands(engine: sa.Engine, ana: str) -> None:
    accounts.sign_in(engine, ana, PASSWORD, source=Source.APP)
    with pytest.raises(SignInFailed):
        accounts.sign_in(engine, "nobody", PASSWORD, source=Source.APP)
    accounts.create_token(engine, ADMIN, "ci", Role.OPERATOR)
    accounts.revoke_token(engine, ADMIN, "ci")
    report = verify_ledger(engine)
    assert (report.intact, report.breach) == (4, None)
