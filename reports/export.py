"""Audit exports of the run history: CSV and JSON, streamed, hashed and recorded.

The app's downloads, `runwatch runs --format csv|json` and the API's export endpoints all call
`stream_export`, so the same filters and sort give the same bytes everywhere.
"""

from __future__ import annotations

import csv
import hashlib
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
    iter_run_rows,
    read_session,
    record_audit,
    write_session,
)

Format = Literal["csv", "json"]
FORMATS: tuple[Format, ...] = ("csv", "json")
FIELDS = tuple(RunRecord.model_fields)
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json"}
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_CHUNK_ROWS = 1000


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


def stream_export(
    *,
    engine: sa.Engine,
    fmt: Format,
    filters: RunFilters | None = None,
    sort: RunSort | None = None,
    actor: str = "",
    source: str = "",
) -> Iterator[bytes]:
    """The filtered, sorted history in `fmt`, streamed in constant memory.

    When the last chunk has been produced the export is recorded in `audit_event` with its
    filters, row count and the SHA-256 of the exact bytes produced.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    filters, sort = filters or RunFilters(), sort or RunSort()
    digest, rows = hashlib.sha256(), 0

    def counted(runs: Iterator[RunRow]) -> Iterator[RunRow]:
        nonlocal rows
        for run in runs:
            rows += 1
            yield run

    chunks = csv_chunks if fmt == "csv" else json_chunks
    with read_session(engine) as session:
        rows_in_order = iter_run_rows(session=session, filters=filters, sort=sort)
        for text in chunks(counted(rows_in_order)):
            data = text.encode("utf-8")
            digest.update(data)
            yield data
    details = {
        "format": fmt,
        "filters": filters.as_dict(),
        "sort": {"key": sort.key, "descending": sort.descending},
        "rows": rows,
        "sha256": digest.hexdigest(),
        "source": source,
    }
    with write_session(engine) as session:
        record_audit(session=session, actor=actor, action="export", target="runs", details=details)
