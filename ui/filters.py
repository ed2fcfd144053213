"""History's filter bar, kept in the URL query parameters so a filtered view can be shared."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

import streamlit as st

from db.models import MAX_ID, RunStatus, Trigger
from db.queries import SORT_KEYS, RunFilters, RunSort
from ui.links import choices as _choices, day as _day, day_bounds, save

PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
STATUSES = tuple(s.value for s in RunStatus)
TRIGGERS = tuple(t.value for t in Trigger)
SORT_LABELS = {
    "created_at": "Date",
    "duration": "Duration",
    "status": "Status",
    "records": "Records",
}
ORDER_LABELS = {"desc": "Newest / largest first", "asc": "Oldest / smallest first"}
MAX_PAGE = 1_000_000  # as the API's /api/etl/logs
# The link uses the CLI's and the API's names; the names older links used still work.
OLD_NAMES = {"from": "since", "to": "until", "q": "error_text", "dir": "order", "size": "limit"}
NAMES: tuple[str, ...] = ("status", "job", "trigger", "since", "until", "error_text", "sort")
NAMES += ("order", "page", "limit", "run")


@dataclass(frozen=True)
class HistoryView:
    """Everything that decides what History shows: filters, sort, page and the selected run."""

    statuses: tuple[str, ...] = ()
    jobs: tuple[str, ...] = ()
    triggers: tuple[str, ...] = ()
    first_day: date | None = None  # UTC days, both ends included
    last_day: date | None = None
    error_text: str = ""
    sort: RunSort = field(default_factory=RunSort)
    page: int = 1
    page_size: int = DEFAULT_PAGE_SIZE
    run_id: int | None = None

    def filters(self) -> RunFilters:
        """The view's filters as db.queries understands them."""
        since, until = day_bounds(self.first_day, self.last_day)
        return RunFilters(
            statuses=self.statuses,
            jobs=self.jobs,
            triggers=self.triggers,
            since=since,
            until=until,
            error_text=self.error_text,
        )


def _joined(value: str | list[str]) -> str:
    """A repeated parameter (the API's style) as one comma-separated value (the link's style)."""
    return ",".join(value) if isinstance(value, list) else value


def _named(params: Mapping[str, str | list[str]], warnings: list[str]) -> dict[str, str]:
    """The parameters under their current names; a warning for each name not understood."""
    raw: dict[str, str] = {}
    for key, value in params.items():
        name = OLD_NAMES.get(key, key)
        if name not in NAMES:
            warnings.append(f"Ignored the unknown parameter {key!r} in the link.")
        elif name not in raw or key == name:  # the current name wins over an old one
            raw[name] = _joined(value)
    return raw


def _positive(raw: str, name: str, warnings: list[str], maximum: int) -> int | None:
    if (
        raw.isascii()
        and raw.isdigit()
        and len(raw) <= len(str(maximum))
        and 1 <= int(raw) <= maximum
    ):
        return int(raw)
    warnings.append(
        f"Ignored the {name} {raw[:40]!r} in the link (expected a whole number from 1 to {maximum:,})."
    )
    return None


def parse_view(
    params: Mapping[str, str | list[str]], *, jobs: Sequence[str]
) -> tuple[HistoryView, list[str]]:
    """The view a URL's query parameters describe, and a warning for each value not understood."""
    warnings: list[str] = []
    raw = _named(params, warnings)
    page = _positive(raw["page"], "page", warnings, MAX_PAGE) if raw.get("page") else None
    view = HistoryView(
        statuses=_choices(raw.get("status", ""), STATUSES, "status", warnings),
        jobs=_choices(raw.get("job", ""), jobs, "job", warnings),
        triggers=_choices(raw.get("trigger", ""), TRIGGERS, "trigger", warnings),
        first_day=_day(raw["since"], "since", warnings) if raw.get("since") else None,
        last_day=_day(raw["until"], "until", warnings) if raw.get("until") else None,
        error_text=raw.get("error_text", "").strip(),
        sort=_sort(raw, warnings),
        page=page or 1,
        page_size=_page_size(raw.get("limit", ""), warnings),
        run_id=_positive(raw["run"], "run", warnings, MAX_ID) if raw.get("run") else None,
    )
    if view.first_day and view.last_day and view.last_day < view.first_day:
        warnings.append("Ignored the date range in the link: it ends before it starts.")
        view = replace(view, first_day=None, last_day=None)
    return view, warnings


def _sort(raw: Mapping[str, str], warnings: list[str]) -> RunSort:
    key, order = raw.get("sort", "created_at"), raw.get("order", "desc")
    if key not in SORT_KEYS:
        warnings.append(f"Ignored the sort {key!r} in the link (one of {', '.join(SORT_KEYS)}).")
        key = "created_at"
    if order not in ORDER_LABELS:
        warnings.append(f"Ignored the sort direction {order!r} in the link (asc or desc).")
        order = "desc"
    return RunSort(key=key, descending=order == "desc")


def _page_size(raw: str, warnings: list[str]) -> int:
    if not raw:
        return DEFAULT_PAGE_SIZE
    if raw.isdigit() and int(raw) in PAGE_SIZES:
        return int(raw)
    sizes = ", ".join(map(str, PAGE_SIZES))
    warnings.append(f"Ignored the page size {raw!r} in the link (one of {sizes}).")
    return DEFAULT_PAGE_SIZE


def view_params(view: HistoryView) -> dict[str, str]:
    """The query parameters of `view`, leaving out every default."""
    values: dict[str, Any] = {
        "status": ",".join(view.statuses),
        "job": ",".join(view.jobs),
        "trigger": ",".join(view.triggers),
        "since": view.first_day.isoformat() if view.first_day else "",
        "until": view.last_day.isoformat() if view.last_day else "",
        "error_text": view.error_text,
        "sort": "" if view.sort.key == "created_at" else view.sort.key,
        "order": "" if view.sort.descending else "asc",
        "page": "" if view.page == 1 else str(view.page),
        "limit": "" if view.page_size == DEFAULT_PAGE_SIZE else str(view.page_size),
        "run": str(view.run_id) if view.run_id else "",
    }
    return {key: value for key, value in values.items() if value}


# ---------------------------------------------------------------- widgets <-> session state

_KEYS = {
    "statuses": "history_status",
    "jobs": "history_job",
    "triggers": "history_trigger",
    "first_day": "history_from",
    "last_day": "history_to",
    "error_text": "history_q",
    "page": "history_page",
    "page_size": "history_page_size",
    "run_id": "history_run",
}


def _seed_state(view: HistoryView) -> None:
    for name, key in _KEYS.items():
        value = getattr(view, name)
        st.session_state[key] = list(value) if isinstance(value, tuple) else value
    st.session_state.history_sort = view.sort.key
    st.session_state.history_dir = "desc" if view.sort.descending else "asc"


def restore_from_url(jobs: Sequence[str]) -> None:
    """On a session's first run, set the widgets from the URL and warn about values not understood."""
    if st.session_state.get("history_ready"):
        return
    view, warnings = parse_view(st.query_params.to_dict(), jobs=jobs)
    _seed_state(view)
    st.session_state.history_warnings = warnings
    st.session_state.history_ready = True


def first_page() -> None:
    """Go back to page 1 (on_change of every widget that changes the filtered set)."""
    st.session_state.history_page = 1


def filter_bar(jobs: Sequence[str]) -> None:
    """The filter and sort widgets; changing any of them goes back to page 1."""
    for warning in st.session_state.pop("history_warnings", []):
        st.warning(warning, icon=":material/warning:")
    # three rows, so that at 1024 px a chosen status, a date and the order are read in full
    which = st.columns(3)
    which[0].multiselect("Status", STATUSES, key="history_status", on_change=first_page)
    which[1].multiselect("Job", list(jobs), key="history_job", on_change=first_page)
    which[2].multiselect("Trigger", TRIGGERS, key="history_trigger", on_change=first_page)
    when = st.columns(3)
    when[0].date_input("From (UTC)", value=None, key="history_from", on_change=first_page)
    when[1].date_input("To (UTC)", value=None, key="history_to", on_change=first_page)
    when[2].selectbox(
        "Sort by",
        SORT_KEYS,
        key="history_sort",
        format_func=SORT_LABELS.__getitem__,
        on_change=first_page,
    )
    what = st.columns([3, 2])
    what[0].text_input(
        "Error message contains", key="history_q", on_change=first_page, placeholder="e.g. timeout"
    )
    what[1].selectbox(
        "Order",
        list(ORDER_LABELS),
        key="history_dir",
        format_func=ORDER_LABELS.__getitem__,
        on_change=first_page,
    )


def current_view() -> HistoryView:
    """The view the widgets describe now."""
    state = st.session_state
    return HistoryView(
        statuses=tuple(state.get("history_status") or ()),
        jobs=tuple(state.get("history_job") or ()),
        triggers=tuple(state.get("history_trigger") or ()),
        first_day=state.get("history_from"),
        last_day=state.get("history_to"),
        error_text=(state.get("history_q") or "").strip(),
        sort=RunSort(
            key=state.get("history_sort", "created_at"),
            descending=state.get("history_dir", "desc") == "desc",
        ),
        page=int(state.get("history_page") or 1),
        page_size=int(state.get("history_page_size") or DEFAULT_PAGE_SIZE),
        run_id=state.get("history_run"),
    )


def without_reversed_range(view: HistoryView) -> tuple[HistoryView, str | None]:
    """The view without its date range when the range ends before it starts, and why."""
    if view.first_day and view.last_day and view.last_day < view.first_day:
        reason = "The date range ends before it starts; showing every date instead."
        return replace(view, first_day=None, last_day=None), reason
    return view, None


def save_to_url(view: HistoryView) -> None:
    """Write the view into the URL, so reloading or sharing the link shows the same."""
    save(view_params(view))
