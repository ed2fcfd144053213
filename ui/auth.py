"""Who uses the app: every page calls `signed_in()` first, and RUNWATCH_AUTH says how people sign in.

`none`: everyone is admin (the configured actor), and only while the app listens on loopback.
`password`: a sign-in form over `etl.accounts.sign_in`. `oidc`: Streamlit's `st.login` with the
identity provider of `.streamlit/secrets.toml`, then `etl.accounts.sign_in_oidc`. The caller is kept
in the browser session and re-checked on every rerun (`etl.accounts.check_session`: the session's
age, a disabled user, a changed role).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import streamlit as st
from streamlit.errors import StreamlitAuthError

from db.models import utcnow
from db.queries import Unauthenticated
from db.settings import get_settings
from etl import accounts
from etl.commands import Caller, Source
from ui.app import database_guard, engine

SESSION = "auth_session"  # this browser session's SignedIn
NOTE = "auth_note"  # why the sign-in page shows again: signed out, session ended
ENDED = "auth_ended"  # oidc: the session ended; no silent sign-in again from the same identity
OPEN = "Sign-in is off (RUNWATCH_AUTH=none): everyone here is admin."
NO_PROVIDER = (
    "RUNWATCH_AUTH=oidc needs an identity provider: add an `[auth]` section (`redirect_uri`, "
    "`cookie_secret`, `client_id`, `client_secret`, `server_metadata_url`) to "
    "`.streamlit/secrets.toml` and restart the app. The README shows an example."
)


@dataclass(frozen=True)
class SignedIn:
    """Who signed in to this browser session, and when."""

    caller: Caller
    since: datetime


def is_local(address: str | None) -> bool:
    """Whether Streamlit's `server.address` is loopback (unset counts as local: `make run`)."""
    if not address or address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def open_refusal(auth: str, address: str | None) -> str | None:
    """Why the app serves nobody (sign-in off on a non-loopback address), or None."""
    if auth != "none" or is_local(address):
        return None
    return (
        f"Runwatch does not serve {address} with sign-in off (RUNWATCH_AUTH=none): everyone "
        "reaching it would be admin. Set RUNWATCH_AUTH=password or RUNWATCH_AUTH=oidc and "
        "restart, or listen on localhost only."
    )


def signed_in() -> Caller:
    """The caller of this browser session; until someone signs in, the sign-in page only."""
    auth = get_settings().auth
    if auth == "none":
        return _open()
    with database_guard():
        held = _password() if auth == "password" else _oidc()
        _identity(held)
    return held.caller


def still_signed_in() -> None:
    """In a fragment's rerun (only part of the page): check the sign-in again, as `signed_in()`
    does at the top of a full rerun, and rerun the whole page when it ended or its role changed,
    so the sign-in form or the new role's page shows."""
    if get_settings().auth == "none":
        return
    before = st.session_state.get(SESSION)
    with database_guard():
        held = _rechecked()
    if held is None or before is None or held.caller != before.caller:
        st.rerun(scope="app")


def current() -> Caller:
    """The caller as checked at the top of this rerun: what the buttons are drawn for."""
    return _held().caller


def checked() -> Caller:
    """The caller re-checked now: a button's callback runs before the page checks again."""
    held = _held()
    if get_settings().auth == "none":
        return held.caller
    return accounts.check_session(engine(), held.caller, held.since)


def _held() -> SignedIn:
    """This browser session's sign-in (sign-in off: the configured actor as admin)."""
    if get_settings().auth == "none":
        return SignedIn(_admin(), utcnow())
    held: SignedIn | None = st.session_state.get(SESSION)
    if held is None:
        raise Unauthenticated("Sign in first.")
    return held


def _admin() -> Caller:
    return Caller(actor=get_settings().actor, source=Source.APP)


def _open() -> Caller:
    refusal = open_refusal("none", st.get_option("server.address"))
    if refusal is not None:
        st.error(refusal, icon=":material/lock:")
        st.stop()
    st.sidebar.caption(OPEN)
    return _admin()


def _rechecked() -> SignedIn | None:
    """This session's sign-in as its user is now, or None (why is kept for the sign-in page)."""
    held: SignedIn | None = st.session_state.get(SESSION)
    if held is None:
        return None
    try:
        held = SignedIn(accounts.check_session(engine(), held.caller, held.since), held.since)
    except Unauthenticated as error:
        _end(str(error))
        return None
    st.session_state[SESSION] = held
    return held


def _keep(caller: Caller) -> SignedIn:
    held = st.session_state[SESSION] = SignedIn(caller, utcnow())
    return held


def _end(note: str) -> None:
    st.session_state.pop(SESSION, None)
    st.session_state[NOTE] = note
    st.session_state[ENDED] = True


def _identity(held: SignedIn) -> None:
    """Who is signed in, with which role, and Sign out (audited)."""
    st.sidebar.markdown(f"Signed in as `{held.caller.actor}` · {held.caller.role}")
    if st.sidebar.button("Sign out", key="auth_sign_out", icon=":material/logout:"):
        accounts.sign_out(engine(), held.caller)
        _end("You signed out.")
        if get_settings().auth == "oidc":
            st.logout()  # forgets the identity cookie, so no silent sign-in follows
        st.rerun()


def _heading() -> None:
    st.title("Sign in to Runwatch")
    if note := st.session_state.pop(NOTE, None):
        st.info(note)


# ---------------------------------------------------------------- password


def _password() -> SignedIn:
    held = _rechecked()
    if held is not None:
        return held
    _heading()
    with st.form("auth_form", clear_on_submit=True):  # no password left in the session state
        name = st.text_input("User name", key="auth_name")
        password = st.text_input("Password", type="password", key="auth_password")
        submitted = st.form_submit_button("Sign in", type="primary", key="auth_submit")
    if submitted:
        try:
            _keep(accounts.sign_in(engine(), name, password, source=Source.APP))
        except Unauthenticated as error:  # the same words for an unknown name and a wrong password
            st.error(str(error))
        else:
            st.rerun()
    st.stop()


# ---------------------------------------------------------------- identity provider


def _oidc() -> SignedIn:
    user = st.user.to_dict()
    if "is_logged_in" not in user:  # st.user says so only with an [auth] section in the secrets
        st.error(NO_PROVIDER, icon=":material/key_off:")
        st.stop()
    held = _rechecked()
    if held is None and user["is_logged_in"] and not st.session_state.get(ENDED):
        held = _oidc_sign_in(user)
    if held is not None:
        return held
    _heading()
    _login_buttons()
    st.stop()


def _oidc_sign_in(user: Mapping[str, Any]) -> SignedIn | None:
    """Sign the identity provider's user in once per browser session (audited)."""
    claims = {k: v for k, v in user.items() if k not in ("is_logged_in", "tokens")}
    try:
        return _keep(accounts.sign_in_oidc(engine(), claims, source=Source.APP))
    except Unauthenticated as error:
        _end(str(error))
        return None


def _login_buttons() -> None:
    """One Sign in button per provider of the [auth] section (the default one: unnamed)."""
    for provider in _providers():
        label = f"Sign in with {provider}" if provider else "Sign in"
        if st.button(label, key=f"auth_login_{provider or 'default'}", type="primary"):
            _login(provider)


def _login(provider: str | None) -> None:
    try:
        st.login(provider)
    except StreamlitAuthError as error:  # no Authlib, or an incomplete [auth] section
        st.error(f"Sign-in with the identity provider cannot start: {error}")


def _providers() -> list[str | None]:
    try:
        section = st.secrets.get("auth") or {}
    except FileNotFoundError:
        section = {}
    named: list[str | None] = [k for k, v in section.items() if isinstance(v, Mapping)]
    return named or [None]
