"""Audit exports: CSV and JSON of the whole filtered history, neutralised, hashed and recorded."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa

from db.models import Run
from db.queries import RunFilters, RunSort, list_audit, read_session, write_session
from etl import commands
from etl.commands import Caller, Source
from reports.export import FIELDS, neutralise, stream_export
from tests.factories import make_run

HEADER = (
    "id,job,status,trigger,triggered_by,start_date,end_date,duration,total_records,offset,"
    "records_loaded,records_rejected,counters,current_step,error_type,error_message,created_at,"
    "resumed_from"
)
FORMULA = "=cmd|' /C calc'!A0"


def export(engine: sa.Engine, fmt: str, **filters: Any) -> bytes:
    return b"".join(stream_export(engine=engine, fmt=fmt, filters=RunFilters(**filters)))  # type: ignore[arg-type]


def csv_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def as_cell(value: Any) -> str:
    """A JSON value as the CSV writes it."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return neutralise(value) if isinstance(value, str) else str(value)


def test_csv_header_lists_the_run_record_fields_in_order(engine: sa.Engine) -> None:
    data = export(engine, "csv")
    assert data.decode("utf-8").splitlines() == [HEADER]
    assert ",".join(FIELDS) == HEADER


def test_times_are_iso_8601_utc_whatever_zone_they_were_given_in(engine: sa.Engine) -> None:
    paris = timezone(timedelta(hours=2))
    started = datetime(2026, 6, 1, 14, 30, tzinfo=paris)
    with write_session(engine) as session:
        make_run(session, created_at=started, started_at=started)
    [row] = csv_rows(export(engine, "csv"))
    assert row["created_at"] == "2026-06-01T12:30:00.000000+00:00"
    assert row["start_date"] == "2026-06-01T12:30:00.000000+00:00"
    assert row["end_date"] == "2026-06-01T12:30:30.000000+00:00" and row["duration"] == "30.0"


def test_formula_in_an_error_message_is_neutralised_in_csv(engine: sa.Engine) -> None:
    with write_session(engine) as session:
        make_run(session, status="failed", error_type="JobError", error_message=FORMULA)
        make_run(session, triggered_by="+alice", error_message="@SUM(A1)")
    rows = csv_rows(export(engine, "csv"))
    assert rows[1]["error_message"] == "'" + FORMULA
    assert rows[0]["triggered_by"] == "'+alice" and rows[0]["error_message"] == "'@SUM(A1)"
    assert json.loads(export(engine, "json"))[1]["error_message"] == FORMULA


def test_json_holds_the_same_rows_as_csv(engine: sa.Engine) -> None:
    with write_session(engine) as session:
        make_run(session, counters={"subjects_processed": 7, "categories_processed": 1})
        make_run(session, status="failed", error_message=FORMULA, offset=400, ended_at=None)
        make_run(session, job="csv_import", records_rejected=3, trigger="api")
    records = json.loads(export(engine, "json"))
    assert [list(r) for r in records] == [list(FIELDS)] * 3
    assert [{k: as_cell(v) for k, v in r.items()} for r in records] == csv_rows(
        export(engine, "csv")
    )


def test_export_holds_the_whole_filtered_set_not_a_page(engine: sa.Engine) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with write_session(engine) as session:
        for i in range(2300):  # more than a page, a CSV chunk and a query chunk
            status = "failed" if i % 10 else "finished"
            created = start + timedelta(minutes=i)
            session.add(Run(job="demo", status=status, created_at=created, started_at=created))
    rows = csv_rows(export(engine, "csv", statuses=("failed",)))
    assert len(rows) == 2070 and {r["status"] for r in rows} == {"failed"}
    ids = [int(r["id"]) for r in rows]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 2070
    assert len(json.loads(export(engine, "json", statuses=("failed",)))) == 2070


def test_sort_order_is_the_one_asked_for(engine: sa.Engine) -> None:
    with write_session(engine) as session:
        for records in (30, 10, 20):
            make_run(session, records_loaded=records)
    sort = RunSort(key="records", descending=False)
    data = b"".join(stream_export(engine=engine, fmt="json", sort=sort))
    assert [r["records_loaded"] for r in json.loads(data)] == [10, 20, 30]


def test_each_export_is_audited_with_its_filters_row_count_and_sha256(engine: sa.Engine) -> None:
    with write_session(engine) as session:
        for status in ("finished", "failed", "failed"):
            make_run(session, status=status)
    filters = RunFilters(statuses=("failed",), jobs=("demo",))
    for fmt in ("csv", "json"):
        chunks = commands.export(engine, Caller("ana", Source.API), fmt, filters)
        data = b"".join(chunks)
        with read_session(engine) as session:
            audit = list_audit(session=session, action="export")[0]
        assert audit.actor == "ana" and audit.target == "runs"
        assert audit.details["format"] == fmt and audit.details["rows"] == 2
        assert audit.details["sha256"] == hashlib.sha256(data).hexdigest()
        assert audit.details["filters"] == filters.as_dict()
        assert audit.details["source"] == "api"


def test_empty_exports_are_well_formed(engine: sa.Engine) -> None:
    assert json.loads(export(engine, "json")) == []
    assert csv_rows(export(engine, "csv")) == []
