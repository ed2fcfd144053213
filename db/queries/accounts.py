"""Users and API tokens: reads, and the one conditional write of a token's last use."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TypeVar

import sqlalchemy as sa
from sqlmodel import Session, col, select

from db.models import ApiToken, AppUser, TokenInfo, UserInfo
from db.queries.errors import NotFound

Shown = TypeVar("Shown", UserInfo, TokenInfo)


def find_user(*, session: Session, name: str, for_update: bool = False) -> AppUser | None:
    """The user called `name`, or None; `for_update` locks the row until the transaction ends."""
    return session.get(AppUser, name, with_for_update=for_update or None)


def get_user(*, session: Session, name: str) -> AppUser:
    """The user called `name` (its row locked for this write transaction), or NotFound."""
    user = find_user(session=session, name=name, for_update=True)
    if user is None:
        raise NotFound(f"No user named '{name}'.")
    return user


def list_users(*, session: Session) -> list[UserInfo]:
    """Every user, by name; password hashes are not even read."""
    return _listing(session, AppUser, UserInfo)


def find_token(
    *, session: Session, name: str | None = None, token_hash: str | None = None
) -> ApiToken | None:
    """The API token called `name`, or whose SHA-256 is `token_hash` (revoked or not), or None."""
    column, value = (
        (ApiToken.name, name) if token_hash is None else (ApiToken.token_hash, token_hash)
    )
    return session.exec(select(ApiToken).where(col(column) == value)).first()


def get_token(*, session: Session, name: str) -> ApiToken:
    """The API token called `name` (revoked or not), or NotFound."""
    token = find_token(session=session, name=name)
    if token is None:
        raise NotFound(f"No API token named '{name}'.")
    return token


def list_tokens(*, session: Session) -> list[TokenInfo]:
    """Every API token, by name: who made it, its role, when it was last used; hashes not read."""
    return _listing(session, ApiToken, TokenInfo)


def _listing(session: Session, table: type[AppUser | ApiToken], shape: type[Shown]) -> list[Shown]:
    """The `shape` fields of every row of `table`, by name."""
    columns = [col(getattr(table, name)) for name in shape._fields]
    rows = session.execute(sa.select(*columns).order_by(col(table.name)))
    return [shape._make(row) for row in rows]


def touch_token(*, session: Session, token_id: int, now: datetime, every: timedelta) -> None:
    """Set the token's last use to `now` unless it was set less than `every` ago (one row, or none)."""
    stale = col(ApiToken.last_used_at).is_(None) | (col(ApiToken.last_used_at) < now - every)
    session.execute(
        sa.update(ApiToken).where(col(ApiToken.id) == token_id, stale).values(last_used_at=now)
    )
