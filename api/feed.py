"""The live feed `GET /api/etl/logs/realtime`: run events as Server-Sent Events, fanned out in memory.

One `FeedHub` per process and database runs ONE reader thread that tails `run_event` by cursor
(`db.queries.list_events(after_id=...)`) and hands every batch to all connected clients through
bounded in-memory queues, so the number of clients never multiplies database queries. On
PostgreSQL the reader LISTENs on `runwatch_events` (the writer NOTIFYs on every event commit) with a
slow poll as a safety net; on SQLite it polls every 200 ms. The reader starts with the first client
and stops after a few idle seconds (or at `close_streams()`).

Hand-over from history to live, without gaps or duplicates: a client registers with the hub under
the hub's lock and takes the hub's cursor as its `join` id; from then on the hub queues for it every
event with an id above `join` (dispatch and cursor advance happen under the same lock). A client
that sent `Last-Event-ID: N` first reads (N, join] itself in bounded pages, then drains its queue,
skipping any id it has already sent. Event ids commit in id order on both databases (SQLite writes
are serialised; PostgreSQL inserts take an advisory lock), so a cursor never skips a late commit.
A client whose queue overflows is dropped with a log line; it reconnects with `Last-Event-ID`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from api.auth import AUTH_ERRORS, feed_caller_of
from api.models import ErrorBody
from api.params import known_jobs
from db.engine import get_engine
from db.models import JOB_NAME_MAX, LEVELS, MAX_ID, EventKind
from db.queries import EVENT_CHANNEL, EventRow, last_event_id, list_events, read_session, run_jobs

if TYPE_CHECKING:  # the driver is loaded by a PostgreSQL server's feed only
    import psycopg

log = logging.getLogger(__name__)

KEEPALIVE_S = 15.0  # seconds between keep-alive comments on a quiet stream
RETRY_MS = 2000  # reconnection delay suggested to clients
SQLITE_POLL_S = 0.2  # SQLite has no notifications: the reader polls
PG_POLL_S = 2.0  # PostgreSQL: safety-net poll between notifications
READER_IDLE_S = 5.0  # the reader stops after this long without clients
QUEUE_LIMIT = 10_000  # events queued for one client before it is dropped as too slow
PAGE = 500  # events per database read (reader and catch-up)

# the token may come as ?access_token=, since browsers' EventSource cannot send a header
router = APIRouter(
    tags=["live feed"], dependencies=[Depends(feed_caller_of)], responses=AUTH_ERRORS
)


# ---------------------------------------------------------------- events and filters


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """One run event, rendered once as an SSE frame and shared by every client."""

    id: int
    run_id: int
    job: str
    kind: str  # "run" (a run's state) or "log" (a log line)
    level: str
    frame: str


def feed_event(event: EventRow, job: str) -> FeedEvent:
    """The SSE frame of a run event: `run` with the run record, or `log` with the line."""
    assert event.id is not None
    if event.kind == EventKind.LOG:
        name, payload = "log", _log_payload(event)
    else:
        name, payload = "run", dict(event.data or {})
    data = json.dumps(payload, separators=(",", ":"), default=str)
    frame = f"id: {event.id}\nevent: {name}\ndata: {data}\n\n"
    return FeedEvent(event.id, event.run_id, job, name, event.level, frame)


def _log_payload(event: EventRow) -> dict[str, Any]:
    return {
        "run_id": event.run_id,
        "ts": event.ts.isoformat(),
        "level": event.level,
        "step": event.step,
        "message": event.message,
        "data": event.data or {},
    }


@dataclass(frozen=True)
class FeedFilter:
    """What one client asked for: channels (OR-ed; none means all) and a least level for log lines."""

    jobs: frozenset[str] = frozenset()
    runs: frozenset[int] = frozenset()
    min_level: str | None = None

    def matches(self, event: FeedEvent) -> bool:
        """Whether the client wants `event`; run states pass any level filter."""
        if (
            (self.jobs or self.runs)
            and event.job not in self.jobs
            and event.run_id not in self.runs
        ):
            return False
        if self.min_level and event.kind == "log":
            return LEVELS.index(event.level) >= LEVELS.index(self.min_level)
        return True

    def narrowing(self) -> dict[str, Any]:
        """`list_events` arguments that fetch a superset of the matches, for a single channel."""
        if len(self.jobs) + len(self.runs) != 1:
            return {}
        return {"job": next(iter(self.jobs))} if self.jobs else {"run_id": next(iter(self.runs))}


def _bad(name: str, message: str, where: str = "query") -> RequestValidationError:
    return RequestValidationError([{"loc": (where, name), "msg": message, "type": "value_error"}])


def _event_id(text: str) -> int | None:
    """`text` as an event id (ASCII digits, one the database can hold), else None."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_ID:
        return None
    return int(text)


def _job_name(text: str) -> bool:
    return 0 < len(text) <= JOB_NAME_MAX and text.isprintable()


def parse_filter(
    job: str | None, run: int | None, min_level: str | None, channels: str | None
) -> FeedFilter:
    """The filter of the query parameters; a RequestValidationError (422) names a bad one."""
    if job and not _job_name(job):
        raise _bad("job", "must be a job name (1 to 100 printable characters)")
    jobs = {job} if job else set()
    runs = {run} if run is not None else set()
    for channel in (part.strip() for part in (channels or "").split(",")):
        if not channel:
            continue
        kind, _, value = channel.partition(":")
        if kind == "job" and _job_name(value):
            jobs.add(value)
        elif kind == "run" and (run_id := _event_id(value)):
            runs.add(run_id)
        else:
            raise _bad("channels", f"'{channel}' is not a channel: use job:<name> or run:<id>")
    level = min_level.upper() if min_level else None
    if level is not None and level not in LEVELS:
        raise _bad("min_level", f"must be one of {', '.join(LEVELS)}")
    return FeedFilter(frozenset(jobs), frozenset(runs), level)


def parse_last_event_id(header: str | None, query: int | None) -> int | None:
    """The id to resume after: the Last-Event-ID header (newer, sent on reconnect) or the query."""
    if header is None or not header.strip():
        return query
    since = _event_id(header)
    if since is None:
        raise _bad("Last-Event-ID", "must be a whole number (an event id)", where="header")
    return since


# ---------------------------------------------------------------- one client


class StreamClosed(Exception):
    """The hub closed this client's stream (queue overflow or shutdown)."""


@dataclass(eq=False)
class Subscriber:
    """One connected client: its filter, the id it joined the live stream at, and its queue."""

    hub: FeedHub
    loop: asyncio.AbstractEventLoop
    filter: FeedFilter
    join: int = 0
    pending: deque[list[FeedEvent]] = field(default_factory=deque)
    size: int = 0
    closed: str | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, batch: list[FeedEvent]) -> None:
        """Queue a batch (runs on the client's event loop); close the stream if it overflows."""
        if self.closed:
            return
        if self.size + len(batch) > QUEUE_LIMIT:
            log.warning(
                "live feed: dropping a client %d events behind; it may reconnect", self.size
            )
            self.close("overflow")
            self.hub.drop(self)
            return
        self.pending.append(batch)
        self.size += len(batch)
        self.wake.set()

    def close(self, reason: str) -> None:
        """End the stream at the client's next read."""
        self.closed = reason
        self.pending.clear()
        self.wake.set()

    async def next_batch(self, timeout: float) -> list[FeedEvent] | None:
        """The next queued batch, or None after `timeout` seconds without one."""
        if not self.pending and not self.closed:
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), timeout)
            except TimeoutError:
                return None
        if self.closed:
            raise StreamClosed(self.closed)
        batch = self.pending.popleft()
        self.size -= len(batch)
        return batch


# ---------------------------------------------------------------- the per-process reader


class FeedHub:
    """The one reader of a database in this process, and the clients it fans out to."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.lock = threading.Lock()
        self.subscribers: set[Subscriber] = set()
        self.cursor = 0  # id of the newest event handed to the clients
        self.thread: threading.Thread | None = None
        self.stopping = threading.Event()
        self.jobs: dict[int, str] = {}  # run id -> job, for channel filters
        self.reader_queries = 0  # database queries of the reader (independent of client count)
        self.catchup_queries = 0  # queries of clients catching up from Last-Event-ID
        self.dropped = 0
        self.failing = False  # the last poll failed (the database is unreachable)

    # ------------------------------------------------ clients

    def register(self, subscriber: Subscriber) -> None:
        """Add a client, starting the reader if needed; its `join` is the cursor it goes live at."""
        with self.lock:
            if self.thread is None:
                self.cursor = self._newest_id()
                self.stopping = threading.Event()  # each reader has its own, see close()
                self.thread = threading.Thread(
                    target=self._run,
                    args=(self.stopping,),
                    name="runwatch-feed-reader",
                    daemon=True,
                )
                self.thread.start()
            subscriber.join = self.cursor
            self.subscribers.add(subscriber)

    def unregister(self, subscriber: Subscriber) -> None:
        """Forget a client (its stream ended)."""
        with self.lock:
            self.subscribers.discard(subscriber)

    def drop(self, subscriber: Subscriber) -> None:
        """Forget a client that fell too far behind."""
        with self.lock:
            self.subscribers.discard(subscriber)
            self.dropped += 1

    def catch_up(self, after: int, upto: int, wanted: FeedFilter) -> tuple[list[FeedEvent], int]:
        """One page of a client's history in (after, upto]: its matches and the id read up to."""
        with read_session(self.engine) as session:
            rows = list_events(
                session=session,
                after_id=after,
                before_id=upto + 1,
                limit=PAGE,
                **wanted.narrowing(),
            )
            self.catchup_queries += 1
            events = self._render(session, rows)
        reached = (rows[-1].id or upto) if len(rows) == PAGE else upto
        return [event for event in events if wanted.matches(event)], reached

    def stats(self) -> dict[str, Any]:
        """Counters for tests, benchmarks and operators."""
        return {
            "reader_running": self.thread is not None,
            "subscribers": len(self.subscribers),
            "cursor": self.cursor,
            "reader_queries": self.reader_queries,
            "catchup_queries": self.catchup_queries,
            "dropped": self.dropped,
        }

    def close(self, wait: bool = True) -> None:
        """End every client's stream and stop the reader (waiting for it unless `wait` is false)."""
        with self.lock:
            subscribers, self.subscribers = list(self.subscribers), set()
            thread, self.thread = self.thread, None  # a later client starts a new reader
            self.stopping.set()
        for subscriber in subscribers:
            _call_in_loop(subscriber, subscriber.close, "shutdown")
        if wait and thread is not None:
            thread.join(PG_POLL_S + 5)

    # ------------------------------------------------ the reader thread

    def _run(self, stop: threading.Event) -> None:
        listener = self._listen()
        idle_since: float | None = None
        try:
            while not stop.is_set():
                self._poll_safely()
                with self.lock:
                    # a server stopped without ending its streams leaves clients on a closed loop
                    self.subscribers = {s for s in self.subscribers if not s.loop.is_closed()}
                    if self.subscribers:
                        idle_since = None
                    elif idle_since is None:
                        idle_since = time.monotonic()
                    elif time.monotonic() - idle_since > READER_IDLE_S:
                        # cleared under the lock that register() checks, so no client is stranded
                        if self.thread is threading.current_thread():
                            self.thread = None
                        return
                listener = self._wait(listener, stop)
        finally:
            with self.lock:
                if self.thread is threading.current_thread():
                    self.thread = None
            if listener is not None:
                listener.close()

    def _poll_safely(self) -> None:
        try:
            self._poll()
        except sa.exc.SQLAlchemyError as error:
            if not self.failing:  # once per outage, not every poll
                log.warning("live feed: reading events failed, retrying: %s", error)
            self.failing = True
        else:
            self.failing = False

    def _poll(self) -> None:
        """Read every event after the cursor, page by page, and hand it to the clients."""
        while True:
            with read_session(self.engine) as session:
                rows = list_events(session=session, after_id=self.cursor, limit=PAGE)
                self.reader_queries += 1
                events = self._render(session, rows, count=True)
            if not events:
                return
            self._dispatch(events)
            if len(rows) < PAGE:
                return

    def _dispatch(self, events: list[FeedEvent]) -> None:
        with self.lock:
            if self.thread is not threading.current_thread():
                return  # closed meanwhile: this reader no longer owns the cursor
            for subscriber in list(self.subscribers):
                matching = [event for event in events if subscriber.filter.matches(event)]
                if matching and not _call_in_loop(subscriber, subscriber.offer, matching):
                    self.subscribers.discard(subscriber)  # its server's event loop is gone
            self.cursor = events[-1].id

    def _render(
        self, session: Session, rows: Sequence[EventRow], count: bool = False
    ) -> list[FeedEvent]:
        unknown = {row.run_id for row in rows} - self.jobs.keys()
        if unknown:
            self.jobs.update(run_jobs(session=session, run_ids=unknown))
            if count:
                self.reader_queries += 1
        return [feed_event(row, self.jobs.get(row.run_id, "")) for row in rows]

    def _newest_id(self) -> int:
        with read_session(self.engine) as session:
            self.reader_queries += 1
            return last_event_id(session=session)

    # ------------------------------------------------ waiting: LISTEN on PostgreSQL, sleep on SQLite

    def _listen(self) -> psycopg.Connection[Any] | None:
        if self.engine.dialect.name != "postgresql":
            return None
        import psycopg  # here: a SQLite server has no use for the driver (~10 MB)

        url = self.engine.url.set(drivername="postgresql")
        try:
            conn = psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)
            conn.execute(f"LISTEN {EVENT_CHANNEL}")
            return conn
        except psycopg.Error as error:
            if not self.failing:
                log.warning("live feed: cannot LISTEN, polling instead: %s", error)
            return None

    def _wait(
        self, listener: psycopg.Connection[Any] | None, stop: threading.Event
    ) -> psycopg.Connection[Any] | None:
        """Wait for news: a notification of an unseen id, the safety-net poll, or a stop."""
        if listener is None:
            postgres = self.engine.dialect.name == "postgresql"
            if stop.wait(PG_POLL_S if postgres else SQLITE_POLL_S) or not postgres:
                return None
            return self._listen()  # the LISTEN connection was lost: try again
        import psycopg  # loaded by _listen, which made the listener

        deadline = time.monotonic() + PG_POLL_S
        try:
            while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
                for notify in listener.notifies(timeout=min(left, 0.5), stop_after=1):
                    if _payload_id(notify.payload) > self.cursor:
                        return listener
        except psycopg.Error as error:
            log.warning("live feed: lost the LISTEN connection: %s", error)
            listener.close()
            return None
        return listener


def _payload_id(payload: str) -> int:
    return int(payload) if payload.isdigit() else 1 << 62  # unknown payload: poll to be safe


def _call_in_loop(subscriber: Subscriber, function: Any, *args: Any) -> bool:
    """Run `function(*args)` on the subscriber's event loop; False when that loop is gone."""
    try:
        subscriber.loop.call_soon_threadsafe(function, *args)
        return True
    except RuntimeError:
        return False


_hubs: dict[str, FeedHub] = {}
_hubs_lock = threading.Lock()


def get_hub(engine: sa.Engine) -> FeedHub:
    """The feed hub of `engine`'s database in this process."""
    key = engine.url.render_as_string(hide_password=False)
    with _hubs_lock:
        hub = _hubs.get(key)
        if hub is None or hub.engine is not engine:
            hub = _hubs[key] = FeedHub(engine)
        return hub


def open_streams() -> int:
    """How many live-feed clients this process serves now, over every database's hub."""
    with _hubs_lock:
        hubs = list(_hubs.values())
    return sum(len(hub.subscribers) for hub in hubs)


def close_streams(wait: bool = True) -> None:
    """End every live stream and stop the readers.

    Call it when the server starts shutting down: uvicorn waits for open responses to finish
    before it stops, and a live stream never finishes by itself. From the event loop (a signal
    handler), pass `wait=False` so the loop is not blocked while the readers stop.
    """
    with _hubs_lock:
        hubs = list(_hubs.values())
    for hub in hubs:
        hub.close(wait)


# ---------------------------------------------------------------- the endpoint


class FeedResponse(StreamingResponse):
    """A streaming response that always unregisters its client, however the stream ends."""

    def __init__(self, content: AsyncIterator[str], hub: FeedHub, subscriber: Subscriber) -> None:
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self.hub, self.subscriber = hub, subscriber

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.hub.unregister(self.subscriber)


async def stream(hub: FeedHub, subscriber: Subscriber, since: int | None) -> AsyncIterator[str]:
    """The client's SSE text: the retry hint, its history after `since`, then the live events."""
    yield f"retry: {RETRY_MS}\n: connected\n\n"
    join = subscriber.join
    after = since if since is not None else join
    while after < join:
        events, after = await run_in_threadpool(hub.catch_up, after, join, subscriber.filter)
        if events:
            yield "".join(event.frame for event in events)
    last = max(since or 0, join)
    while True:
        try:
            batch = await subscriber.next_batch(KEEPALIVE_S)
        except StreamClosed:
            return
        if batch is None:
            yield ": keep-alive\n\n"
            continue
        fresh = [event for event in batch if event.id > last]
        if fresh:
            last = fresh[-1].id
            yield "".join(event.frame for event in fresh)


def _engine(request: Request) -> sa.Engine:
    engine = getattr(request.app.state, "engine", None)
    return engine if isinstance(engine, sa.Engine) else get_engine()


@router.get(
    "/api/etl/logs/realtime",
    response_class=StreamingResponse,
    summary="Live feed of run states and log lines (Server-Sent Events)",
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "An endless stream."},
        404: {"model": ErrorBody, "description": "No such job."},
    },
)
async def realtime(
    request: Request,
    job: Annotated[str | None, Query(description="Only this job's events.")] = None,
    run: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="Only this run's events.")
    ] = None,
    min_level: Annotated[
        str | None, Query(description="Least level of log lines: DEBUG, INFO, WARNING, ERROR.")
    ] = None,
    channels: Annotated[
        str | None, Query(description="Comma-separated job:<name> and run:<id>, OR-ed.")
    ] = None,
    last_event_id: Annotated[
        int | None,
        Query(
            ge=0, le=MAX_ID, description="Resume after this event id (for clients without headers)."
        ),
    ] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> FeedResponse:
    """Every run state change (`event: run`) and log line (`event: log`); `id:` is the event id."""
    wanted = parse_filter(job, run, min_level, channels)
    since = parse_last_event_id(last_event_id_header, last_event_id)
    await run_in_threadpool(known_jobs, _engine(request), wanted.jobs)
    hub = get_hub(_engine(request))
    subscriber = Subscriber(hub=hub, loop=asyncio.get_running_loop(), filter=wanted)
    await run_in_threadpool(hub.register, subscriber)
    return FeedResponse(stream(hub, subscriber, since), hub, subscriber)


@router.get("/api/etl/logs/realtime/stats", summary="Counters of this process's live feed reader")
def realtime_stats(request: Request) -> dict[str, Any]:
    """Reader and catch-up query counts, clients connected, and the reader's cursor."""
    return get_hub(_engine(request)).stats()
