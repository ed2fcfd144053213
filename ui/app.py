"""What every page needs first: the engine, the in-process worker and the database-down banner."""

from __future__ import annotations

import functools
import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import sqlalchemy as sa
import streamlit as st

from db.engine import database_error_text, file_problem, get_engine
from db.migrate import init_db
from db.queries import list_jobs, read_session
from db.settings import get_settings
from etl.worker import BackgroundWorker
from ui.refresh import retry_soon


@st.cache_resource(show_spinner=False)
def _ready_engine(url: str) -> sa.Engine:
    engine = get_engine(url)
    init_db(engine)
    return engine


@st.cache_resource(show_spinner=False)
def _background_worker(url: str) -> BackgroundWorker:
    return BackgroundWorker(_ready_engine(url), get_settings()).start()


@functools.cache  # once per process: not a Streamlit cache, which clearing would run again
def _imports_frozen() -> bool:
    """Take what the server's imports made out of the garbage collector's sight, once per process.

    A full collection walks every tracked object, first of all the ~200,000 that Streamlit,
    pandas, pyarrow, SQLAlchemy and the app's modules leave behind, which never become garbage.
    With 50 sessions on Home such a pass came every ~8 s and took 0.16 s at the median (up to 1.6 s),
    holding the GIL while every rerun waited. Frozen (gc.freeze) after the first script run's
    imports, they are never walked again (51 ms at the median); what sessions make afterwards is
    collected as before.
    """
    gc.freeze()
    return True


def engine() -> sa.Engine:
    """The migrated engine of the configured database (one per process), with the worker started."""
    _imports_frozen()
    settings = get_settings()
    ready = _ready_engine(settings.database_url)
    if settings.worker_enabled:
        _background_worker(settings.database_url)
    return ready


def job_names(engine: sa.Engine) -> list[str]:
    """The name of every job, for the pages' job pickers."""
    with read_session(engine) as session:
        return [job.name for job in list_jobs(session=session)]


def worker() -> BackgroundWorker | None:
    """The app's in-process worker, when enabled."""
    settings = get_settings()
    return _background_worker(settings.database_url) if settings.worker_enabled else None


def worker_banner() -> None:
    """Say so when the app's worker thread is not running, or died and was restarted."""
    try:
        background = worker()
    except (sa.exc.OperationalError, sa.exc.InterfaceError):
        return  # the database-down banner says what matters
    if background is None:
        return
    if not background.alive:
        st.error(
            "The app's worker is not running, so queued runs wait. It is restarted within "
            "seconds; `runwatch worker` can take them meanwhile.",
            icon="⚠️",
        )
    elif background.restarts:
        times = "once" if background.restarts == 1 else f"{background.restarts} times"
        st.warning(
            f"The app's worker thread stopped and was restarted ({times}; last: "
            f"{background.last_death}). The run it was executing failed with that error "
            "(see History); queued runs go on.",
            icon="⚠️",
        )


def file_moved() -> None:
    """Stop the page with a banner when the SQLite file the app opened was moved, deleted or replaced."""
    problem = file_problem(_ready_engine(get_settings().database_url))
    if problem is None:
        return
    st.error(
        f"{problem} Runwatch would go on writing to the old file, which nothing else reads: "
        "put the file back, or restart the app to open the database now at that path.",
        icon=":material/error:",
    )
    st.stop()


@contextmanager
def database_guard() -> Iterator[None]:
    """Show a banner instead of a traceback when the database cannot be reached, and stop the page."""
    try:
        file_moved()
        yield
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as error:
        database_down(database_error_text(error))


def database_down(detail: str) -> NoReturn:
    """The database-down banner with the driver's `detail`; retry soon and stop the page."""
    _ready_engine.clear()
    st.error(
        "The database cannot be reached right now. Runwatch keeps trying; this page "
        "recovers by itself when the database is back.",
        icon=":material/cloud_off:",  # an emoji the browser's fonts lack draws an empty box
    )
    st.caption(f"Details: {detail}")
    retry_soon()
    st.stop()
