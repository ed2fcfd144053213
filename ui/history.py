"""History's table, pager and run details (with Retry / Resume); data through db.queries only."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
import streamlit as st

from db.models import Run, RunRecord, RunRow, RunStatus
from db.queries import (
    RunPage,
    RunwatchError,
    get_run,
    list_events,
    list_runs,
    read_session,
)
from reports.durations import format_duration
from ui import actions, notices
from ui.badges import badge_markdown, local_time, metrics_row, status_label
from ui.filters import PAGE_SIZES, HistoryView, first_page

TIMELINE_LIMIT = 500
RESUMABLE = (RunStatus.FAILED, RunStatus.CANCELLED)


def load_page(engine: sa.Engine, view: HistoryView) -> tuple[RunPage, int]:
    """The view's page of runs and its page number, moved back to the last page if past it."""
    with read_session(engine) as session:
        found = list_runs(
            session=session,
            filters=view.filters(),
            sort=view.sort,
            page=view.page,
            page_size=view.page_size,
        )
        last = max(1, math.ceil(found.total / view.page_size))
        if view.page <= last:
            return found, view.page
        found = list_runs(
            session=session,
            filters=view.filters(),
            sort=view.sort,
            page=last,
            page_size=view.page_size,
        )
        return found, last


def table_rows(runs: Sequence[RunRow]) -> list[dict[str, Any]]:
    """The history table's rows: one per run, times in the viewer's zone."""
    rows = []
    for run in runs:
        rows.append(
            {
                "Run": run.id,
                "Job": run.job,
                "Status": status_label(run.status),
                "Error": run.error_message or "",
                "Created": local_time(run.created_at),
                "Duration": format_duration(run.duration),
                "Records": run.records_loaded,
                "Rejected": run.records_rejected,
                "Trigger": run.trigger,
            }
        )
    return rows


# The error comes right after the status, in a column that fits beside Run, Job and Status in the
# main column of a 1024-wide window (tests/e2e/test_screens.py checks it at 1440 and 1024), and
# wraps onto WRAPPED_ROW_HEIGHT's three lines; the columns after it scroll sideways.
HISTORY_COLUMNS = {
    "Run": st.column_config.NumberColumn(width=60, format="%d"),
    "Job": st.column_config.TextColumn(width=125),
    "Status": st.column_config.TextColumn(width=80),
    "Error": st.column_config.TextColumn(width=260, help="The whole message is in Run details"),
    "Created": st.column_config.TextColumn(width=150),
    "Duration": st.column_config.TextColumn(width=75),
    "Records": st.column_config.NumberColumn(width=80, format="localized"),
    "Rejected": st.column_config.NumberColumn(width=75, format="localized"),
    "Trigger": st.column_config.TextColumn(width=75),
}
# Streamlit wraps cell text only in rows taller than 4rem (64 px): three lines of text.
WRAPPED_ROW_HEIGHT = 72
VISIBLE_ROWS = 6  # wrapped rows the grid shows before it scrolls


def runs_table(runs: Sequence[RunRow]) -> int | None:
    """Draw the page of runs; return the id of the row the user selected, if any."""
    # A key per set of rows: a selection made on other rows must not pick a run of these.
    shown = hashlib.sha1(",".join(str(run.id) for run in runs).encode()).hexdigest()[:10]
    # Rows grow to wrap error messages only on pages that hold one.
    wrapped = any(run.error_message for run in runs)
    event: Any = st.dataframe(
        table_rows(runs),
        hide_index=True,
        key=f"history_table_{shown}",
        on_select="rerun",
        selection_mode="single-row",
        width="stretch",
        height=_height(len(runs)) if wrapped else "auto",
        row_height=WRAPPED_ROW_HEIGHT if wrapped else None,
        column_config=HISTORY_COLUMNS,
    )
    rows = event.selection.rows if event is not None and hasattr(event, "selection") else []
    return runs[rows[0]].id if rows and rows[0] < len(runs) else None


def _height(rows: int) -> int:
    """Pixels for the header and up to VISIBLE_ROWS wrapped rows (and the grid's border)."""
    return 38 + min(rows, VISIBLE_ROWS) * WRAPPED_ROW_HEIGHT


def empty_state(*, filtered: bool) -> None:
    """What an empty result means: filters that match nothing, or no run at all yet."""
    if filtered:
        st.info("No runs match these filters — clear some of them to see more.")
        return
    st.info(
        "No runs yet. Start one with **Run now** on the Live page, `runwatch run demo` on the "
        "command line, or `POST /api/etl/trigger`; every run is listed here as soon as it is queued."
    )


def pager(total: int, page_size: int) -> None:
    """Page size and page number widgets, with where the page sits in the filtered set."""
    last = max(1, math.ceil(total / page_size))
    left, middle, right = st.columns([1, 1, 3])
    left.selectbox("Rows per page", PAGE_SIZES, key="history_page_size", on_change=first_page)
    middle.number_input("Page", min_value=1, max_value=last, step=1, key="history_page")
    page = int(st.session_state.get("history_page") or 1)
    first = (page - 1) * page_size + 1 if total else 0
    right.caption(
        f"Runs {first:,}–{min(page * page_size, total):,} of {total:,} · page {page} of {last}"
    )


def run_details(engine: sa.Engine, run_id: int) -> None:
    """Parameters, counters, error with traceback, event timeline and Retry / Resume of one run."""
    try:
        with read_session(engine) as session:
            run = get_run(session=session, run_id=run_id)
            events = list_events(session=session, run_id=run_id, limit=TIMELINE_LIMIT)
    except RunwatchError as error:
        st.info(f"{error} Pick a run in the table or enter another run number.")
        return
    record = RunRecord.from_run(run)
    st.markdown(f"#### Run #{run.id} · {run.job} {badge_markdown(run.status)}")
    notices.show("history_notice")
    _summary(run, record)
    _error(run)
    if run.status in RESUMABLE:
        _retry_buttons(run)
    left, right = st.columns(2)
    left.markdown("**Parameters**")
    left.json(run.params or {}, expanded=True)
    right.markdown("**Counters**")
    right.json(run.counters or {}, expanded=True)
    _timeline(events)


def _summary(run: Run, record: RunRecord) -> None:
    total = "?" if run.total_records is None else f"{run.total_records:,}"
    metrics_row(
        [
            ("Records loaded", f"{run.records_loaded:,} / {total}", None),
            ("Rejected", f"{run.records_rejected:,}", None),
            ("Duration", format_duration(record.duration), None),
            ("Trigger", run.trigger, None),
            ("By", run.triggered_by or "—", None),
        ]
    )
    resumed = f" · resumed from run #{run.resumed_from}" if run.resumed_from else ""
    st.caption(
        f"Created {local_time(run.created_at)} · started {local_time(run.started_at)} · "
        f"ended {local_time(run.ended_at)}{resumed}"
    )


def _error(run: Run) -> None:
    if not (run.error_type or run.error_message):
        return
    st.error(f"**{run.error_type or 'Error'}**: {run.error_message or ''}")
    detail = dict(run.error_detail or {})
    with st.expander("Traceback and context"):
        trace = detail.pop("traceback", None)
        if trace:
            st.code(trace, language="text")
        if detail:
            st.json(detail)


def _retry_buttons(run: Run) -> None:
    assert run.id is not None
    run_id = run.id
    left, right, _ = st.columns([1, 1, 3])
    may_retry = actions.gate("retry", "Run the job again from the start")
    left.button(
        "Retry",
        key="history_retry",
        help=may_retry.help,
        disabled=may_retry.disabled,
        on_click=actions.notify,
        args=("history_notice", lambda: actions.resume(run_id, from_checkpoint=False)),
    )
    may_resume = actions.gate("retry", f"Continue from the checkpoint (record {run.offset:,})")
    right.button(
        "Resume",
        key="history_resume",
        help=may_resume.help,
        disabled=may_resume.disabled,
        on_click=actions.notify,
        args=("history_notice", lambda: actions.resume(run_id, from_checkpoint=True)),
    )


def _timeline(events: Sequence[Any]) -> None:
    st.markdown("**Timeline**")
    if not events:
        st.caption("No events recorded for this run.")
        return
    rows = [
        {
            "Time": local_time(e.ts, "%Y-%m-%d %H:%M:%S.%f")[:-3],
            "Kind": e.kind,
            "Level": e.level,
            "Step": e.step or "",
            "Message": e.message,
        }
        for e in events
    ]
    st.dataframe(rows, hide_index=True, width="stretch", key="history_timeline")
    if len(events) >= TIMELINE_LIMIT:
        st.caption(f"The first {TIMELINE_LIMIT} events; the Logs page has the full log.")
