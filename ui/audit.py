"""The Audit page's pieces: filters kept in the URL, the events table, Verify ledger and export checks."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import sqlalchemy as sa
import streamlit as st

from db.models import AuditEvent
from db.queries import AuditFilters, audit_actors, count_audit, list_audit, read_session
from etl.commands import PERMISSIONS
from reports import ledger
from ui import links
from ui.badges import local_time

# every action a command records (listings record none), then refusals and sign-ins
CHANGES = tuple(action for action in PERMISSIONS if not action.endswith("_list"))
ACCESS = ("forbidden", "sign_in", "sign_in_failed", "sign_out")
ACTIONS = (*CHANGES, *ACCESS)
SHOWN = 500  # newest events in the table; the downloads hold every one that matches
NAMES = ("actor", "action", "target", "since", "until")


@dataclass(frozen=True)
class AuditView:
    """What the Audit page shows: who, which actions, text in the target, UTC days (both included)."""

    actors: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    target: str = ""
    first_day: date | None = None
    last_day: date | None = None

    def filters(self) -> AuditFilters:
        """The view's filters as db.queries understands them."""
        since, until = links.day_bounds(self.first_day, self.last_day)
        return AuditFilters(self.actors, self.actions, self.target, since, until)


def parse_view(
    params: Mapping[str, str | list[str]], *, actors: Sequence[str]
) -> tuple[AuditView, list[str]]:
    """The view a URL's query parameters describe, and a warning for each value not understood."""
    warnings = [
        f"Ignored the unknown parameter {k!r} in the link." for k in params if k not in NAMES
    ]
    raw = {key: links.joined(value) for key, value in params.items() if key in NAMES}
    view = AuditView(
        actors=links.choices(raw.get("actor", ""), actors, "actor", warnings),
        actions=links.choices(raw.get("action", ""), ACTIONS, "action", warnings),
        target=raw.get("target", "").strip(),
        first_day=links.day(raw["since"], "since", warnings) if raw.get("since") else None,
        last_day=links.day(raw["until"], "until", warnings) if raw.get("until") else None,
    )
    if view.first_day and view.last_day and view.last_day < view.first_day:
        warnings.append("Ignored the date range in the link: it ends before it starts.")
        view = replace(view, first_day=None, last_day=None)
    return view, warnings


def view_params(view: AuditView) -> dict[str, str]:
    """The query parameters of `view`, leaving out every default."""
    values = {
        "actor": ",".join(view.actors),
        "action": ",".join(view.actions),
        "target": view.target,
        "since": view.first_day.isoformat() if view.first_day else "",
        "until": view.last_day.isoformat() if view.last_day else "",
    }
    return {key: value for key, value in values.items() if value}


# ---------------------------------------------------------------- widgets <-> URL

_KEYS = {
    "actors": "audit_actor",
    "actions": "audit_action",
    "target": "audit_target",
    "first_day": "audit_from",
    "last_day": "audit_to",
}


def known_actors(engine: sa.Engine) -> list[str]:
    """Every actor the ledger names, for the actor picker."""
    with read_session(engine) as session:
        return audit_actors(session=session)


def restore_from_url(actors: Sequence[str]) -> None:
    """On a session's first run, set the widgets from the URL and keep warnings about values not understood."""
    if st.session_state.get("audit_ready"):
        return
    view, warnings = parse_view(st.query_params.to_dict(), actors=actors)
    for name, key in _KEYS.items():
        value = getattr(view, name)
        st.session_state[key] = list(value) if isinstance(value, tuple) else value
    st.session_state.audit_warnings = warnings
    st.session_state.audit_ready = True


def filter_bar(actors: Sequence[str]) -> AuditView:
    """The filter widgets, and the view they describe (without a date range that ends before it starts)."""
    for warning in st.session_state.pop("audit_warnings", []):
        st.warning(warning, icon=":material/warning:")
    cells = st.columns([2, 2, 2, 1.4, 1.4])
    cells[0].multiselect("Actor", list(actors), key="audit_actor")
    cells[1].multiselect("Action", ACTIONS, key="audit_action")
    cells[2].text_input(
        "Target contains", key="audit_target", placeholder="e.g. run:42 or job:demo"
    )
    cells[3].date_input("From (UTC)", value=None, key="audit_from")
    cells[4].date_input("To (UTC)", value=None, key="audit_to")
    state = st.session_state
    view = AuditView(
        actors=tuple(state.get("audit_actor") or ()),
        actions=tuple(state.get("audit_action") or ()),
        target=(state.get("audit_target") or "").strip(),
        first_day=state.get("audit_from"),
        last_day=state.get("audit_to"),
    )
    links.save(view_params(view))
    if view.first_day and view.last_day and view.last_day < view.first_day:
        st.warning("The date range ends before it starts; showing every date instead.")
        return replace(view, first_day=None, last_day=None)
    return view


# ---------------------------------------------------------------- the events


def load_events(engine: sa.Engine, filters: AuditFilters) -> tuple[Sequence[AuditEvent], int]:
    """The newest matching events (at most SHOWN) and how many match in all."""
    with read_session(engine) as session:
        events = list_audit(session=session, filters=filters, limit=SHOWN)
        return events, count_audit(session=session, filters=filters)


def table_rows(events: Sequence[AuditEvent]) -> list[dict[str, Any]]:
    """One row per event: when (viewer's zone), who, from where, what, on what, the details."""
    rows = []
    for event in events:
        details = {k: v for k, v in (event.details or {}).items() if k != "source"}
        rows.append(
            {
                "#": event.id,
                "Time": local_time(event.ts),
                "Actor": event.actor,
                "From": (event.details or {}).get("source", ""),
                "Action": event.action,
                "Target": event.target,
                "Details": json.dumps(details, sort_keys=True, separators=(", ", ": ")),
            }
        )
    return rows


def events_table(events: Sequence[AuditEvent], total: int) -> None:
    """The events, newest first, with how many of the matching ones are shown."""
    if not total:
        st.info("No audit events match these filters — clear some of them.")
        return
    st.dataframe(table_rows(events), hide_index=True, width="stretch", key="audit_table")
    st.caption(f"Newest {len(events):,} of {total:,} matching events.")


# ---------------------------------------------------------------- checks


def verify_button(engine: sa.Engine) -> None:
    """Verify ledger: walk the hash chain and say whether it is intact, or where it breaks."""
    if st.button("Verify ledger", key="audit_verify", help="Check every row's hash and link"):
        report = ledger.verify_ledger(engine)
        text = ledger.ledger_message(report)
        if report.breach is None:
            st.success(text, icon=":material/verified:")
        else:
            st.error(text, icon=":material/gpp_bad:")


def export_check(engine: sa.Engine) -> None:
    """Upload an export: whether its bytes are exactly an export Runwatch recorded, and whose."""
    uploaded = st.file_uploader(
        "Verify an export file (CSV or JSON)",
        type=["csv", "json"],
        key="audit_upload",
        help="Runwatch compares the file's SHA-256 with every export it recorded.",
    )
    if uploaded is None:
        return
    digest, found = ledger.match_export(engine, uploaded)
    text = ledger.export_message(digest, found)
    (st.success if found else st.error)(text)
