"""The sse_follow job: mirror a remote ETL's Server-Sent Events feed into local runs and events.

Parameters: `url` (the feed), optional `headers` (sent with every request; `${NAME}` in a value is
read from the environment at connect time, so a token is never stored), `job_name` (the local
job the remote runs are mirrored into; created with kind `remote` when missing, refused when it
exists with another kind), `read_timeout_s` (default 5) and `backoff_max_s` (default 30).

Reading: sseclient-py over a `requests` streaming response, in the worker thread. A read timeout
hands control back to the runner (an empty batch: heartbeat and cancel check) and the follow
reconnects at once; a refused or dropped connection reconnects with exponential backoff, starting
from the server's `retry:` hint (1 s without one; sseclient-py only reports a hint that comes in a
block with data). Every reconnect sends `Last-Event-ID`. The chunk
source raises at end of stream instead of returning, so sseclient-py never dispatches an event
that a drop cut in half. The run stays `running` while following and ends `cancelled` on cancel.

Formats: Runwatch's own feed (`event: run` with a run record, `event: log` with a log line) and the
original specification's (`message` events whose data is {id, start_date, end_date, duration,
status, total_records, offset, created_at}). Other event types are ignored. A malformed event
(not JSON, missing fields, wrong types) is counted, logged as a WARNING event of the follow run and
skipped; the follow goes on.

Exactly once: each remote event is one batch, and its mirrored writes, the feed checkpoint (the last
remote event id, table `remote_feed` per job_name and url) and the follow run's counters commit in
the runner's one load transaction. The checkpoint is sent as `Last-Event-ID`, and an event whose id
is not after it (numeric ids) or equals it is skipped, so a replaying server lands nothing twice,
across reconnects and across runs of the follow (each run starts from the stored checkpoint).
Events without an id cannot be told apart: their run states are idempotent (an unchanged state
adds nothing), their log lines are appended as they come. sseclient-py does not report events that
carry an id but no data, so such ids do not move the checkpoint (they carry nothing to mirror).

Mirrored runs and the one-active-run-per-job index: table `remote_run` maps (job_name, url, remote
run id) to the local run, which holds the remote's status, times, counts and counters (trigger
`remote`). A remote run is mirrored once it leaves `pending` (a local pending run would be claimed by
a local worker); a running mirror is kept alive by the follow's heartbeat of the job's running
runs. When a remote run becomes active while another run of job_name is active (a feed that mixes
several remote jobs: follow one remote job per local job, e.g. with the feed's `job=` filter), the
other is ended failed with error_type `superseded`; its true end is applied if it arrives later.
A log line of a remote run not seen yet creates its mirror as running.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlmodel import Session

from db.models import EventKind, Run, RunStatus, Step
from db.queries import append_event, run_state_event
from db.settings import get_settings
from etl.jobs.base import Batch, Job, JobError, Param
from etl.jobs.sse_store import (
    ensure_job,
    feed_checkpoint,
    mirrored_run,
    save_feed_checkpoint,
    save_mirror,
    touch_running,
)

if TYPE_CHECKING:  # requests and sseclient are imported by a follow, not by every process with jobs
    import requests

TICK_S = 1.0  # longest wait without handing control back to the runner
MAX_SECONDS = 86_400  # a day; beyond it (or infinity) sockets and sleeps overflow
REMOTE_KIND = "remote"
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_STEPS = {str(step) for step in Step}


# ---------------------------------------------------------------- what the remote sends


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class RemoteRunState(_Strict):
    """A remote run's state: the specification's fields, plus Runwatch's record fields if present."""

    id: int
    start_date: datetime | None
    end_date: datetime | None
    duration: float | None
    status: RunStatus
    total_records: int | None = Field(ge=0)
    offset: int = Field(ge=0)
    created_at: datetime
    records_loaded: int | None = Field(default=None, ge=0)
    records_rejected: int | None = Field(default=None, ge=0)
    counters: dict[str, Any] | None = None
    categories_processed: int | None = None
    subjects_processed: int | None = None
    current_step: str | None = None
    error_type: str | None = None
    error_message: str | None = None


class RemoteLogLine(_Strict):
    """A log line of Runwatch's feed."""

    run_id: int
    ts: datetime
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"]
    step: str | None = None
    message: str
    data: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class Incoming:
    """One remote event, parsed: a run state, a log line, nothing to mirror, or why it is malformed."""

    event_id: str | None
    item: RemoteRunState | RemoteLogLine | None = None
    problem: str | None = None


class _Start:
    """The first batch: its load reads the checkpoint and checks the target job."""


class _StreamEnded(Exception):
    """The remote closed the stream (an endless stream ending is a drop)."""


class _Retryable(Exception):
    """The remote answered with a status worth retrying (408, 429, 5xx)."""


def parse(event_id: str | None, name: str, data: str) -> Incoming:
    """The mirror action of one SSE event."""
    model: type[RemoteRunState] | type[RemoteLogLine]
    if name in ("run", "message"):
        model = RemoteRunState
    elif name == "log":
        model = RemoteLogLine
    else:
        return Incoming(event_id)
    try:
        return Incoming(event_id, item=model.model_validate_json(data))
    except ValidationError as error:
        return Incoming(event_id, problem=_describe(error))


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "data"
    return f"{where}: {first['msg']}"


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def mirror_values(state: RemoteRunState, url: str) -> dict[str, Any]:
    """The local run fields of a remote run state."""
    counters = dict(state.counters or {})
    for name in ("categories_processed", "subjects_processed"):
        if getattr(state, name) is not None:
            counters[name] = getattr(state, name)
    return {
        "status": str(state.status),
        "triggered_by": url[:200],
        "params": {"remote_run_id": state.id},
        "created_at": _utc(state.created_at),
        "started_at": _utc(state.start_date),
        "ended_at": _utc(state.end_date),
        "total_records": state.total_records,
        "offset": state.offset,
        "records_loaded": state.offset if state.records_loaded is None else state.records_loaded,
        "records_rejected": state.records_rejected or 0,
        "counters": counters,
        "current_step": state.current_step if state.current_step in _STEPS else None,
        "error_type": (state.error_type or None) and state.error_type[:200],
        "error_message": state.error_message,
    }


# ---------------------------------------------------------------- reading the feed


def _chunks(response: requests.Response) -> Iterator[bytes]:
    """The body as it arrives; raises at its end, so a half-received event is never dispatched."""
    while True:
        data = response.raw.read1(65536)
        if not data:
            raise _StreamEnded("the remote closed the connection")
        yield data


def _is_timeout(error: BaseException) -> bool:
    import requests
    import urllib3

    return isinstance(error, requests.Timeout | urllib3.exceptions.ReadTimeoutError) or any(
        isinstance(arg, urllib3.exceptions.ReadTimeoutError) for arg in error.args
    )


def _drops() -> tuple[type[BaseException], ...]:
    """What ends a connection to the feed, to reconnect after."""
    import requests
    import urllib3

    return (
        requests.RequestException,
        urllib3.exceptions.HTTPError,
        _StreamEnded,
        _Retryable,
        OSError,
    )


class SseFollowJob(Job):
    """Follows a remote SSE feed until cancelled, mirroring its runs and log lines into `job_name`."""

    kind = "sse_follow"
    appends_events = True  # the mirrored runs' events
    description = "Mirror a remote ETL's Server-Sent Events feed into local runs and events."
    parameters = (
        Param("url", "URL", required=True, help="the http(s) event stream to follow"),
        Param("job_name", "job name", required=True, help="the local job runs are mirrored into"),
        Param(
            "headers", "JSON object", help="sent with every request; ${NAME} reads the environment"
        ),
        Param("read_timeout_s", "seconds", 5.0, help="reconnect after this long without data"),
        Param("backoff_max_s", "seconds", 30.0, help="longest wait between reconnects"),
    )

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        unknown = set(params) - {param.name for param in self.parameters}
        if unknown:
            raise JobError(f"Unknown sse_follow parameter(s): {', '.join(sorted(unknown))}.")
        return {
            "url": _url(params.get("url")),
            "headers": _headers(params.get("headers")),
            "job_name": _job_name(params.get("job_name")),
            "read_timeout_s": _seconds(params, "read_timeout_s", 5.0),
            "backoff_max_s": _seconds(params, "backoff_max_s", 30.0),
        }

    # ------------------------------------------------ extract: the connection loop

    def extract(self, params: dict[str, Any], offset: int) -> Iterator[Batch]:
        self.last_id: str | None = None
        self.retry_s = 1.0
        self.touched = 0.0
        yield Batch(records=[_Start()], size=0)
        failures, drops = 0, _drops()
        while True:
            try:
                for incoming in self._events(params):
                    failures = 0
                    yield incoming
            except drops as error:
                if _is_timeout(error):
                    yield Batch(
                        records=[], size=0
                    )  # quiet feed: heartbeat, cancel check, reconnect
                    continue
                failures += 1
                delay = min(self.retry_s * 2 ** (failures - 1), params["backoff_max_s"])
                self.context.log("WARNING", f"{_reason(error)}; reconnecting in {delay:.1f} s.")
                yield from _pause(delay)

    def _events(self, params: dict[str, Any]) -> Iterator[Batch]:
        from sseclient import SSEClient

        response = self._connect(params)
        try:
            for event in SSEClient(_chunks(response)).events():
                if event.retry and str(event.retry).isdigit():
                    self.retry_s = max(int(event.retry) / 1000, 0.05)
                event_id = event.id or None
                if self._is_replay(event_id):
                    yield Batch(records=[Incoming(event_id, problem=None)], size=0)
                    continue
                incoming = parse(event_id, event.event, event.data)
                rejects = [{"event_id": event_id, "reason": incoming.problem}]
                yield Batch(records=[incoming], size=1, rejects=rejects if incoming.problem else [])
        finally:
            response.close()

    def _connect(self, params: dict[str, Any]) -> requests.Response:
        import requests

        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        headers |= {name: _from_environment(value) for name, value in params["headers"].items()}
        if self.last_id:
            headers["Last-Event-ID"] = self.last_id
        # control must come back before the orphan sweep would fail the running mirrors
        timeout = min(params["read_timeout_s"], get_settings().orphan_timeout_s / 3)
        response = requests.get(
            params["url"], headers=headers, stream=True, timeout=(max(timeout, 5.0), timeout)
        )
        status = response.status_code
        if status in (408, 429) or status >= 500:
            response.close()
            raise _Retryable(f"the remote feed answered {status} {response.reason}")
        if status != 200:
            response.close()
            raise JobError(
                f"The remote feed answered {status} {response.reason}; check 'url' and 'headers'."
            )
        content_type = response.headers.get("content-type", "")
        if not content_type.startswith("text/event-stream"):
            response.close()
            raise JobError(
                f"The remote url is not an event stream (Content-Type {content_type!r})."
            )
        return response

    def _is_replay(self, event_id: str | None) -> bool:
        last = self.last_id
        if event_id is None or last is None:
            return False
        if event_id.isdigit() and last.isdigit():
            return int(event_id) <= int(last)
        return event_id == last

    # ------------------------------------------------ load: mirror in the runner's transaction

    def load(self, batch: Batch, session: Session) -> int:
        params = self.params
        record = batch.records[0] if batch.records else None
        loaded = 0
        if isinstance(record, _Start):
            self._start(session)
        elif isinstance(record, Incoming):
            loaded = self._apply(session, record) if batch.size else self._count("duplicates")
        if loaded or time.monotonic() - self.touched >= get_settings().heartbeat_s:
            self.touched = time.monotonic()
            touch_running(session=session, job=params["job_name"])  # mirrors have no runner
        return loaded

    def _start(self, session: Session) -> None:
        name, url = self.params["job_name"], self.params["url"]
        job = ensure_job(
            session=session, name=name, kind=REMOTE_KIND, title=f"Mirror of {url}"[:200]
        )
        if job.kind != REMOTE_KIND:
            raise JobError(
                f"Job '{name}' is a {job.kind} job; sse_follow mirrors only into jobs of kind "
                f"'{REMOTE_KIND}' (pick another job_name)."
            )
        self.last_id = feed_checkpoint(session=session, job=name, source=url)
        self.context.counters.setdefault("last_event_id", self.last_id)

    def _apply(self, session: Session, incoming: Incoming) -> int:
        counters = self.context.counters
        counters["events"] = counters.get("events", 0) + 1
        if incoming.event_id is not None:
            self.last_id = counters["last_event_id"] = incoming.event_id
            save_feed_checkpoint(
                session=session,
                job=self.params["job_name"],
                source=self.params["url"],
                last_event_id=incoming.event_id,
            )
        if incoming.problem:
            self._count("malformed")
            append_event(
                session=session,
                run_id=self.context.run_id,
                level="WARNING",
                message=f"Skipped malformed remote event {incoming.event_id or '(no id)'}: "
                f"{incoming.problem}",
            )
            return 0
        if isinstance(incoming.item, RemoteRunState):
            return self._mirror_state(session, incoming.item)
        if isinstance(incoming.item, RemoteLogLine):
            return self._mirror_log(session, incoming.item)
        self._count("ignored")
        return 0

    def _count(self, name: str) -> int:
        self.context.counters[name] = self.context.counters.get(name, 0) + 1
        return 0

    def _mirror_state(self, session: Session, state: RemoteRunState) -> int:
        if state.status == RunStatus.PENDING:
            return self._count("pending_skipped")
        run, before, changed = save_mirror(
            session=session,
            job=self.params["job_name"],
            source=self.params["url"],
            remote_id=str(state.id),
            values=mirror_values(state, self.params["url"]),
        )
        if not changed:
            return self._count("unchanged")
        _state_event(session, run, before, state.id)
        self._count("mirrored")
        return 1

    def _mirror_log(self, session: Session, line: RemoteLogLine) -> int:
        name, url = self.params["job_name"], self.params["url"]
        run = mirrored_run(session=session, job=name, source=url, remote_id=str(line.run_id))
        if run is None:
            ts = _utc(line.ts)
            values = {"status": RunStatus.RUNNING, "triggered_by": url[:200], "created_at": ts}
            values |= {"started_at": ts, "params": {"remote_run_id": line.run_id}}
            run, before, _ = save_mirror(
                session=session, job=name, source=url, remote_id=str(line.run_id), values=values
            )
            _state_event(session, run, before, line.run_id)
        assert run.id is not None
        append_event(
            session=session,
            run_id=run.id,
            kind=EventKind.LOG,
            level=line.level,
            step=line.step if line.step in _STEPS else None,
            message=line.message,
            data=line.data,
            ts=_utc(line.ts),
        )
        self._count("mirrored")
        return 1


def _state_event(session: Session, run: Run, before: str | None, remote_id: int) -> None:
    """Record the mirror's new state: a status event when its status changed, else progress."""
    if before == run.status:
        run_state_event(session=session, run=run, kind=EventKind.PROGRESS, message="Progress")
        return
    level = "ERROR" if run.status == RunStatus.FAILED else "INFO"
    message = f"Run {run.status} (remote run #{remote_id})"
    run_state_event(session=session, run=run, kind=EventKind.STATUS, message=message, level=level)


def _pause(seconds: float) -> Iterator[Batch]:
    """Wait `seconds`, handing control back to the runner at least every TICK_S."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, TICK_S))
        yield Batch(records=[], size=0)


def _reason(error: BaseException) -> str:
    return f"Remote feed unreachable or connection lost ({type(error).__name__}: {error})"


# ---------------------------------------------------------------- parameter checks


def _url(value: Any) -> str:
    parsed = urlparse(value) if isinstance(value, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise JobError(f"Parameter 'url' must be an http(s) URL of an event stream, not {value!r}.")
    return str(value)


def _headers(value: Any) -> dict[str, str]:
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise JobError("Parameter 'headers' must be a JSON object of strings.") from None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise JobError("Parameter 'headers' must be an object mapping header names to strings.")
    return dict(value)


_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _from_environment(value: str) -> str:
    """A header value with each ${NAME} replaced by that environment variable of this process.

    Secrets (tokens, passwords) stay out of the job's parameters, which the app, the API and
    every run's record show: the parameters hold only the reference.
    """

    def variable(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise JobError(
                f"Header refers to ${{{name}}}, but no environment variable {name} is set."
            )
        return os.environ[name]

    return _REFERENCE.sub(variable, value)


def _job_name(value: Any) -> str:
    if not isinstance(value, str) or not _SLUG.match(value):
        raise JobError(
            f"Parameter 'job_name' must name the local job to mirror into "
            f"(letters, digits, '_', '-', '.'), not {value!r}."
        )
    return value


def _seconds(params: dict[str, Any], name: str, default: float) -> float:
    value = params.get(name, default)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise JobError(f"Parameter '{name}' must be a number of seconds, not {value!r}.") from None
    if not 0 < seconds <= MAX_SECONDS:
        raise JobError(f"Parameter '{name}' must be more than 0 and at most {MAX_SECONDS:,} s.")
    return seconds


class RemoteMirrorJob(Job):
    """The kind of jobs that hold mirrored remote runs: they are written by sse_follow, never run."""

    kind = REMOTE_KIND
    description = "Runs mirrored from a remote feed by an sse_follow job (cannot be run here)."

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        raise JobError(
            f"Runs of job '{self.context.job}' are mirrored from a remote feed by an sse_follow "
            "job; they cannot be run here."
        )
