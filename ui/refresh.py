"""Auto-refresh: every 2 s while a run is active, every 15 s when idle, never while paused."""

from __future__ import annotations

import streamlit as st
from streamlit_autorefresh import st_autorefresh

from db.models import utcnow
from ui.badges import local_time

ACTIVE_INTERVAL_S = 2
IDLE_INTERVAL_S = 15  # slow, so a run started elsewhere (CLI, API, another user) still shows up
RETRY_INTERVAL_S = 5  # while the database is down


def interval_s(*, active: bool, paused: bool) -> int | None:
    """Seconds until the next refresh, or None when paused."""
    if paused:
        return None
    return ACTIVE_INTERVAL_S if active else IDLE_INTERVAL_S


def pause_toggle(page: str) -> bool:
    """The sidebar's "Pause auto-refresh" toggle of `page`; True while paused."""
    return bool(
        st.sidebar.toggle(
            "Pause auto-refresh",
            key=f"{page}_pause",
            help="Freeze this page: nothing is re-read until you switch this off.",
        )
    )


def tick(page: str, *, active: bool, paused: bool) -> None:
    """Schedule the next refresh and show when the page was last updated."""
    seconds = interval_s(active=active, paused=paused)
    if seconds is not None:
        st_autorefresh(interval=seconds * 1000, key=f"{page}_autorefresh")
    when = "auto-refresh paused" if seconds is None else f"next refresh in {seconds} s"
    st.caption(f"Updated {local_time(utcnow(), '%H:%M:%S')} · {when}")


def retry_soon() -> None:
    """Rerun the page in a few seconds, so it recovers by itself once the database is back."""
    st_autorefresh(interval=RETRY_INTERVAL_S * 1000, key="database_retry")
