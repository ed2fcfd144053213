"""The History page, run headless with AppTest on a seeded database (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from db.models import RunStatus, utcnow
from db.queries import (
    RunFilters,
    RunSort,
    get_run,
    iter_runs,
    list_audit,
    list_runs,
    read_session,
    write_session,
)
from db.settings import get_settings
from reports.export import FIELDS, stream_export
from tests.export_reference import record_values
from tests.factories import make_run
from tests.pages import run_page, texts
from ui.actions import export_file
from ui.filters import HistoryView, parse_view, view_params

FORMULA = "=cmd|' /C calc'!A0"


@pytest.fixture
def seeded(engine: sa.Engine, no_worker: None) -> list[int]:
    """Six runs: three finished demo, two failed demo (one with a formula error), one failed csv."""
    start = utcnow() - timedelta(days=1)
    rows: list[dict[str, Any]] = [
        {"records_loaded": 300},
        {"records_loaded": 100},
        {"records_loaded": 200},
        {
            "status": "failed",
            "error_type": "JobError",
            "error_message": "timeout talking to source",
        },
        {"status": "failed", "error_type": "ValueError", "error_message": FORMULA},
        {"job": "csv_import", "status": "failed", "error_message": "bad header", "trigger": "api"},
    ]
    for failed in rows[3:]:
        failed["records_loaded"] = 50
    ids = []
    with write_session(engine) as session:
        for i, values in enumerate(rows):
            run = make_run(session, started_at=start + timedelta(minutes=i), **values)
            ids.append(run.id)
    return ids


def history(query: dict[str, str] | None = None) -> AppTest:
    """The History page, run once (with these URL query parameters)."""
    return run_page("pages/1_History.py", query)


def shown_ids(at: AppTest) -> list[int]:
    """The run ids in the history table, top to bottom."""
    return [int(v) for v in at.dataframe[0].value["Run"].tolist()]


def test_history_empty_database_says_what_to_do(engine: sa.Engine, no_worker: None) -> None:
    at = history()
    assert "No runs yet. Start one with **Run now**" in texts(at)
    assert "of 0" not in texts(at)  # no empty grid, pager or downloads
    assert not at.dataframe and not at.get("download_button")
    at.multiselect(key="history_status").set_value(["failed"]).run()
    assert "No runs match these filters" in texts(at)


def test_history_shows_newest_first_with_total(seeded: list[int]) -> None:
    at = history()
    assert shown_ids(at) == seeded[::-1]
    assert "of 6" in texts(at)


def test_status_and_job_filters_change_rows_and_count(seeded: list[int]) -> None:
    at = history()
    at.multiselect(key="history_status").set_value(["failed"]).run()
    assert not at.exception
    assert shown_ids(at) == [seeded[5], seeded[4], seeded[3]]
    assert "of 3" in texts(at)
    at.multiselect(key="history_job").set_value(["demo"]).run()
    assert shown_ids(at) == [seeded[4], seeded[3]]
    assert at.query_params["status"] == "failed" and at.query_params["job"] == "demo"


def test_error_text_and_trigger_filters(seeded: list[int]) -> None:
    at = history()
    at.text_input(key="history_q").set_value("TIMEOUT").run()
    assert shown_ids(at) == [seeded[3]]
    at.text_input(key="history_q").set_value("").run()
    at.multiselect(key="history_trigger").set_value(["api"]).run()
    assert shown_ids(at) == [seeded[5]]


def test_date_range_filter(seeded: list[int], engine: sa.Engine) -> None:
    old = utcnow() - timedelta(days=10)
    with write_session(engine) as session:
        old_id = make_run(session, started_at=old).id
    at = history({"to": (old + timedelta(days=1)).date().isoformat()})
    assert shown_ids(at) == [old_id]
    at.date_input(key="history_to").set_value(None).run()
    at.date_input(key="history_from").set_value((utcnow() - timedelta(days=2)).date()).run()
    assert sorted(shown_ids(at)) == sorted(seeded)


def test_sort_by_records_ascending(seeded: list[int]) -> None:
    at = history()
    at.multiselect(key="history_status").set_value(["finished"]).run()
    at.selectbox(key="history_sort").set_value("records").run()
    at.selectbox(key="history_dir").set_value("asc").run()
    assert shown_ids(at) == [seeded[1], seeded[2], seeded[0]]
    assert at.query_params["sort"] == "records" and at.query_params["order"] == "asc"


def test_pagination_pages_through_the_whole_set(engine: sa.Engine, no_worker: None) -> None:
    start = utcnow() - timedelta(days=1)
    with write_session(engine) as session:
        ids = [make_run(session, started_at=start + timedelta(seconds=i)).id for i in range(60)]
    at = history()
    at.selectbox(key="history_page_size").set_value(25).run()
    at.number_input(key="history_page").set_value(3).run()
    assert not at.exception
    assert shown_ids(at) == ids[:10][::-1]
    assert "Runs 51–60 of 60 · page 3 of 3" in texts(at)
    at.selectbox(key="history_page_size").set_value(50).run()  # a new page size starts at page 1
    assert shown_ids(at) == ids[10:][::-1]


def test_query_params_restore_the_view(seeded: list[int]) -> None:
    at = history({"status": "failed,finished", "sort": "records", "dir": "asc", "size": "25"})
    assert at.multiselect(key="history_status").value == ["failed", "finished"]
    assert at.selectbox(key="history_sort").value == "records"
    assert at.selectbox(key="history_page_size").value == 25
    assert shown_ids(at)[-1] == seeded[0]  # 300 records: the largest, last
    assert at.query_params["limit"] == "25" and "size" not in at.query_params  # the API's name


def test_bad_query_params_warn_and_fall_back_to_defaults(seeded: list[int]) -> None:
    query = {"status": "exploded", "sort": "colour", "size": "7", "page": "-2", "from": "yesterday"}
    at = history(query)
    warnings = "\n".join(w.value for w in at.warning)
    for bad in ("'exploded'", "'colour'", "'7'", "'-2'", "'yesterday'"):
        assert bad in warnings
    assert shown_ids(at) == seeded[::-1]
    assert "status" not in at.query_params and "sort" not in at.query_params


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ({"page": "99999999999999999999999999"}, "Ignored the page '9999"),
        ({"run": "99999999999999999999999"}, "Ignored the run '9999"),
        ({"run": "٣"}, "Ignored the run '٣'"),
        ({"colour": "red"}, "Ignored the unknown parameter 'colour'"),
    ],
)
def test_out_of_range_or_unknown_url_values_warn_and_use_the_default(
    seeded: list[int], query: dict[str, str], said: str
) -> None:
    at = history(query)
    assert said in "\n".join(w.value for w in at.warning)
    assert shown_ids(at) == seeded[::-1]
    assert at.number_input(key="history_run").value is None
    assert dict(at.query_params) == {}  # the link is rewritten without what was ignored


def test_links_take_the_cli_and_api_names_and_the_old_ones(
    seeded: list[int], engine: sa.Engine
) -> None:
    old = utcnow() - timedelta(days=10)
    with write_session(engine) as session:
        old_id = make_run(session, started_at=old).id
    day = old.date().isoformat()
    for query in ({"since": day, "until": day}, {"from": day, "to": day}):
        at = history({**query, "order": "asc"})
        assert shown_ids(at) == [old_id] and not at.warning
        assert dict(at.query_params) == {"since": day, "until": day, "order": "asc"}


def test_a_page_past_the_end_shows_the_last_page(seeded: list[int]) -> None:
    at = history({"page": "40", "size": "25"})
    assert shown_ids(at) == seeded[::-1]
    assert "page 1 of 1" in texts(at)


def test_view_round_trips_through_query_params() -> None:
    view = HistoryView(statuses=("failed",), jobs=("demo",), error_text="x", page=3, page_size=100)
    again, warnings = parse_view(view_params(view), jobs=["demo"])
    assert again == view and warnings == []
    assert view_params(HistoryView()) == {}


def test_details_show_error_traceback_and_timeline(seeded: list[int], engine: sa.Engine) -> None:
    with write_session(engine) as session:
        run = get_run(session=session, run_id=seeded[3])
        run.error_detail = {
            "traceback": "Traceback (most recent call last):\n  boom",
            "stage": "load",
        }
        session.add(run)
    at = history({"run": str(seeded[3])})
    assert at.number_input(key="history_run").value == seeded[3]
    assert "timeout talking to source" in "\n".join(e.value for e in at.error)
    assert any("boom" in c.value for c in at.code)
    assert at.button(key="history_retry") and at.button(key="history_resume")


def test_unknown_run_number_says_so(seeded: list[int]) -> None:
    at = history({"run": "9999"})
    assert "No run #9999." in texts(at)


def test_retry_enqueues_a_fresh_run_and_audits_it(seeded: list[int], engine: sa.Engine) -> None:
    at = history({"run": str(seeded[3])})
    at.button(key="history_retry").click().run()
    assert not at.exception
    with read_session(engine) as session:
        newest = list_runs(session=session).runs[0]
        audit = list_audit(session=session, action="retry")
    assert newest.status == RunStatus.PENDING and newest.trigger == "retry"
    assert newest.resumed_from == seeded[3] and newest.offset == 0
    assert f"run #{newest.id}" in texts(at)
    assert audit[0].target == f"run:{newest.id}" and audit[0].details["resumed_from"] == seeded[3]
    at.button(key="history_resume").click().run()  # the job is active again: refused, explained
    assert "already has an active run" in texts(at)


def test_resume_continues_from_the_checkpoint(seeded: list[int], engine: sa.Engine) -> None:
    at = history({"run": str(seeded[4])})
    at.button(key="history_resume").click().run()
    with read_session(engine) as session:
        newest = list_runs(session=session).runs[0]
        audit = list_audit(session=session, action="retry")
    assert newest.resumed_from == seeded[4] and newest.offset == 1000
    assert audit[0].details["from_checkpoint"] is True


def test_finished_run_offers_no_retry(seeded: list[int]) -> None:
    at = history({"run": str(seeded[0])})
    assert not [b for b in at.button if b.key in ("history_retry", "history_resume")]


# ---------------------------------------------------------------- exports


def test_csv_export_is_exactly_the_filtered_sorted_set(
    seeded: list[int], engine: sa.Engine
) -> None:
    filters, sort = RunFilters(statuses=("failed",)), RunSort(key="records", descending=False)
    data = export_file(engine, "csv", filters, sort)()
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    with read_session(engine) as session:
        expected = [
            record_values(r) for r in iter_runs(session=session, filters=filters, sort=sort)
        ]
    assert (
        [int(r["id"]) for r in rows]
        == [r["id"] for r in expected]
        == [
            seeded[3],
            seeded[4],
            seeded[5],
        ]
    )
    assert list(rows[0]) == list(FIELDS)
    assert rows[0]["created_at"] == expected[0]["created_at"] and "+00:00" in rows[0]["created_at"]
    assert rows[1]["error_message"] == "'" + FORMULA


def test_export_writes_the_audit_event(seeded: list[int], engine: sa.Engine) -> None:
    filters = RunFilters(jobs=("demo",))
    data = export_file(engine, "json", filters, RunSort())()
    records = json.loads(data)
    with read_session(engine) as session:
        audit = list_audit(session=session, action="export")
    assert [r["id"] for r in records] == seeded[4::-1]
    assert audit[0].actor == get_settings().actor and audit[0].details["rows"] == 5
    assert audit[0].details["sha256"] == hashlib.sha256(data).hexdigest()
    assert audit[0].details["filters"]["jobs"] == ["demo"]
    assert audit[0].details["source"] == "app"


def test_export_bytes_equal_the_shared_export(seeded: list[int], engine: sa.Engine) -> None:
    filters, sort = RunFilters(error_text="t"), RunSort(key="duration")
    shared = b"".join(stream_export(engine=engine, fmt="csv", filters=filters, sort=sort))
    assert export_file(engine, "csv", filters, sort)() == shared


def test_page_draws_both_download_buttons_without_exporting(seeded: list[int], engine) -> None:
    at = history({"status": "failed"})
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Download CSV", "Download JSON"]
    with read_session(engine) as session:
        assert list_audit(session=session, action="export") == []


def test_unreachable_database_shows_a_banner(database_down: None) -> None:
    at = history()
    assert "cannot be reached" in "\n".join(e.value for e in at.error)


def test_export_equals_runwatch_runs_with_the_same_filters(
    seeded: list[int], engine: sa.Engine, tmp_path: Path
) -> None:
    from etl.cli import main

    first, last = (utcnow() - timedelta(days=2)).date(), utcnow().date()
    path = tmp_path / "cli.csv"
    argv = ["runs", "--status", "failed", "--job", "demo", "--sort", "records", "--asc"]
    argv += ["--since", first.isoformat(), "--until", last.isoformat()]
    assert main([*argv, "--format", "csv", "--output", str(path)]) == 0
    query = {"status": "failed", "job": "demo", "sort": "records", "dir": "asc"}
    view, warnings = parse_view(
        {**query, "from": first.isoformat(), "to": last.isoformat()}, jobs=["demo"]
    )
    assert warnings == []
    ours = export_file(engine, "csv", view.filters(), view.sort)()
    assert ours == path.read_bytes()
    assert len(ours.decode().splitlines()) == 1 + 2
