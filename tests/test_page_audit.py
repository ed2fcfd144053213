"""The Audit page, run headless with AppTest on a database with audit events (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from db.engine import WRITE_OPTION
from db.models import utcnow
from db.queries import AuditFilters, RunFilters, list_audit, read_session
from etl import commands
from etl.commands import Caller, Source
from reports.audit_export import FIELDS
from tests.pages import run_page, texts
from ui.actions import export_audit_file
from ui.audit import AuditView, parse_view, view_params


@pytest.fixture
def ledger(engine: sa.Engine, no_worker: None) -> bytes:
    """Four audit events from three front ends and actors; returns the CSV export's bytes."""
    commands.add_job(engine, Caller("root", Source.CLI), name="nightly", kind="demo")
    commands.trigger(engine, Caller("analyst", Source.APP), "demo", {"total": 10})
    export = commands.export(engine, Caller("api:10.0.0.7", Source.API), "csv", RunFilters())
    data = b"".join(export)
    commands.add_job(engine, Caller("root", Source.CLI), name="weekly", kind="demo")
    return data


def audit_page(query: dict[str, str] | None = None) -> AppTest:
    """The Audit page, run once (with these URL query parameters)."""
    return run_page("pages/5_Audit.py", query)


def shown(at: AppTest, column: str) -> list[str]:
    """One column of the events table, top to bottom."""
    return [str(v) for v in at.dataframe[0].value[column].tolist()]


def test_audit_empty_database_says_so(engine: sa.Engine, no_worker: None) -> None:
    at = audit_page()
    assert "No audit events match these filters" in texts(at)


def test_audit_shows_who_did_what_from_where_newest_first(ledger: bytes) -> None:
    at = audit_page()
    assert shown(at, "Action") == ["config_change", "export", "trigger", "config_change"]
    assert shown(at, "Actor") == ["root", "api:10.0.0.7", "analyst", "root"]
    assert shown(at, "From") == ["cli", "api", "app", "cli"]
    assert shown(at, "Target")[0] == "job:weekly"
    assert "Newest 4 of 4 matching events." in texts(at)


def test_audit_filters_by_actor_action_and_target_into_the_url(ledger: bytes) -> None:
    at = audit_page()
    at.multiselect(key="audit_actor").set_value(["root"]).run()
    assert shown(at, "Target") == ["job:weekly", "job:nightly"]
    at.text_input(key="audit_target").set_value("night").run()
    assert shown(at, "Target") == ["job:nightly"]
    assert at.query_params["actor"] == "root" and at.query_params["target"] == "night"
    at.multiselect(key="audit_action").set_value(["export"]).run()
    assert "No audit events match" in texts(at)
    assert at.query_params["action"] == "export"


def test_audit_filters_by_date(ledger: bytes) -> None:
    at = audit_page()
    at.date_input(key="audit_from").set_value(utcnow().date() + timedelta(days=1)).run()
    assert "No audit events match" in texts(at)
    at.date_input(key="audit_from").set_value(utcnow().date() - timedelta(days=1)).run()
    assert len(shown(at, "Action")) == 4
    assert at.query_params["since"] == (utcnow().date() - timedelta(days=1)).isoformat()


def test_audit_link_restores_the_view_and_warns_about_bad_values(ledger: bytes) -> None:
    at = audit_page({"action": "trigger,nope", "since": "yesterday", "colour": "red"})
    assert at.multiselect(key="audit_action").value == ["trigger"]
    assert shown(at, "Actor") == ["analyst"]
    warnings = " ".join(w.value for w in at.warning)
    assert "'nope'" in warnings and "'yesterday'" in warnings and "'colour'" in warnings
    assert dict(at.query_params) == {"action": "trigger"}


def test_audit_view_round_trips_through_query_params() -> None:
    view = AuditView(actors=("root",), actions=("export", "trigger"), target="run:4")
    params = view_params(view)
    assert parse_view(params, actors=["root"]) == (view, [])


def test_verify_ledger_button_says_intact_then_names_the_changed_row(
    ledger: bytes, engine: sa.Engine
) -> None:
    at = audit_page()
    at.button(key="audit_verify").click().run()
    assert not at.exception
    assert [s.value for s in at.success][0].startswith("intact: 4 events")
    with read_session(engine) as session:
        second = sorted(e.id for e in list_audit(session=session) if e.id)[1]
    with engine.execution_options(**{WRITE_OPTION: True}).begin() as connection:
        connection.execute(
            sa.text("UPDATE audit_event SET actor = 'x' WHERE id = :i"), {"i": second}
        )
    at.button(key="audit_verify").click().run()
    assert f"broken at audit row #{second}: it was changed" in at.error[0].value


def test_uploaded_export_matches_and_one_changed_byte_does_not(ledger: bytes) -> None:
    at = audit_page()
    at.file_uploader(key="audit_upload").set_value(("runs.csv", ledger, "text/csv")).run()
    assert not at.exception
    message = at.success[0].value
    assert message.startswith("matches export") and "made by api:10.0.0.7 via api" in message
    changed = bytes([ledger[0] ^ 0x20]) + ledger[1:]
    at.file_uploader(key="audit_upload").set_value(("runs.csv", changed, "text/csv")).run()
    assert at.error[0].value.startswith("no match")


def test_audit_download_is_the_filtered_trail_and_is_itself_recorded(
    ledger: bytes, engine: sa.Engine
) -> None:
    at = audit_page()
    assert [b.proto.label for b in at.get("download_button")] == [
        "Download CSV",
        "Download JSON",
    ]
    data = export_audit_file(engine, "json", AuditFilters(actors=("root",)))()
    records = json.loads(data)
    assert [r["target"] for r in records] == ["job:weekly", "job:nightly"]
    assert list(records[0]) == list(FIELDS) and records[0]["source"] == "cli"
    with read_session(engine) as session:
        [recorded] = list_audit(session=session, action="export", limit=1)
    assert recorded.target == "audit" and recorded.details["rows"] == 2
    at.file_uploader(key="audit_upload").set_value(("audit.json", data, "application/json")).run()
    assert "JSON of audit, 2 rows" in at.success[0].value


def test_audit_unreachable_database_shows_a_banner(database_down: None) -> None:
    at = audit_page()
    assert "cannot be reached" in "\n".join(e.value for e in at.error)
