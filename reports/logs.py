"""A run's full log as text, streamed by cursor in chunks (the Logs page's Download log)."""

from __future__ import annotations

from collections.abc import Iterator

import sqlalchemy as sa

from db.queries import EventRow, list_events, read_session

CHUNK = 2000  # events per read: constant memory however long the log is


def format_line(event: EventRow) -> str:
    """One event as a log line: ISO-8601 UTC time, level, kind, step, message."""
    return f"{event.ts.isoformat()} {event.level:<7} {event.kind:<8} {event.step or '-':<9} {event.message}\n"


def stream_log(engine: sa.Engine, *, run_id: int, chunk: int = CHUNK) -> Iterator[bytes]:
    """Every event of run `run_id`, oldest first, as UTF-8 text lines in chunks."""
    after = 0
    while True:
        with read_session(engine) as session:
            events = list_events(
                session=session, run_id=run_id, after_id=after, limit=chunk, with_data=False
            )
        if not events:
            return
        yield "".join(format_line(event) for event in events).encode()
        after = events[-1].id
