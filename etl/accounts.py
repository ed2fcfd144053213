"""Users and API tokens: signing in, authenticating a token, and every change to an account.

Like the commands of `etl.commands` (whose `Caller`, role check and audit record these use), each
change needs the admin role, checked first, and records one `audit_event`; so do sign-ins, failed
sign-ins and sign-outs, with the attempted name as actor. Passwords are hashed with Argon2 and are
never stored, logged or audited; an API token is random, shown once, and stored as its SHA-256 only.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import Session

from db.models import ApiToken, AppUser, Role, TokenInfo, UserInfo, utcnow
from db.queries import (
    AccountLocked,
    BadParams,
    InvalidState,
    SignInFailed,
    Unauthenticated,
    find_token,
    find_user,
    get_token,
    get_user,
    list_tokens as _list_tokens,
    list_users as _list_users,
    read_session,
    touch_token,
    write_session,
)
from db.settings import get_settings
from etl.commands import Caller, Source, audit, require

if TYPE_CHECKING:
    from argon2 import PasswordHasher

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,99}")  # users and tokens
RESERVED_NAMES = {"scheduler"}  # the scheduler's actor in the audit trail
PASSWORD_MIN, PASSWORD_MAX = 12, 1024
TOKEN_PREFIX = (
    "rwt_"  # recognisable in a config file or a leaked log, and checked before any lookup
)
_TOKEN = re.compile(rf"{TOKEN_PREFIX}[A-Za-z0-9_-]{{43}}")  # token_urlsafe(32): 43 characters
TOUCH_EVERY = timedelta(minutes=1)  # a token's last use is written at most this often
NO_TOKEN = (
    "This API needs an API token: send the header `Authorization: Bearer <token>` "
    "(an admin makes one with `runwatch token create`)."
)
BAD_TOKEN = "The API token is unknown or was revoked."
MALFORMED_TOKEN = "The API token is malformed: Runwatch tokens start with rwt_."


# ---------------------------------------------------------------- passwords


@cache
def _hasher() -> PasswordHasher:
    from argon2 import PasswordHasher  # imported when first needed: the CLI starts without it

    return PasswordHasher()


@cache
def _decoy_hash() -> str:
    """A hash to verify against for an unknown name, so it takes as long as a known one."""
    return _hasher().hash(secrets.token_urlsafe(16))


def _verify(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches `password_hash` (None: no such user, checked against a decoy)."""
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return _hasher().verify(password_hash or _decoy_hash(), password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


def _checked_password(password: str) -> str:
    """The Argon2 hash of `password`, or BadParams when the password is too short or too long."""
    if len(password) < PASSWORD_MIN:
        raise BadParams(f"A password needs at least {PASSWORD_MIN} characters.")
    if len(password) > PASSWORD_MAX or "\x00" in password:
        raise BadParams(f"A password holds at most {PASSWORD_MAX} characters, and no NUL.")
    return _hasher().hash(password)


def _checked_name(name: str, what: str) -> None:
    if not NAME.fullmatch(name) or name in RESERVED_NAMES:
        raise BadParams(
            f"{what} name {name!r} must be 1-100 letters, digits, '.', '_', '@' or '-' "
            "(starting with a letter or digit), and not 'scheduler'."
        )


def _checked_role(role: Role | str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise BadParams(f"Role {role!r} is unknown; use viewer, operator or admin.") from None


# ---------------------------------------------------------------- signing in


def sign_in(engine: sa.Engine, name: str, password: str, *, source: Source) -> Caller:
    """The caller `name` signs in as, or SignInFailed (one message for every reason) or AccountLocked.

    Failures in a row (`RUNWATCH_LOCKOUT_ATTEMPTS`) lock the account for `RUNWATCH_LOCKOUT_MINUTES`;
    every attempt is audited (`sign_in` or `sign_in_failed`, actor: the name tried).
    """
    known = None
    if NAME.fullmatch(name):
        with read_session(engine) as session:
            known = find_user(session=session, name=name)
    known_hash = known.password_hash if known else None
    matches = _verify(known_hash, password)  # slow on purpose: outside the write transaction
    attempt = Caller(actor=name.replace("\x00", "")[:100], source=source)
    with write_session(engine) as session:
        user = find_user(session=session, name=name, for_update=True) if known else None
        changed = user is not None and user.password_hash != known_hash  # a new password meanwhile
        reason = _refusal(user, matches and not changed, utcnow())
        if user is not None and reason is None:
            _record_success(session, attempt, user, password)
            return Caller(actor=user.name, source=source, role=Role(user.role))
        locked = _record_failure(session, attempt, user, reason or "unknown")
    raise AccountLocked(locked) if locked else SignInFailed()


def _refusal(user: AppUser | None, matches: bool, now: datetime) -> str | None:
    """Why a sign-in fails (unknown, disabled, locked, password), or None when it succeeds."""
    if user is None:
        return "unknown"
    if user.disabled:
        return "disabled"
    if user.locked_until is not None and user.locked_until > now:
        return "locked"
    return None if matches else "password"


def _record_failure(
    session: Session, attempt: Caller, user: AppUser | None, reason: str
) -> datetime | None:
    """Count a wrong password (locking the account at the limit) and audit the failure; the lock's end."""
    settings = get_settings()
    locked = user.locked_until if user is not None and reason == "locked" else None
    if user is not None and reason == "password":
        user.failed_attempts += 1
        if user.failed_attempts >= settings.lockout_attempts:
            locked = utcnow() + timedelta(minutes=settings.lockout_minutes)
            user.locked_until, user.failed_attempts = locked, 0
    until = locked.isoformat() if locked else None
    audit(
        session,
        attempt,
        "sign_in_failed",
        f"user:{attempt.actor}",
        reason=reason,
        locked_until=until,
    )
    return locked


def _record_success(session: Session, attempt: Caller, user: AppUser, password: str) -> None:
    user.failed_attempts, user.locked_until = 0, None
    if _hasher().check_needs_rehash(user.password_hash):  # stronger parameters since it was set
        user.password_hash = _hasher().hash(password)
    audit(session, attempt, "sign_in", f"user:{user.name}", role=user.role)


def sign_out(engine: sa.Engine, caller: Caller) -> None:
    """Record that `caller` signed out of the app."""
    with write_session(engine) as session:
        audit(session, caller, "sign_out", f"user:{caller.actor}")


def check_session(engine: sa.Engine, caller: Caller, signed_in_at: datetime) -> Caller:
    """The caller of an app session as its user is now (its current role), or Unauthenticated when
    the session is older than `RUNWATCH_SESSION_MINUTES`, the user was disabled or removed, or
    their password was set after the session signed in.

    An identity provider's sign-in has no user row: it keeps the role it signed in with.
    """
    settings = get_settings()
    if utcnow() - signed_in_at > timedelta(minutes=settings.session_minutes):
        raise Unauthenticated("Your session has ended; sign in again.")
    with read_session(engine) as session:
        user = (
            find_user(session=session, name=caller.actor) if NAME.fullmatch(caller.actor) else None
        )
    if user is None and settings.auth == "oidc":
        return caller
    if user is None or user.disabled:
        raise Unauthenticated("Your account was disabled or removed; ask an admin.")
    if user.password_changed_at is not None and signed_in_at < user.password_changed_at:
        raise Unauthenticated("Your password was changed; sign in again with the new one.")
    return Caller(actor=user.name, source=caller.source, role=Role(user.role))


def sign_in_oidc(engine: sa.Engine, claims: Mapping[str, Any], *, source: Source) -> Caller:
    """The caller of an identity provider's sign-in (RUNWATCH_AUTH=oidc), audited as `sign_in`.

    Its name is the `email`, `preferred_username` or `sub` claim; its role that of the user of that
    name when there is one (refused while disabled), else the highest role named by the
    `RUNWATCH_OIDC_ROLE_CLAIM` claim (a string or a list), else `RUNWATCH_OIDC_DEFAULT_ROLE`.
    """
    settings = get_settings()
    name = next(
        (str(claims[k]) for k in ("email", "preferred_username", "sub") if claims.get(k)), ""
    )
    if not name:
        raise Unauthenticated("The identity provider named nobody (no email, username or sub).")
    claimed = claims.get(settings.oidc_role_claim)
    named = [claimed] if isinstance(claimed, str) else list(claimed or [])
    roles = [role for role in Role if role in named]
    with read_session(engine) as session:
        user = find_user(session=session, name=name) if NAME.fullmatch(name) else None
    role = Role(user.role) if user else roles[-1] if roles else settings.oidc_default_role
    caller = Caller(actor=name[:200], source=source, role=role)
    refused = {"reason": "disabled"} if user is not None and user.disabled else {}
    with write_session(engine) as session:
        action = "sign_in_failed" if refused else "sign_in"
        audit(
            session,
            caller,
            action,
            f"user:{caller.actor}",
            role=str(role),
            method="oidc",
            **refused,
        )
    if refused:
        raise Unauthenticated("Your account is disabled; ask an admin.")
    return caller


# ---------------------------------------------------------------- users


def add_user(engine: sa.Engine, caller: Caller, name: str, password: str, role: Role | str) -> None:
    """Add a user who signs in with `password` (at least 12 characters) and has `role`."""
    require(engine, caller, "user_add", f"user:{name}")
    role = _checked_role(role)
    _checked_name(name, "User")
    hashed = _checked_password(password)
    with write_session(engine) as session:
        if find_user(session=session, name=name) is not None:
            raise InvalidState(f"User '{name}' exists already.")
        session.add(AppUser(name=name, password_hash=hashed, role=role))
        audit(session, caller, "user_add", f"user:{name}", role=str(role))


def set_password(engine: sa.Engine, caller: Caller, name: str, password: str) -> None:
    """Give user `name` a new password; it also ends a lock after failed sign-ins, and every app
    session the user signed in before (one who learnt the old password is signed out too)."""
    require(engine, caller, "user_password", f"user:{name}")
    hashed = _checked_password(password)
    with write_session(engine) as session:
        user = get_user(session=session, name=name)
        user.password_hash, user.failed_attempts, user.locked_until = hashed, 0, None
        user.updated_at = user.password_changed_at = utcnow()
        audit(session, caller, "user_password", f"user:{name}")


def set_role(engine: sa.Engine, caller: Caller, name: str, role: Role | str) -> None:
    """Give user `name` the role `role` (their app session picks it up at its next page)."""
    require(engine, caller, "user_role", f"user:{name}")
    role = _checked_role(role)
    with write_session(engine) as session:
        user = get_user(session=session, name=name)
        if user.role == role:
            raise InvalidState(f"User '{name}' has the {role} role already.")
        was, user.role, user.updated_at = user.role, role, utcnow()
        audit(session, caller, "user_role", f"user:{name}", role=str(role), was=was)


def disable_user(engine: sa.Engine, caller: Caller, name: str) -> None:
    """Refuse user `name` every sign-in (and end their app session at its next page)."""
    _set_disabled(engine, caller, name, disabled=True)


def enable_user(engine: sa.Engine, caller: Caller, name: str) -> None:
    """Let a disabled user sign in again (a lock after failed sign-ins ends too)."""
    _set_disabled(engine, caller, name, disabled=False)


def _set_disabled(engine: sa.Engine, caller: Caller, name: str, *, disabled: bool) -> None:
    action = "user_disable" if disabled else "user_enable"
    require(engine, caller, action, f"user:{name}")
    with write_session(engine) as session:
        user = get_user(session=session, name=name)
        if user.disabled == disabled:
            raise InvalidState(f"User '{name}' is {'' if disabled else 'not '}disabled already.")
        user.disabled, user.updated_at = disabled, utcnow()
        user.failed_attempts, user.locked_until = 0, None
        audit(session, caller, action, f"user:{name}")


def list_users(engine: sa.Engine, caller: Caller) -> list[UserInfo]:
    """Every user with role and state, by name; never a password hash."""
    require(engine, caller, "user_list", "users")
    with read_session(engine) as session:
        return _list_users(session=session)


# ---------------------------------------------------------------- API tokens


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def create_token(engine: sa.Engine, caller: Caller, name: str, role: Role | str) -> str:
    """A new API token `name` with `role`: returned this once, stored only as its SHA-256."""
    require(engine, caller, "token_create", f"token:{name}")
    role = _checked_role(role)
    _checked_name(name, "Token")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with write_session(engine) as session:
        if find_token(session=session, name=name) is not None:
            raise InvalidState(
                f"An API token named '{name}' exists (revoked ones keep their name)."
            )
        token = ApiToken(name=name, token_hash=_digest(raw), role=role, created_by=caller.actor)
        session.add(token)
        audit(session, caller, "token_create", f"token:{name}", role=str(role))
    return raw


def revoke_token(engine: sa.Engine, caller: Caller, name: str) -> None:
    """Revoke API token `name`: every request with it is refused from now on (401)."""
    require(engine, caller, "token_revoke", f"token:{name}")
    with write_session(engine) as session:
        token = get_token(session=session, name=name)
        if token.revoked_at is not None:
            raise InvalidState(f"API token '{name}' is revoked already.")
        token.revoked_at = utcnow()
        audit(session, caller, "token_revoke", f"token:{name}", role=token.role)


def list_tokens(engine: sa.Engine, caller: Caller) -> list[TokenInfo]:
    """Every API token with role, maker, state and last use, by name; never a token or its hash."""
    require(engine, caller, "token_list", "tokens")
    with read_session(engine) as session:
        return _list_tokens(session=session)


def authenticate_token(
    engine: sa.Engine, raw: str | None, *, source: Source = Source.API
) -> Caller:
    """The caller an API token stands for (`token:<name>`, its role), or Unauthenticated.

    One indexed read per request; the token's last use is written at most once a minute.
    """
    if not raw:
        raise Unauthenticated(NO_TOKEN)
    if not _TOKEN.fullmatch(raw):
        raise Unauthenticated(MALFORMED_TOKEN)
    with read_session(engine) as session:
        token = find_token(session=session, token_hash=_digest(raw))
    if token is None or token.revoked_at is not None or token.id is None:
        raise Unauthenticated(BAD_TOKEN)
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at >= TOUCH_EVERY:
        with write_session(engine) as session:
            touch_token(session=session, token_id=token.id, now=now, every=TOUCH_EVERY)
    return Caller(actor=f"token:{token.name}", source=source, role=Role(token.role))
