"""The app's cached reads: the data behind one refresh tick, cached briefly and shared by every session."""

from __future__ import annotations

from typing import NamedTuple

import streamlit as st

from db import queries
from db.queries import (
    AlertView,
    EventRow,
    JobLive,
    list_alerts,
    list_events,
    live_overview,
    read_session,
    unread_count,
)
from db.settings import get_settings
from reports.health import HealthReport, health_report
from ui.app import engine

LOG_WINDOW = 500  # log lines a page keeps and shows
_TTL = get_settings().cache_ttl_s  # fifty open browsers cost about one query per tick


@st.cache_data(ttl=_TTL, show_spinner=False)
def overview(database_url: str, jobs: tuple[str, ...] = ()) -> list[JobLive]:
    """Every job (or those named) with its latest runs: the Live and Jobs pages' one read."""
    with read_session(engine()) as session:
        return live_overview(session=session, jobs=jobs)


@st.cache_data(ttl=_TTL, show_spinner=False)
def log_lines(
    database_url: str,
    *,
    after_id: int | None,
    run_id: int | None = None,
    job: str | None = None,
    min_level: str | None = None,
    text: str = "",
) -> list[EventRow]:
    """The newest log lines after the cursor `after_id` that match, newest first."""
    with read_session(engine()) as session:
        return list_events(
            session=session,
            after_id=after_id,
            run_id=run_id,
            job=job,
            min_level=min_level,
            text=text or None,
            limit=LOG_WINDOW,
            newest_first=True,
            with_data=False,
        )


@st.cache_data(ttl=_TTL, show_spinner=False)
def recent_run_ids(database_url: str, job: str | None, limit: int = 100) -> list[int]:
    """Ids of the newest runs (of one job or all), for the Logs page's run choice."""
    with read_session(engine()) as session:
        return queries.recent_run_ids(session=session, job=job, limit=limit)


@st.cache_data(ttl=_TTL, show_spinner=False)
def health(database_url: str) -> HealthReport:
    """The health snapshot behind the Health page's tick."""
    return health_report(engine(), get_settings())


class AlertFeed(NamedTuple):
    """The notifications area's data: how many alerts are unread and the newest ones."""

    unread: int
    alerts: list[AlertView]


@st.cache_data(ttl=_TTL, show_spinner=False)
def alert_feed(database_url: str, limit: int = 20) -> AlertFeed:
    """The unread count and the newest alerts with their delivery attempts."""
    with read_session(engine()) as session:
        return AlertFeed(unread_count(session=session), list_alerts(session=session, limit=limit))
