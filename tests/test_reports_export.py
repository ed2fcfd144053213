"""Audit exports: CSV and JSON of the whole filtered history, neutralised, hashed and recorded."""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from unittest.mock import patch

import sqlalchemy as sa

from db.models import Run
from db.queries import (
    SORT_KEYS,
    RunFilters,
    RunSort,
    iter_runs,
    list_audit,
    read_session,
    write_session,
)
from etl import commands
from etl.commands import Caller, Source
from reports.export import FIELDS, neutralise, stream_export
from tests.export_reference import csv_bytes, json_bytes
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


AWKWARD_TEXT = (
    FORMULA,
    "-1 rows",
    "\tindented",
    "\rreturn",
    'said "no", then left',
    "line one\nline two\r\nline three",
    "naïve café — 東京 🚀",
    "",
    "back\\slash and \x7f and \x01",
    "a,b",
    " leading space",
)
AWKWARD_COUNTERS: tuple[Any, ...] = (
    {},
    {"subjects_processed": 7, "categories_processed": 1},
    {"extracted": 10, "loaded": 9, "rejected": 1},
    {"b": -3, "a": 0, "c": 12345678901234567890},
    {"ratio": 0.25, "label": 'x,"y"', "nested": {"z": 1, "a": [1, 2]}},
    {"ünï": 1, "a": None, "t": True},
    {f"k{i:03d}": i for i in reversed(range(300))},  # huge, in reverse order
    {"key, with: separators": 1, "{": 2},
)


def test_awkward_values_export_the_bytes_the_row_writer_gives(engine: sa.Engine) -> None:
    start = datetime(2026, 3, 1, 8, 0, 0, 123456, tzinfo=UTC)
    durations = (0, 1, 499, 500, 501, 1500, 62500, 1_000_500, 999_999_999, 123_456_789_012, -400)
    with write_session(engine) as session:
        previous = None
        for i in range(40):
            started = start + timedelta(seconds=i, microseconds=i * 7919)
            text = AWKWARD_TEXT[i % len(AWKWARD_TEXT)]
            previous = make_run(
                session,
                job="demo" if i % 3 else "csv_import",
                triggered_by=text,
                error_type=None if i % 2 else "JobError",
                error_message=None if i % 4 == 1 else text,
                current_step=None if i % 5 else "load",
                started_at=started,
                created_at=started,
                ended_at=None
                if i % 7 == 6
                else started + timedelta(microseconds=durations[i % len(durations)]),
                total_records=None if i % 6 == 0 else i * 1000,
                resumed_from=previous.id if previous and i % 2 else None,
                counters=AWKWARD_COUNTERS[i % len(AWKWARD_COUNTERS)],
            )
            if i % 13 == 12:  # queued and never started
                previous.started_at = None
    with read_session(engine) as session:
        runs = list(iter_runs(session=session))
    assert export(engine, "csv") == csv_bytes(runs)
    assert export(engine, "json") == json_bytes(runs)


def test_counters_in_many_key_orders_export_the_bytes_the_row_writer_gives(
    engine: sa.Engine,
) -> None:
    keys = ["extracted", "loaded", "rejected", "skipped"]
    with write_session(engine) as session:
        for i in range(72):  # 60 key orders: more than a batch matches, the rest are rendered alone
            order = list(itertools.permutations(keys))[i % 24][: 2 + i // 24]
            make_run(session, counters={key: i * n for n, key in enumerate(order)})
    with read_session(engine) as session:
        runs = list(iter_runs(session=session))
    assert export(engine, "csv") == csv_bytes(runs)
    assert export(engine, "json") == json_bytes(runs)


def test_batches_join_into_the_bytes_of_one_batch(engine: sa.Engine) -> None:
    with write_session(engine) as session:
        for i in range(25):
            make_run(session, error_message=AWKWARD_TEXT[i % len(AWKWARD_TEXT)])
    with read_session(engine) as session:
        runs = list(iter_runs(session=session))
    for fmt, expected in (("csv", csv_bytes(runs)), ("json", json_bytes(runs))):
        with patch("db.queries.arrow.BATCH_ROWS", 4):
            assert export(engine, fmt) == expected
        # batches read by 8, formatted by 3: slices start inside a batch
        with patch("db.queries.arrow.BATCH_ROWS", 8), patch("reports.export.FORMAT_ROWS", 3):
            assert export(engine, fmt) == expected
        # slices handed on together, at least CHUNK_BYTES at a time but the last
        with patch("reports.export.FORMAT_ROWS", 2), patch("reports.export.CHUNK_BYTES", 900):
            chunks = list(stream_export(engine=engine, fmt=fmt))  # type: ignore[arg-type]
        assert b"".join(chunks) == expected and len(chunks) > 2
        assert all(len(chunk) >= 900 for chunk in chunks[:-1])


def test_text_values_repeated_across_batches_export_alike(engine: sa.Engine) -> None:
    # A text format keeps the cells of values it has seen (reports.cells.per_value). Here job
    # names repeat in every slice; triggered_by brings a few new values each slice, more in all
    # than are kept, so the kept cells are forgotten and made again; error messages bring more
    # new values per slice than are kept at once, so those slices are formatted as they are.
    with write_session(engine) as session:
        for i in range(400):
            make_run(
                session,
                job=f"job {i % 10}",
                triggered_by=f"{AWKWARD_TEXT[i // 20 % len(AWKWARD_TEXT)]}{i // 20}",
                error_message=f"{AWKWARD_TEXT[i // 2 % 3]} at record {i // 2}",
            )
    with read_session(engine) as session:
        runs = list(iter_runs(session=session))
    for fmt, expected in (("csv", csv_bytes(runs)), ("json", json_bytes(runs))):
        with (
            patch("db.queries.arrow.BATCH_ROWS", 200),
            patch("reports.export.FORMAT_ROWS", 100),
            patch("reports.cells.KNOWN_CELLS", 30),
        ):
            assert export(engine, fmt) == expected
            assert export(engine, fmt) == expected  # with the cells the first export kept


def test_columns_empty_in_the_first_batch_take_values_later(engine: sa.Engine) -> None:
    with write_session(engine) as session:
        for i in range(10):
            late = i >= 7  # created first, so exported last (newest first)
            make_run(
                session,
                created_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=10 - i),
                error_message="boom" if late else None,
                total_records=5 if late else None,
                current_step="load" if late else None,
            )
    with read_session(engine) as session:
        runs = list(iter_runs(session=session))
    with patch("db.queries.arrow.BATCH_ROWS", 3):
        assert export(engine, "csv") == csv_bytes(runs)
        assert export(engine, "json") == json_bytes(runs)


def test_every_sort_keeps_its_order_across_batches(engine: sa.Engine) -> None:
    with write_session(engine) as session:
        for i in range(9):
            make_run(session, status="failed" if i % 2 else "finished", records_loaded=i % 3)
    for key in SORT_KEYS:
        for descending in (True, False):
            sort = RunSort(key=key, descending=descending)
            with read_session(engine) as session:
                expected = [run.id for run in iter_runs(session=session, sort=sort)]
            with patch("db.queries.arrow.BATCH_ROWS", 2):
                data = b"".join(stream_export(engine=engine, fmt="json", sort=sort))
            assert [record["id"] for record in json.loads(data)] == expected, sort


def test_filter_values_with_quotes_are_bound_not_spliced(engine: sa.Engine) -> None:
    with write_session(engine) as session:
        make_run(session, status="failed", error_message="it's 'quoted'; DROP TABLE run; --")
        make_run(session, status="failed", error_message="plain")
    rows = csv_rows(export(engine, "csv", error_text="it's 'quoted'", jobs=("o'brien", "demo")))
    assert [row["error_message"] for row in rows] == ["it's 'quoted'; DROP TABLE run; --"]
    assert len(csv_rows(export(engine, "csv"))) == 2


# An export in a process of its own, as `runwatch runs --format` and serve-api run one.
EXPORT_PROCESS = """
import sys
from datetime import UTC, datetime
from db.engine import make_engine
from db.queries import RunFilters
from reports.export import stream_export
engine = make_engine(sys.argv[1])
narrow = RunFilters(jobs=("demo",), since=datetime(2000, 1, 1, tzinfo=UTC), error_text="o")
for fmt in ("csv", "json"):
    for filters in (RunFilters(), narrow):
        assert b"".join(stream_export(engine=engine, fmt=fmt, filters=filters))
import pyarrow
print("pandas" in sys.modules, pyarrow.mimalloc_memory_pool().max_memory())
"""


def test_an_export_does_not_load_pandas_and_allocates_with_the_c_library(
    engine: sa.Engine,
) -> None:
    # pyarrow loads pandas (about 45 MB) to check a Python value it converts unless told its type,
    # and the ADBC DB-API modules load it too: an exporting CLI or API process has no use for it.
    # Arrow's default pool (mimalloc) keeps freed batches' memory: the export chooses the C
    # library's before pyarrow loads (this process may have chosen it for the child: not here).
    with write_session(engine) as session:
        for i, text in enumerate(AWKWARD_TEXT):  # rare cells, rendered by Python, included
            make_run(
                session,
                job="demo",
                error_message=text + "o",
                counters=AWKWARD_COUNTERS[i % len(AWKWARD_COUNTERS)],
                started_at=datetime(2026, 3, 1, tzinfo=UTC),
                ended_at=datetime(2026, 3, 1, 0, 0, 1, 500, tzinfo=UTC),  # a tie: Python rounds
            )
    url = engine.url.render_as_string(hide_password=False)
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    result = subprocess.run(
        [sys.executable, "-c", EXPORT_PROCESS, url],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "0"]  # no byte from mimalloc
