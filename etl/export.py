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

from db.models import Run, RunRecord
from db.queries import RunFilters, RunSort, iter_runs, read_session, record_audit, write_session

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


def record_values(run: Run) -> dict[str, Any]:
    """The run's public record as plain JSON values: ISO-8601 UTC times, durations to the ms."""
    record = RunRecord.from_run(run).model_dump()
    record["start_date"] = _iso(run.started_at)
    record["end_date"] = _iso(run.ended_at)
    record["created_at"] = _iso(run.created_at)
    if record["duration"] is not None:
        record["duration"] = round(record["duration"], 3)
    return record


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    if isinstance(value, str):
        return neutralise(value)
    return str(value)


def csv_chunks(runs: Iterable[Run]) -> Iterator[str]:
    """The runs as CSV text (header first), a chunk per thousand rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(FIELDS)
    for count, run in enumerate(runs, start=1):
        values = record_values(run)
        writer.writerow([_csv_cell(values[name]) for name in FIELDS])
        if count % _CHUNK_ROWS == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def json_chunks(runs: Iterable[Run]) -> Iterator[str]:
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

    def counted(runs: Iterator[Run]) -> Iterator[Run]:
        nonlocal rows
        for run in runs:
            rows += 1
            yield run

    chunks = csv_chunks if fmt == "csv" else json_chunks
    with read_session(engine) as session:
        for text in chunks(counted(iter_runs(session=session, filters=filters, sort=sort))):
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
