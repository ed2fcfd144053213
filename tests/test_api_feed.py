"""The live SSE feed through a real uvicorn server, read with sseclient-py, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from sseclient import Event, SSEClient

import api.feed
from db.models import Job
from db.queries import (
    append_event,
    create_run,
    last_event_id,
    list_events,
    read_session,
    save_job,
    write_session,
)
from db.settings import Settings
from etl.worker import Worker
from tests.factories import make_run

FEED = "/api/etl/logs/realtime"
WAIT_S = 120.0  # generous: the machine is shared and slow


class FeedClient:
    """One sseclient-py subscription; `events()` yields parsed SSE events."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.response = requests.get(
            url,
            stream=True,
            headers={"Accept": "text/event-stream", **(headers or {})},
            timeout=(10, WAIT_S),
        )
        assert self.response.status_code == 200, self.response.text
        self.client = SSEClient(self.response.iter_content(chunk_size=None))

    def events(self) -> Iterator[Event]:
        """The events as they arrive (a read timeout ends a stuck test)."""
        return self.client.events()

    def take(self, count: int) -> list[Event]:
        """The next `count` events."""
        taken: list[Event] = []
        for event in self.events():
            taken.append(event)
            if len(taken) == count:
                break
        return taken

    def until(self, done: Callable[[Event], bool]) -> list[Event]:
        """Events up to and including the first for which `done` is true."""
        taken: list[Event] = []
        for event in self.events():
            taken.append(event)
            if done(event):
                break
        return taken

    def close(self) -> None:
        """Drop the connection."""
        self.response.close()


def finished(event: Event) -> bool:
    return event.event == "run" and json.loads(event.data)["status"] in ("finished", "failed")


def start_demo(engine: sa.Engine, **params: object) -> int:
    """Enqueue a demo run (pending) and return its id."""
    with write_session(engine) as session:
        run = create_run(session=session, job="demo", params=params, trigger="api")
        assert run.id is not None
        return run.id


def work_in_background(engine: sa.Engine, settings: Settings) -> threading.Thread:
    """Execute the next pending run in a thread, as the app's worker would."""
    thread = threading.Thread(target=Worker(engine, settings).run_once, daemon=True)
    thread.start()
    return thread


def newest_id(engine: sa.Engine) -> int:
    with read_session(engine) as session:
        return last_event_id(session=session)


def stats(api_url: str) -> dict[str, Any]:
    return dict(requests.get(f"{api_url}{FEED}/stats", timeout=30).json())


def test_subscriber_receives_a_demo_runs_states_with_rising_offset(
    api_url: str, engine: sa.Engine, settings: Settings
) -> None:
    client = FeedClient(f"{api_url}{FEED}?job=demo")
    run_id = start_demo(engine, total=600, batch_size=50, delay_ms=20)
    worker = work_in_background(engine, settings)
    events = client.until(finished)
    client.close()
    worker.join(WAIT_S)
    runs = [json.loads(e.data) for e in events if e.event == "run"]
    assert {record["id"] for record in runs} == {run_id}
    assert [r["status"] for r in runs][0] == "pending"
    assert runs[-1]["status"] == "finished" and runs[-1]["offset"] == 600
    offsets = [r["offset"] for r in runs]
    assert offsets == sorted(offsets) and len(set(offsets)) > 2
    ids = [int(e.id) for e in events]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    logs = [json.loads(e.data) for e in events if e.event == "log"]
    assert logs and set(logs[0]) == {"run_id", "ts", "level", "step", "message", "data"}


def test_reconnect_with_last_event_id_gets_every_id_once_in_order(
    api_url: str, engine: sa.Engine, settings: Settings
) -> None:
    start = newest_id(engine)
    start_demo(engine, total=3000, batch_size=25, delay_ms=5)
    worker = work_in_background(engine, settings)
    first = FeedClient(f"{api_url}{FEED}?last_event_id={start}")
    received = first.take(15)
    first.close()  # dropped midway; the run goes on meanwhile
    second = FeedClient(f"{api_url}{FEED}", headers={"Last-Event-ID": received[-1].id})
    received += second.until(finished)
    second.close()
    worker.join(WAIT_S)
    with read_session(engine) as session:
        stored = [e.id for e in list_events(session=session, after_id=start, limit=None)]
    assert [int(e.id) for e in received] == stored


def test_last_event_id_query_parameter_replays_history(api_url: str, engine: sa.Engine) -> None:
    with write_session(engine) as session:
        run = make_run(session)
        ids = [append_event(session=session, run_id=run.id, message=f"line {i}") for i in range(5)]
    client = FeedClient(f"{api_url}{FEED}?last_event_id={ids[1]}")
    events = client.take(3)
    client.close()
    assert [int(e.id) for e in events] == ids[2:]
    assert [json.loads(e.data)["message"] for e in events] == ["line 2", "line 3", "line 4"]


def _seed_two_jobs(engine: sa.Engine) -> dict[str, int]:
    """A finished run of `demo` and of `other`, each with an INFO and a WARNING log line."""
    with write_session(engine) as session:
        save_job(session=session, job=Job(name="other", kind="demo"))
        runs = {"demo": make_run(session), "other": make_run(session, job="other")}
        for name, run in runs.items():
            append_event(session=session, run_id=run.id, message=f"{name} info")
            append_event(session=session, run_id=run.id, message=f"{name} warn", level="WARNING")
        return {name: run.id for name, run in runs.items()}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("channels=job:other", ["other info", "other warn"]),
        ("job=demo", ["demo info", "demo warn"]),
        ("channels=job:other,run:{demo}", ["demo info", "demo warn", "other info", "other warn"]),
        ("run={other}", ["other info", "other warn"]),
        ("min_level=warning", ["demo warn", "other warn"]),
    ],
)
def test_channel_filters_deliver_only_what_they_name(
    api_url: str, engine: sa.Engine, query: str, expected: list[str]
) -> None:
    start = newest_id(engine)
    runs = _seed_two_jobs(engine)
    replayed = FeedClient(f"{api_url}{FEED}?last_event_id={start}&{query.format(**runs)}")
    live = FeedClient(f"{api_url}{FEED}?{query.format(**runs)}")
    _seed_two_jobs_again(engine, runs)
    history = [json.loads(e.data)["message"] for e in replayed.take(len(expected))]
    tail = [json.loads(e.data)["message"] for e in live.take(len(expected))]
    replayed.close()
    live.close()
    assert sorted(history) == expected
    assert sorted(tail) == expected


def _seed_two_jobs_again(engine: sa.Engine, runs: dict[str, int]) -> None:
    with write_session(engine) as session:
        for name, run_id in runs.items():
            append_event(session=session, run_id=run_id, message=f"{name} info")
            append_event(session=session, run_id=run_id, message=f"{name} warn", level="WARNING")


def test_run_states_pass_the_level_filter(api_url: str, engine: sa.Engine) -> None:
    client = FeedClient(f"{api_url}{FEED}?min_level=ERROR")
    run_id = start_demo(engine, total=10)
    event = client.take(1)[0]
    client.close()
    assert event.event == "run" and json.loads(event.data)["id"] == run_id


def test_stream_starts_with_a_retry_hint_and_keeps_alive(
    api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api.feed, "KEEPALIVE_S", 0.2)
    with requests.get(f"{api_url}{FEED}", stream=True, timeout=(10, WAIT_S)) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        seen = b""
        for chunk in response.iter_content(chunk_size=None):
            seen += chunk
            if b": keep-alive" in seen:
                break
    assert seen.startswith(b"retry: 2000\n")


@pytest.mark.parametrize(
    ("query", "headers", "name"),
    [
        ("channels=job:demo,host:x", {}, "channels"),
        ("min_level=LOUD", {}, "min_level"),
        ("run=abc", {}, "run"),
        ("run=99999999999999999999", {}, "run"),
        ("channels=run:%C2%B2", {}, "channels"),
        ("job=%00", {}, "job"),
        ("last_event_id=-1", {}, "last_event_id"),
        ("", {"Last-Event-ID": "abc"}, "Last-Event-ID"),
        ("", {"Last-Event-ID": "99999999999999999999"}, "Last-Event-ID"),
    ],
)
def test_bad_parameters_get_422_naming_them(
    api_url: str, query: str, headers: dict[str, str], name: str
) -> None:
    response = requests.get(f"{api_url}{FEED}?{query}", headers=headers, timeout=30)
    assert response.status_code == 422
    assert name in json.dumps(response.json())


def test_reader_queries_do_not_grow_with_clients(api_url: str, engine: sa.Engine) -> None:
    with write_session(engine) as session:
        run_id = make_run(session).id

    def window(clients: int) -> float:
        """Reader queries per second while `clients` clients each receive 40 events."""
        subscribers = [FeedClient(f"{api_url}{FEED}") for _ in range(clients)]
        before, began = stats(api_url)["reader_queries"], time.monotonic()
        with write_session(engine) as session:
            for i in range(40):
                append_event(session=session, run_id=run_id, message=f"line {i}")
        for subscriber in subscribers:
            assert len(subscriber.take(40)) == 40
            subscriber.close()
        return (stats(api_url)["reader_queries"] - before) / (time.monotonic() - began)

    one, many = window(1), window(20)
    assert many < one * 3 + 5, f"{one:.1f} queries/s with 1 client, {many:.1f} with 20"
    assert stats(api_url)["catchup_queries"] == 0


def test_a_client_too_far_behind_is_dropped_and_others_go_on(
    api_url: str, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api.feed, "QUEUE_LIMIT", 600)
    with write_session(engine) as session:
        run_id = make_run(session).id
    stalled = FeedClient(f"{api_url}{FEED}")  # never reads
    reader = FeedClient(f"{api_url}{FEED}")
    got: list[Event] = []

    def read() -> None:
        for event in reader.events():
            got.append(event)
            if len(got) == 3000:
                return

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    padding = "x" * 8000
    for chunk in range(30):
        with write_session(engine) as session:
            for i in range(100):
                append_event(session=session, run_id=run_id, message=f"{chunk}.{i} {padding}")
        # a client that reads keeps up, however busy the machine (and this process's GIL) is;
        # the stalled one falls further behind with every chunk
        deadline = time.monotonic() + WAIT_S
        while len(got) < 100 * chunk and time.monotonic() < deadline:
            time.sleep(0.01)
    thread.join(WAIT_S)
    reader.close()
    stalled.close()
    assert len(got) == 3000
    assert stats(api_url)["dropped"] == 1


def test_the_reader_stops_when_the_last_client_leaves(
    api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api.feed, "READER_IDLE_S", 0.2)
    client = FeedClient(f"{api_url}{FEED}")
    assert stats(api_url)["reader_running"] is True
    client.close()
    deadline = time.monotonic() + WAIT_S
    while stats(api_url)["reader_running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    final = stats(api_url)
    assert (final["reader_running"], final["subscribers"]) == (False, 0)


def test_close_streams_ends_every_stream_and_a_new_client_starts_over(
    api_url: str, engine: sa.Engine
) -> None:
    clients = [FeedClient(f"{api_url}{FEED}") for _ in range(3)]
    api.feed.close_streams()
    for client in clients:
        assert list(client.events()) == []  # the stream ends instead of waiting for events
        client.close()
    assert stats(api_url)["subscribers"] == 0
    after = FeedClient(f"{api_url}{FEED}")  # a new client starts a new reader
    with write_session(engine) as session:
        append_event(session=session, run_id=make_run(session).id, message="after the close")
    assert json.loads(after.take(1)[0].data)["message"] == "after the close"
    after.close()


def test_clients_of_a_stopped_server_are_forgotten(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api.feed, "READER_IDLE_S", 0.2)
    hub = api.feed.FeedHub(engine)
    loop = asyncio.new_event_loop()
    hub.register(api.feed.Subscriber(hub=hub, loop=loop, filter=api.feed.FeedFilter()))
    loop.close()  # its server stopped without ending the stream
    deadline = time.monotonic() + WAIT_S
    while hub.stats()["reader_running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert hub.stats()["subscribers"] == 0 and hub.stats()["reader_running"] is False
