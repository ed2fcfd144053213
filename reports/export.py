"""Audit exports of the run history: CSV and JSON, streamed in constant memory.

The app's downloads, `runwatch runs --format csv|json` and the API's export endpoints all call
`etl.commands.export`, which streams these bytes, so the same filters and sort give the same bytes
everywhere, and records each export (filters, row count, SHA-256) in the audit trail.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa

from db.models import Run, RunRecord, RunRow, run_duration
from db.queries import (
    RunFilters,
    RunSort,
    iter_runs,
    read_session,
)

Format = Literal["csv", "json"]
FORMATS: tuple[Format, ...] = ("csv", "json")
FIELDS = tuple(RunRecord.model_fields)
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json"}
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_CHUNK_ROWS = 1000


def file_name(fmt: Format, now: datetime | None = None, *, what: str = "runs") -> str:
    """An export's file name, stamped with the UTC time it was asked for."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"runwatch-{what}-{stamp}.{fmt}"


def neutralise(text: str) -> str:
    """Text a spreadsheet would run as a formula, made inert with a leading apostrophe."""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat(timespec="microseconds") if value else None


def record_values(run: Run | RunRow) -> dict[str, Any]:
    """The run's public record (RunRecord's fields, in order) as plain JSON values.

    Times are ISO-8601 UTC, durations in seconds to the ms.
    """
    return dict(zip(FIELDS, _values(run), strict=True))


def _values(run: Run | RunRow) -> list[Any]:
    """record_values' values in FIELDS order (the per-row work of every export)."""
    started, ended = run.started_at, run.ended_at
    duration = run_duration(started, ended)
    return [
        run.id,
        run.job,
        run.status,
        run.trigger,
        run.triggered_by,
        _iso(started),
        _iso(ended),
        None if duration is None else round(duration, 3),
        run.total_records,
        run.offset,
        run.records_loaded,
        run.records_rejected,
        dict(run.counters or {}),
        run.current_step,
        run.error_type,
        run.error_message,
        _iso(run.created_at),
        run.resumed_from,
    ]


# Where each kind of cell sits in a CSV row: the counters are written as compact sorted JSON and
# text cells are neutralised; None, numbers and floats are left to the csv module (None -> "").
_COUNTERS = FIELDS.index("counters")
_TEXT_CELLS = tuple(
    FIELDS.index(name)
    for name in (
        "job",
        "status",
        "trigger",
        "triggered_by",
        "current_step",
        "error_type",
        "error_message",
    )
)
_compact_json = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


def _csv_row(run: Run | RunRow) -> list[Any]:
    row = _values(run)
    row[_COUNTERS] = _compact_json(row[_COUNTERS]) if row[_COUNTERS] else "{}"
    for index in _TEXT_CELLS:
        if row[index]:
            row[index] = neutralise(row[index])
    return row


def csv_chunks(runs: Iterable[Run | RunRow]) -> Iterator[str]:
    """The runs as CSV text (header first), a chunk per thousand rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(FIELDS)
    for count, run in enumerate(runs, start=1):
        writer.writerow(_csv_row(run))
        if count % _CHUNK_ROWS == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def json_chunks(runs: Iterable[Run | RunRow]) -> Iterator[str]:
    """The runs as a JSON array, one record per line, a chunk per thousand rows."""
    parts, empty = ["["], True
    for run in runs:
        parts.append(("\n" if empty else ",\n") + json.dumps(record_values(run)))
        empty = False
        if len(parts) >= _CHUNK_ROWS:
            yield "".join(parts)
            parts = []
    parts.append("]\n" if empty else "\n]\n")
    yield "".join(parts)


class stream_export:  # noqa: N801 (used as the function it replaced; iterates like a generator)
    """The filtered, sorted history in `fmt` as UTF-8 chunks, streamed in constant memory.

    `rows` counts the runs written so far. `etl.commands.export` hashes these bytes and records the
    export in the audit trail.
    """

    def __init__(
        self,
        *,
        engine: sa.Engine,
        fmt: Format,
        filters: RunFilters | None = None,
        sort: RunSort | None = None,
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}")
        self.rows = 0
        self._chunks = self._produce(engine, fmt, filters or RunFilters(), sort or RunSort())

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def _produce(
        self, engine: sa.Engine, fmt: Format, filters: RunFilters, sort: RunSort
    ) -> Iterator[bytes]:
        chunks = csv_chunks if fmt == "csv" else json_chunks
        with read_session(engine) as session:
            rows_in_order = iter_runs(session=session, filters=filters, sort=sort)
            for text in chunks(self._counted(rows_in_order)):
                yield text.encode("utf-8")

    def _counted(self, runs: Iterator[RunRow]) -> Iterator[RunRow]:
        for run in runs:
            self.rows += 1
            yield run
