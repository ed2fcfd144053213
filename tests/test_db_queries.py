"""Contract tests of db.queries, run on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from db.models import Run, RunStatus, utcnow
from db.queries import (
    ActiveRunExists,
    InvalidState,
    NotFound,
    RunFilters,
    RunSort,
    append_event,
    claim_next_run,
    count_runs,
    create_run,
    get_run,
    iter_runs,
    list_events,
    list_runs,
    mark_orphans,
    read_session,
    request_cancel,
    resume_run,
    write_session,
)
from tests.factories import make_run


def test_create_run_enqueues_pending_run_with_job_defaults(engine: sa.Engine) -> None:
    with write_session(engine) as session:
        run = create_run(session=session, job="demo", params={"total": 10}, triggered_by="ana")
    with read_session(engine) as session:
        stored = get_run(session=session, run_id=run.id)
        events = list_events(session=session, run_id=run.id)
    assert stored.status == RunStatus.PENDING
    assert stored.params["total"] == 10 and stored.params["batch_size"] == 200
    assert stored.created_at.tzinfo is not None
    assert [e.kind for e in events] == ["status"]
    assert events[0].data["status"] == "pending"


def test_second_active_run_of_a_job_is_refused(engine: sa.Engine) -> None:
    with write_session(engine) as session:
        first = create_run(session=session, job="demo")
    with pytest.raises(ActiveRunExists) as refused, write_session(engine) as session:
        create_run(session=session, job="demo")
    assert refused.value.run_id == first.id
    assert "already has an active run" in str(refused.value)


def test_partial_unique_index_refuses_a_raw_insert(engine: sa.Engine) -> None:
    with write_session(engine) as session:
        create_run(session=session, job="demo")
    with pytest.raises(sa.exc.IntegrityError), write_session(engine) as session:
        session.add(Run(job="demo", status="running"))
        session.flush()


def test_unknown_job_is_not_found(engine: sa.Engine) -> None:
    with pytest.raises(NotFound, match="No job named 'nope'"), write_session(engine) as session:
        create_run(session=session, job="nope")


def test_claim_takes_oldest_pending_once(engine: sa.Engine) -> None:
    with write_session(engine) as session:
        run = create_run(session=session, job="demo")
    with write_session(engine) as session:
        claimed = claim_next_run(session=session, worker_id="w1")
    with write_session(engine) as session:
        again = claim_next_run(session=session, worker_id="w2")
    assert claimed is not None and claimed.id == run.id
    assert claimed.status == RunStatus.RUNNING and claimed.worker_id == "w1"
    assert again is None


def test_cancel_pending_run_ends_it_at_once(engine: sa.Engine) -> None:
    with write_session(engine) as session:
        run = create_run(session=session, job="demo")
    with write_session(engine) as session:
        cancelled = request_cancel(session=session, run_id=run.id)
    assert cancelled.status == RunStatus.CANCELLED
    with pytest.raises(InvalidState), write_session(engine) as session:
        request_cancel(session=session, run_id=run.id)


def test_cancel_running_run_sets_the_flag(engine: sa.Engine) -> None:
    with write_session(engine) as session:
        run = create_run(session=session, job="demo", status="running")
    with write_session(engine) as session:
        request_cancel(session=session, run_id=run.id, actor="ana")
    with read_session(engine) as session:
        assert get_run(session=session, run_id=run.id).cancel_requested


def test_mark_orphans_fails_stale_running_runs(engine: sa.Engine) -> None:
    with write_session(engine) as session:
        stale = make_run(
            session, status="running", ended_at=None, heartbeat_at=utcnow() - timedelta(minutes=5)
        )
        fresh = make_run(
            session, job="csv_import", status="running", ended_at=None, heartbeat_at=utcnow()
        )
    with write_session(engine) as session:
        orphans = mark_orphans(session=session, timeout_s=60)
    with read_session(engine) as session:
        assert orphans == [stale.id]
        failed = get_run(session=session, run_id=stale.id)
        assert failed.status == "failed" and failed.error_type == "interrupted"
        assert get_run(session=session, run_id=fresh.id).status == "running"


def test_resume_copies_the_checkpoint(engine: sa.Engine) -> None:
    with write_session(engine) as session:
        failed = make_run(
            session, status="failed", offset=400, records_loaded=400, total_records=1000
        )
    with write_session(engine) as session:
        resumed = resume_run(session=session, run_id=failed.id, triggered_by="ana")
    assert resumed.offset == 400 and resumed.resumed_from == failed.id
    assert resumed.trigger == "retry" and resumed.status == "pending"
    with pytest.raises(InvalidState), write_session(engine) as session:
        resume_run(session=session, run_id=resumed.id)


def _seed_history(engine: sa.Engine) -> list[Run]:
    base = utcnow() - timedelta(days=10)
    with write_session(engine) as session:
        return [
            make_run(
                session,
                job=("demo", "csv_import")[i % 2],
                status=("finished", "failed", "cancelled")[i % 3],
                trigger=("manual", "api")[i % 2],
                started_at=base + timedelta(hours=i),
                ended_at=base + timedelta(hours=i, seconds=10 + (i * 7) % 50),
                records_loaded=i * 10,
                error_message="disk =full" if i % 3 == 1 else None,
            )
            for i in range(30)
        ]


def test_list_runs_filters_and_counts(engine: sa.Engine) -> None:
    runs = _seed_history(engine)
    filters = RunFilters(statuses=("failed",), jobs=("demo",))
    with read_session(engine) as session:
        page = list_runs(session=session, filters=filters, page=1, page_size=3)
    expected = [r.id for r in runs if r.status == "failed" and r.job == "demo"]
    assert page.total == len(expected)
    assert [r.id for r in page.runs] == sorted(expected, reverse=True)[:3]


def test_list_runs_date_range_and_error_text(engine: sa.Engine) -> None:
    runs = _seed_history(engine)
    since, until = runs[5].created_at, runs[15].created_at
    filters = RunFilters(since=since, until=until, error_text="=FULL")
    with read_session(engine) as session:
        page = list_runs(session=session, filters=filters, page_size=100)
    expected = {r.id for r in runs[5:15] if r.error_message}
    assert {r.id for r in page.runs} == expected and page.total == len(expected)


@pytest.mark.parametrize("key", ["created_at", "duration", "status", "records"])
def test_list_runs_sorts_server_side(engine: sa.Engine, key: str) -> None:
    runs = _seed_history(engine)
    value = {
        "created_at": lambda r: r.created_at,
        "duration": lambda r: (r.ended_at - r.started_at).total_seconds(),
        "status": lambda r: r.status,
        "records": lambda r: r.records_loaded,
    }[key]
    with read_session(engine) as session:
        page = list_runs(session=session, sort=RunSort(key, descending=False), page_size=100)
    assert [value(r) for r in page.runs] == sorted(value(r) for r in runs)


def test_pagination_covers_every_run_once(engine: sa.Engine) -> None:
    runs = _seed_history(engine)
    seen: list[int] = []
    with read_session(engine) as session:
        for page in range(1, 5):
            seen += [r.id for r in list_runs(session=session, page=page, page_size=8).runs]
    assert sorted(seen) == sorted(r.id for r in runs)


def test_iter_runs_streams_the_whole_filtered_set(engine: sa.Engine) -> None:
    runs = _seed_history(engine)
    filters = RunFilters(triggers=("api",))
    with read_session(engine) as session:
        streamed = [r.id for r in iter_runs(session=session, filters=filters, chunk=4)]
        total = count_runs(session=session, filters=filters)
    assert streamed == sorted((r.id for r in runs if r.trigger == "api"), reverse=True)
    assert total == len(streamed)


def test_events_read_by_cursor(engine: sa.Engine) -> None:
    with write_session(engine) as session:
        run = make_run(session)
        ids = [append_event(session=session, run_id=run.id, message=f"line {i}") for i in range(5)]
        append_event(session=session, run_id=run.id, message="oops", level="ERROR")
    with read_session(engine) as session:
        after = list_events(session=session, run_id=run.id, after_id=ids[1])
        errors = list_events(session=session, min_level="WARNING")
        newest = list_events(session=session, limit=2, newest_first=True)
    assert [e.message for e in after] == ["line 2", "line 3", "line 4", "oops"]
    assert [e.message for e in errors] == ["oops"]
    assert [e.message for e in newest] == ["oops", "line 4"]
    assert ids == sorted(ids)
