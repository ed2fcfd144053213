"""Who calls the API: one dependency resolves each request's `Caller` from its bearer token.

With `RUNWATCH_AUTH=none` every request is an admin named by the client's address (the API then
serves loopback only, see `api.app.serve`); otherwise each request needs an API token, and the
command layer decides what the token's role may do.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.models import ErrorBody
from etl import accounts
from etl.commands import Caller, Source

BEARER = HTTPBearer(
    auto_error=False,  # a missing token is refused by the command layer's Unauthenticated: one body
    description="An API token (`runwatch token create`), needed unless RUNWATCH_AUTH=none.",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No API token, or one that is unknown or revoked."},
    403: {"model": ErrorBody, "description": "The token's role may not do this."},
}


def _resolve(request: Request, token: str | None) -> Caller:
    if request.app.state.settings.auth == "none":
        actor = f"api:{request.client.host}" if request.client else "api"
        return Caller(actor=actor, source=Source.API)
    return accounts.authenticate_token(request.app.state.engine, token)


def caller_of(request: Request, credentials: Credentials) -> Caller:
    """The caller of a request: its bearer token's name and role, or Unauthenticated (401)."""
    return _resolve(request, credentials.credentials if credentials else None)


def feed_caller_of(
    request: Request,
    credentials: Credentials,
    access_token: Annotated[
        str | None,
        Query(description="The API token, for clients that cannot send headers (EventSource)."),
    ] = None,
) -> Caller:
    """`caller_of`, also taking the token from `?access_token=` (browsers' EventSource sends no headers)."""
    return _resolve(request, credentials.credentials if credentials else access_token)


CallerOf = Annotated[Caller, Depends(caller_of)]
