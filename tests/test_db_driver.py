"""The bare-driver read path (db.driver) and the hot reads built on it, on both backends."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from db import driver
from db.engine import MAX_IDLE_READERS, make_engine, read_connections
from db.models import Run, RunEvent, RunRow
from db.queries import (
    RunFilters,
    RunSort,
    append_event,
    filter_clause,
    iter_runs,
    list_events,
    list_runs,
    order_clause,
    read_session,
    write_session,
)
from tests.conftest import configure
from tests.factories import make_run


def _runs_since(session: sa.orm.Session, since: datetime) -> list[tuple[int, datetime]]:
    rows = driver.read(
        session,
        "test_runs_since",
        lambda: (
            sa.select(Run.id, Run.created_at)
            .where(Run.created_at >= sa.bindparam("since"))
            .order_by(Run.id)
        ),
        {"since": since},
    )
    convert = driver.timestamp(session.get_bind().dialect.name == "sqlite")
    return [(run_id, convert(created)) for run_id, created in rows]


def test_read_binds_aware_datetimes_and_returns_them_in_utc(engine: sa.Engine) -> None:
    now = datetime.now(UTC)
    with write_session(engine) as session:
        old = make_run(session, created_at=now - timedelta(days=2))
        new = make_run(session, created_at=now - timedelta(hours=1))
    with read_session(engine) as session:
        assert [run_id for run_id, _ in _runs_since(session, now - timedelta(days=3))] == [
            old.id,
            new.id,
        ]
        rows = _runs_since(session, now - timedelta(days=1))
    assert [run_id for run_id, _ in rows] == [new.id]
    assert rows[0][1] == new.created_at and rows[0][1].utcoffset() == timedelta(0)


def test_read_refuses_a_naive_datetime(engine: sa.Engine) -> None:
    with read_session(engine) as session, pytest.raises(ValueError, match="naive"):
        _runs_since(session, datetime(2026, 1, 1))


def test_read_sees_the_sessions_own_uncommitted_writes(engine: sa.Engine) -> None:
    with write_session(engine) as session:
        run = make_run(session)
        event_id = append_event(session=session, run_id=run.id, message="not committed yet")
        assert [line.id for line in list_events(session=session)] == [event_id]


def test_driver_errors_are_raised_as_sqlalchemy_errors(engine: sa.Engine) -> None:
    missing = sa.select(sa.literal_column("1")).select_from(sa.table("no_such_table"))
    with read_session(engine) as session, pytest.raises(sa.exc.DBAPIError, match="no_such_table"):
        driver.read(session, "test_missing_table", lambda: missing)


def test_listeners_hear_each_statement_until_removed(engine: sa.Engine) -> None:
    heard: list[str] = []

    def listener(sql: str, _parameters: object) -> None:
        heard.append(sql)

    driver.listen(listener)
    try:
        with read_session(engine) as session:
            list_events(session=session)
    finally:
        driver.unlisten(listener)
    with read_session(engine) as session:
        list_events(session=session)
    assert len(heard) == 1 and "FROM run_event" in heard[0]


def test_events_match_the_orm_read_for_every_filter(engine: sa.Engine) -> None:
    with write_session(engine) as session:
        runs = [make_run(session, job=job) for job in ("demo", "csv_import", "demo")]
        for i in range(30):
            run = runs[i % 3]
            level = ("DEBUG", "INFO", "WARNING", "ERROR")[i % 4]
            append_event(session=session, run_id=run.id, level=level, message=f"line {i} 50%_x")
    cases = [
        {},
        {"run_id": runs[1].id},
        {"job": "demo"},
        {"after_id": 10},
        {"min_level": "WARNING"},
        {"text": "0 50%_"},
        {"job": "demo", "after_id": 5, "min_level": "INFO", "text": "line 2"},
    ]
    jobs = {run.id: run.job for run in runs}
    with read_session(engine) as session:
        stored = list(session.exec(select(RunEvent).order_by(RunEvent.id)).all())  # type: ignore[arg-type]
        for case in cases:
            newest_first = case.get("after_id") is None  # the Logs tick, or the Download log's
            lines = list_events(session=session, limit=7, newest_first=newest_first, **case)  # type: ignore[arg-type]
            matching = [e for e in stored if matches(e, jobs[e.run_id], **case)]  # type: ignore[arg-type]
            expected = [
                (e.id, e.ts, e.run_id, e.level, e.kind, e.step, e.message, e.data)
                for e in (matching[::-1] if newest_first else matching)[:7]
            ]
            assert [tuple(line) for line in lines] == expected, case
            assert all(line.ts.tzinfo is not None for line in lines)


def matches(
    event: RunEvent,
    job_of_event: str,
    run_id: int | None = None,
    job: str | None = None,
    after_id: int | None = None,
    min_level: str | None = None,
    text: str | None = None,
) -> bool:
    """Whether `event` passes the filters, decided in Python (the reference for the SQL)."""
    levels = ("DEBUG", "INFO", "WARNING", "ERROR")
    return (
        (run_id is None or event.run_id == run_id)
        and (job is None or job_of_event == job)
        and (after_id is None or (event.id or 0) > after_id)
        and (min_level is None or levels.index(event.level) >= levels.index(min_level))
        and (text is None or text.lower() in event.message.lower())
    )


@pytest.mark.postgres_only  # a server can drop connections; SQLite has none to lose
def test_kept_read_connections_recover_when_the_server_drops_them(engine: sa.Engine) -> None:
    with write_session(engine) as session:
        run = make_run(session)
        append_event(session=session, run_id=run.id, message="before the restart")
    with read_session(engine) as session:
        assert len(list_events(session=session)) == 1  # the read keeps its connection
    with engine.connect() as connection:  # as a server restart would, end every other backend
        connection.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    with read_session(engine) as session:
        assert [line.message for line in list_events(session=session)] == ["before the restart"]


@pytest.mark.postgres_only  # SQLite has no sessions to end
def test_every_connection_has_idle_transactions_ended_by_the_server(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    show = sa.text("SHOW idle_in_transaction_session_timeout")
    with engine.connect() as connection:
        assert connection.execute(show).scalar() == "1min"  # the default, 60 s
    kept = read_connections(engine).take()  # the hot reads' connections come from the same pool
    assert kept.execute(show.text).fetchone()[0] == "1min"
    kept.close()
    for value, shown in (("2.5", "2500ms"), ("0", "0")):
        configure(monkeypatch, {"IDLE_TRANSACTION_TIMEOUT_S": value})
        other = make_engine(engine.url.render_as_string(hide_password=False))
        with other.connect() as connection:
            assert connection.execute(show).scalar() == shown
        other.dispose()


def test_disposing_the_engine_closes_kept_read_connections(engine: sa.Engine) -> None:
    with read_session(engine) as session:
        list_events(session=session)
    readers = read_connections(engine)
    kept = readers.take()
    readers.give_back(kept)
    engine.dispose()
    with pytest.raises(engine.dialect.loaded_dbapi.Error):
        kept.cursor().execute("SELECT 1")


def test_run_rows_match_the_orm_history_for_every_filter_and_sort(engine: sa.Engine) -> None:
    now = datetime.now(UTC)
    with write_session(engine) as session:
        for i in range(12):
            started = now - timedelta(hours=i, minutes=i * 7)
            make_run(
                session,
                job=("demo", "csv_import")[i % 2],
                status=("finished", "failed", "cancelled")[i % 3],
                created_at=started,
                started_at=started,
                ended_at=started + timedelta(seconds=10 + i * (-1) ** i),
                records_loaded=i * 10,
                error_message=f"boom {i} 100%" if i % 3 == 1 else None,
                counters={"rows": i},
            )
    cases = [
        (RunFilters(), RunSort()),
        (RunFilters(statuses=("failed", "cancelled")), RunSort(key="duration")),
        (RunFilters(jobs=("demo",), since=now - timedelta(hours=6)), RunSort(key="records")),
        (RunFilters(until=now - timedelta(hours=3)), RunSort(key="status", descending=False)),
        (RunFilters(error_text="0%", triggers=("manual",)), RunSort(descending=False)),
    ]
    with read_session(engine) as session:
        for filters, sort in cases:
            for page in (1, 2):
                rows = list_runs(
                    session=session, filters=filters, sort=sort, page=page, page_size=4
                )
                orm = orm_runs(session, filters, sort)
                assert rows.total == len(orm), (filters, sort)
                expected = [
                    tuple(getattr(run, name) for name in RunRow._fields)
                    for run in orm[(page - 1) * 4 : page * 4]
                ]
                assert [tuple(row) for row in rows.runs] == expected, (filters, sort, page)


def orm_runs(session: Session, filters: RunFilters, sort: RunSort) -> list[Run]:
    """The runs the filters select, in order, read through the ORM (the reference)."""
    query = select(Run).where(filter_clause(filters)).order_by(*order_clause(sort))
    return list(session.exec(query).all())


def test_streamed_run_rows_come_in_order_across_chunks(engine: sa.Engine) -> None:
    now = datetime.now(UTC)
    with write_session(engine) as session:
        for i in range(7):
            make_run(session, status="failed" if i % 2 else "finished", records_loaded=i % 3)
    sort = RunSort(key="records", descending=False)
    for filters in (RunFilters(), RunFilters(statuses=("failed",), since=now - timedelta(days=1))):
        with read_session(engine) as session:
            streamed = list(iter_runs(session=session, filters=filters, sort=sort, chunk=2))
            orm = orm_runs(session, filters, sort)
        assert [row.id for row in streamed] == [run.id for run in orm]
        assert streamed[0].created_at == orm[0].created_at


def test_concurrent_reads_each_get_a_kept_connection_of_their_own(engine: sa.Engine) -> None:
    with write_session(engine) as session:
        run = make_run(session)
        for i in range(50):
            append_event(session=session, run_id=run.id, message=f"line {i}")
    errors: list[BaseException] = []
    sizes: list[int] = []

    def read_many() -> None:
        try:
            for _ in range(40):
                with read_session(engine) as session:
                    sizes.append(len(list_events(session=session, run_id=run.id)))
        except BaseException as error:  # the assertion below reports it
            errors.append(error)

    threads = [threading.Thread(target=read_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and sizes == [50] * 320


def test_kept_read_connections_beyond_the_idle_limit_are_closed(engine: sa.Engine) -> None:
    readers = read_connections(engine)
    taken = [readers.take() for _ in range(MAX_IDLE_READERS + 2)]
    for connection in taken:
        readers.give_back(connection)
    with pytest.raises(engine.dialect.loaded_dbapi.Error):  # the two past the limit were closed
        taken[-1].cursor().execute("SELECT 1")
    kept = readers.take()
    kept.cursor().execute("SELECT 1")
    readers.give_back(kept)
