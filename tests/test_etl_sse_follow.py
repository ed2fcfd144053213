"""The sse_follow job against a raw SSE server written here and against another Runwatch API process."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import select

from db.engine import get_engine
from db.migrate import init_db
from db.models import Job, RemoteRun, Run, RunEvent, RunRecord
from db.queries import (
    create_run,
    get_job,
    get_run,
    last_event_id,
    list_events,
    read_session,
    request_cancel,
    save_job,
    write_session,
)
from db.settings import Settings
from etl.jobs import JobError, RunContext
from etl.jobs.sse_follow import RemoteRunState, SseFollowJob, parse
from etl.jobs.sse_store import mirrored_run
from etl.runner import Runner
from etl.worker import Worker
from tests.apiserver import api_process

WAIT_S = 120.0
DROP = object()  # in a script: close the connection abruptly here


def wait_for(check: Callable[[], Any], what: str) -> Any:
    """Poll `check` until it returns something truthy (generous deadline, no timing asserted)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


# ---------------------------------------------------------------- a raw SSE server


class RawFeed:
    """An SSE server on 127.0.0.1 written with sockets: connection n gets `script(n)`, then stays open.

    It records the Last-Event-ID header of every connection and ignores it (it replays from the
    start), the worst case a follower must survive without landing anything twice.
    """

    HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"

    def __init__(self, script: Callable[[int], list[Any]], head: bytes = HEAD) -> None:
        self.script, self.head = script, head
        self.last_event_ids: list[str | None] = []
        self.requests: list[dict[str, str]] = []  # each connection's headers
        self.stopped = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/feed"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            headers = dict(
                line.split(": ", 1) for line in request.decode().split("\r\n")[1:] if ": " in line
            )
            number = len(self.last_event_ids)
            self.requests.append(headers)
            self.last_event_ids.append(headers.get("Last-Event-ID"))
            conn.sendall(self.head)
            for piece in self.script(number):
                if piece is DROP:
                    conn.shutdown(socket.SHUT_RDWR)
                    return
                conn.sendall(piece)
            self.stopped.wait()

    def close(self) -> None:
        """Stop serving."""
        self.stopped.set()
        self.sock.close()


def spec_event(event_id: int, remote_id: int, status: str, offset: int, **extra: Any) -> dict:
    """A run in the original specification's shape."""
    return {
        "id": remote_id,
        "start_date": "2026-11-30T08:00:00+00:00",
        "end_date": "2026-11-30T08:01:40+00:00" if status == "finished" else None,
        "duration": 100.0 if status == "finished" else None,
        "status": status,
        "total_records": 100,
        "offset": offset,
        "created_at": "2026-11-30T07:59:59+00:00",
        **extra,
    }


def frame(event_id: int, data: dict, eol: bytes = b"\n") -> bytes:
    body = json.dumps(data).encode()
    return eol.join([b"id: %d" % event_id, b"data: " + body, b"", b""])


# What the standard allows, in one feed about remote run 7.
E1 = (  # CRLF line endings, data split over two lines
    b"id: 1\r\n"
    b'data: {"id": 7, "start_date": "2026-11-30T08:00:00Z", "end_date": null, "duration": null,\r\n'
    b'data:  "status": "running", "total_records": 100, "offset": 10,\r\n'
    b'data: "created_at": "2026-11-30T07:59:59Z"}\r\n\r\n'
)
E2 = frame(2, spec_event(2, 7, "running", 50), eol=b"\r")  # CR line endings
E3 = b"id: 3\n\n"  # an id and no data: nothing is dispatched
E4 = b"id: 4\ndata: {not json\n\n"
E5 = b'id: 5\ndata: {"id": 7, "status": "running"}\n\n'  # fields missing
E6 = frame(6, spec_event(6, 7, "running", "lots"))  # wrong type
E7 = b"id: 7\nevent: ping\ndata: hello\n\n"  # an event type nobody listens to
E8 = frame(8, spec_event(8, 7, "finished", 100, subjects_processed=100))
PREAMBLE = b": a comment the client ignores\nretry: 100\n\n"
ALL = [PREAMBLE, E1, E2, E3, E4, E5, E6, E7, E8]


def standard_script(number: int) -> list[Any]:
    """First connection: dropped in the middle of E5; later ones: the whole feed (a replay)."""
    if number == 0:
        return [PREAMBLE, E1, E2, E3, E4, E5[:20], DROP]
    return ALL


@contextmanager
def raw_feed(script: Callable[[int], list[Any]], head: bytes = RawFeed.HEAD) -> Iterator[RawFeed]:
    server = RawFeed(script, head)
    try:
        yield server
    finally:
        server.close()


# ---------------------------------------------------------------- running the follow


def start_follow(
    engine: sa.Engine, settings: Settings, **params: Any
) -> tuple[int, threading.Thread]:
    """Start a run of the `follow` job (kind sse_follow) in a thread; return its id and thread."""
    with write_session(engine) as session:
        if session.get(Job, "follow") is None:
            save_job(session=session, job=Job(name="follow", kind="sse_follow"))
        run = create_run(session=session, job="follow", params=params, status="running")
    thread = threading.Thread(target=Runner(engine, settings).execute, args=(run,), daemon=True)
    thread.start()
    assert run.id is not None
    return run.id, thread


def stop_follow(engine: sa.Engine, run_id: int, thread: threading.Thread) -> Run:
    """Cancel the follow and wait for it to end; return the stored run."""
    with write_session(engine) as session:
        request_cancel(session=session, run_id=run_id)
    thread.join(WAIT_S)
    with read_session(engine) as session:
        return get_run(session=session, run_id=run_id, fresh=True)


def stored(engine: sa.Engine, run_id: int) -> Run:
    with read_session(engine) as session:
        return get_run(session=session, run_id=run_id, fresh=True)


def mirror_of(engine: sa.Engine, job: str, source: str, remote_id: int) -> Run | None:
    with read_session(engine) as session:
        return mirrored_run(session=session, job=job, source=source, remote_id=str(remote_id))


def events_of(engine: sa.Engine, run_id: int) -> list[RunEvent]:
    with read_session(engine) as session:
        return list(list_events(session=session, run_id=run_id, limit=None))


def mirrors(engine: sa.Engine) -> list[RemoteRun]:
    with read_session(engine) as session:
        return list(session.exec(select(RemoteRun)).all())


# ---------------------------------------------------------------- against the raw server


def test_follow_mirrors_what_the_standard_allows_exactly_once(
    engine: sa.Engine, settings: Settings
) -> None:
    with raw_feed(standard_script) as feed:
        params = {"url": feed.url, "job_name": "mirror", "read_timeout_s": 0.5}
        follow_id, thread = start_follow(engine, settings, **params)
        wait_for(lambda: stored(engine, follow_id).counters.get("last_event_id") == "8", "event 8")
        assert stored(engine, follow_id).status == "running"
        follow = stop_follow(engine, follow_id, thread)
    mirror = mirror_of(engine, "mirror", feed.url, 7)
    assert mirror is not None
    assert (mirror.status, mirror.offset, mirror.total_records) == ("finished", 100, 100)
    assert mirror.trigger == "remote" and mirror.records_loaded == 100
    assert mirror.created_at.isoformat() == "2026-11-30T07:59:59+00:00"
    assert mirror.ended_at.isoformat() == "2026-11-30T08:01:40+00:00"
    assert mirror.counters == {"subjects_processed": 100}
    states = [(e.kind, e.data["status"], e.data["offset"]) for e in events_of(engine, mirror.id)]
    assert states == [
        ("status", "running", 10),
        ("progress", "running", 50),
        ("status", "finished", 100),
    ]
    assert feed.last_event_ids[:2] == [
        None,
        "4",
    ]  # after the drop, resumed after the last whole event
    assert follow.status == "cancelled"
    assert follow.records_rejected == 3
    counts = {k: follow.counters.get(k) for k in ("malformed", "ignored", "mirrored")}
    assert counts == {"malformed": 3, "ignored": 1, "mirrored": 3}
    warnings = [e.message for e in events_of(engine, follow_id) if e.level == "WARNING"]
    assert sum("malformed remote event" in w for w in warnings) == 3
    assert any("connection lost" in w for w in warnings)
    with read_session(engine) as session:
        assert get_job(session=session, name="mirror").kind == "remote"


def test_a_restarted_follow_lands_nothing_twice(engine: sa.Engine, settings: Settings) -> None:
    with raw_feed(lambda number: ALL) as feed:
        params = {"url": feed.url, "job_name": "mirror", "read_timeout_s": 0.5}
        first, thread = start_follow(engine, settings, **params)
        wait_for(lambda: stored(engine, first).counters.get("last_event_id") == "8", "event 8")
        stop_follow(engine, first, thread)
        mirror = mirror_of(engine, "mirror", feed.url, 7)
        assert mirror is not None
        before = [e.id for e in events_of(engine, mirror.id)]
        second, thread = start_follow(engine, settings, **params)
        wait_for(lambda: stored(engine, second).counters.get("duplicates", 0) >= 7, "a replay")
        follow = stop_follow(engine, second, thread)
    assert feed.last_event_ids[-1] == "8"  # the new run starts from the stored checkpoint
    assert [e.id for e in events_of(engine, mirror.id)] == before
    assert len(mirrors(engine)) == 1
    assert follow.status == "cancelled" and follow.counters.get("mirrored") is None


def test_a_second_active_remote_run_supersedes_the_first_until_its_end_arrives(
    engine: sa.Engine, settings: Settings
) -> None:
    script = [
        frame(1, spec_event(1, 1, "running", 10)),
        frame(2, spec_event(2, 2, "running", 5)),
        frame(3, spec_event(3, 1, "finished", 100)),
        frame(4, spec_event(4, 2, "finished", 100)),
    ]
    with raw_feed(lambda number: script) as feed:
        params = {"url": feed.url, "job_name": "mirror", "read_timeout_s": 0.5}
        follow_id, thread = start_follow(engine, settings, **params)
        wait_for(lambda: stored(engine, follow_id).counters.get("last_event_id") == "4", "event 4")
        stop_follow(engine, follow_id, thread)
    first, second = (mirror_of(engine, "mirror", feed.url, n) for n in (1, 2))
    assert first is not None and second is not None
    assert (first.status, second.status) == ("finished", "finished")
    history = [(e.data["status"], e.data["error_type"]) for e in events_of(engine, first.id)]
    assert history == [("running", None), ("failed", "superseded"), ("finished", None)]


def test_a_mirror_job_of_another_kind_fails_the_follow_with_a_clear_message(
    engine: sa.Engine, settings: Settings
) -> None:
    with raw_feed(lambda number: ALL) as feed:
        follow_id, thread = start_follow(engine, settings, url=feed.url, job_name="demo")
        thread.join(WAIT_S)
    run = stored(engine, follow_id)
    assert run.status == "failed" and run.error_type == "JobError"
    assert "Job 'demo' is a demo job" in run.error_message


def test_header_values_read_environment_references_at_connect_time(
    engine: sa.Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNWATCH_TEST_FEED_TOKEN", "s3cret")
    headers = {"Authorization": "Bearer ${RUNWATCH_TEST_FEED_TOKEN}", "X-Team": "data"}
    with raw_feed(lambda number: ALL) as feed:
        params = {"url": feed.url, "job_name": "mirror", "headers": headers}
        follow_id, thread = start_follow(engine, settings, **params)
        wait_for(lambda: feed.requests, "a connection")
        follow = stop_follow(engine, follow_id, thread)
    assert feed.requests[0]["Authorization"] == "Bearer s3cret"
    assert feed.requests[0]["X-Team"] == "data"
    assert follow.params["headers"] == headers  # the run records the reference, not the secret
    assert "s3cret" not in json.dumps([e.data for e in events_of(engine, follow_id)])


def test_a_header_referring_to_a_missing_variable_fails_the_follow_by_name(
    engine: sa.Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RUNWATCH_TEST_NO_SUCH", raising=False)
    with raw_feed(lambda number: ALL) as feed:
        headers = {"Authorization": "Bearer ${RUNWATCH_TEST_NO_SUCH}"}
        follow_id, thread = start_follow(
            engine, settings, url=feed.url, job_name="mirror", headers=headers
        )
        thread.join(WAIT_S)
    run = stored(engine, follow_id)
    assert run.status == "failed" and run.error_type == "JobError"
    assert "no environment variable RUNWATCH_TEST_NO_SUCH is set" in run.error_message
    assert not feed.requests


@pytest.mark.parametrize(
    ("head", "message"),
    [
        (b"HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n", "answered 404"),
        (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n", "text/html"),
    ],
)
def test_a_url_that_is_not_a_feed_fails_the_follow_with_a_clear_message(
    engine: sa.Engine, settings: Settings, head: bytes, message: str
) -> None:
    with raw_feed(lambda number: [], head=head) as feed:
        follow_id, thread = start_follow(engine, settings, url=feed.url, job_name="mirror")
        thread.join(WAIT_S)
    run = stored(engine, follow_id)
    assert run.status == "failed" and message in run.error_message


def test_an_unreachable_feed_is_retried_with_backoff_until_cancelled(
    engine: sa.Engine, settings: Settings
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/feed"
    follow_id, thread = start_follow(engine, settings, url=url, job_name="mirror")
    warnings = lambda: [e for e in events_of(engine, follow_id) if e.level == "WARNING"]  # noqa: E731
    wait_for(lambda: len(warnings()) >= 2, "two failed attempts")
    follow = stop_follow(engine, follow_id, thread)
    assert follow.status == "cancelled"
    assert "reconnecting in 1.0 s" in warnings()[0].message
    assert "reconnecting in 2.0 s" in warnings()[1].message


def test_a_retry_hint_sets_the_reconnection_delay(engine: sa.Engine, settings: Settings) -> None:
    hinted = b"retry: 300\n" + frame(1, spec_event(1, 7, "running", 10))
    with raw_feed(lambda number: [hinted, DROP] if number == 0 else [hinted]) as feed:
        params = {"url": feed.url, "job_name": "mirror", "read_timeout_s": 0.5}
        follow_id, thread = start_follow(engine, settings, **params)
        wait_for(lambda: len(feed.last_event_ids) >= 2, "a reconnection")
        stop_follow(engine, follow_id, thread)
    warnings = [e.message for e in events_of(engine, follow_id) if e.level == "WARNING"]
    assert "reconnecting in 0.3 s" in warnings[0]
    assert feed.last_event_ids[1] == "1"


# ---------------------------------------------------------------- against another Runwatch API


def _remote_demo(remote: sa.Engine, settings: Settings) -> int:
    """Run a demo job to its end on the remote database, as the remote's worker would."""
    with write_session(remote) as session:
        run = create_run(session=session, job="demo", params={"total": 400, "batch_size": 40})
    Worker(remote, settings).run_once()
    assert run.id is not None
    return run.id


def test_follow_mirrors_another_runwatch_api_process(
    engine: sa.Engine, settings: Settings, tmp_path
) -> None:
    remote_url = f"sqlite:///{tmp_path / 'remote.db'}"
    remote = get_engine(remote_url)
    init_db(remote)
    with read_session(remote) as session:
        start = last_event_id(session=session)
    with api_process(remote_url) as api:
        url = f"{api.url}/api/etl/logs/realtime?job=demo&last_event_id={start}"
        params = {"url": url, "job_name": "prod_demo", "read_timeout_s": 2}
        follow_id, thread = start_follow(engine, settings, **params)
        first = _remote_demo(remote, settings)
        wait_for(lambda: _finished(mirror_of(engine, "prod_demo", url, first)), "the mirror's end")
        stop_follow(engine, follow_id, thread)
        restarted, thread = start_follow(engine, settings, **params)
        second = _remote_demo(remote, settings)
        wait_for(lambda: _finished(mirror_of(engine, "prod_demo", url, second)), "second mirror")
        stop_follow(engine, restarted, thread)
    for remote_id in (first, second):
        mirror = mirror_of(engine, "prod_demo", url, remote_id)
        assert mirror is not None
        _assert_same_run(stored(remote, remote_id), mirror)
        assert _log_lines(engine, mirror.id) == _log_lines(remote, remote_id)
        statuses = [e.data["status"] for e in events_of(engine, mirror.id) if e.kind == "status"]
        assert statuses == ["running", "finished"]
    assert len(mirrors(engine)) == 2


def _finished(run: Run | None) -> bool:
    return run is not None and run.status == "finished"


def _assert_same_run(remote: Run, mirror: Run) -> None:
    ignore = {"id", "job", "trigger", "triggered_by", "resumed_from", "current_step"}
    theirs = RunRecord.from_run(remote).model_dump(exclude=ignore)
    ours = RunRecord.from_run(mirror).model_dump(exclude=ignore)
    assert ours == theirs


def _log_lines(engine: sa.Engine, run_id: int) -> list[tuple[str, str, str | None, str]]:
    return [
        (e.level, e.message, e.step, e.ts.isoformat())
        for e in events_of(engine, run_id)
        if e.kind == "log"
    ]


# ---------------------------------------------------------------- parsing and parameters


def test_parse_accepts_the_specification_and_runwatch_shapes() -> None:
    spec = parse("1", "message", json.dumps(spec_event(1, 3, "running", 5)))
    assert isinstance(spec.item, RemoteRunState) and spec.item.offset == 5
    log = {"run_id": 3, "ts": "2026-11-30T08:00:00Z", "level": "INFO", "message": "m", "data": {}}
    assert parse("2", "log", json.dumps(log)).item is not None
    assert (
        parse("3", "heartbeat", "{}").item is None and parse("3", "heartbeat", "{}").problem is None
    )


@pytest.mark.parametrize(
    ("name", "data", "problem"),
    [
        ("message", "{not json", "json"),
        ("message", json.dumps({"id": 1, "status": "running"}), "start_date"),
        ("run", json.dumps(spec_event(1, 1, "running", "ten")), "offset"),
        ("run", json.dumps(spec_event(1, 1, "exploded", 1)), "status"),
        ("log", json.dumps({"run_id": 1, "ts": "x", "level": "INFO", "message": ""}), "ts"),
        ("message", "[1, 2]", "object"),
    ],
)
def test_parse_names_what_is_malformed(name: str, data: str, problem: str) -> None:
    incoming = parse("9", name, data)
    assert incoming.item is None and problem in (incoming.problem or "").lower()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"url": "ftp://x", "job_name": "m"}, "'url'"),
        ({"url": "http://127.0.0.1/feed", "job_name": "no spaces"}, "'job_name'"),
        ({"url": "http://127.0.0.1/feed", "job_name": "m", "headers": "[1]"}, "'headers'"),
        ({"url": "http://127.0.0.1/feed", "job_name": "m", "read_timeout_s": 0}, "read_timeout_s"),
        ({"url": "http://127.0.0.1/feed", "job_name": "m", "colour": "red"}, "colour"),
    ],
)
def test_bad_parameters_are_refused_by_name(params: dict[str, Any], message: str) -> None:
    with pytest.raises(JobError, match=message):
        SseFollowJob(RunContext(run_id=1, job="follow"), params)
