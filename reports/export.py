"""Audit exports of the run history: CSV and JSON, streamed, hashed and recorded.

The app's downloads, `runwatch runs --format csv|json` and the API's export endpoints all call
`stream_export`, so the same filters and sort give the same bytes everywhere. The runs are read
as Arrow batches (db.queries.arrow) and formatted a column at a time (reports.cells).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import Literal

import pyarrow as pa
import sqlalchemy as sa

from db.models import RunRecord
from db.queries import RunFilters, RunSort, record_audit, write_session
from db.queries.arrow import BATCH_ROWS, run_batches
from reports.cells import csv_lines, json_records, neutralise

__all__ = [
    "FIELDS",
    "FORMATS",
    "MEDIA_TYPES",
    "Format",
    "neutralise",
    "stream_export",
]

Format = Literal["csv", "json"]
FORMATS: tuple[Format, ...] = ("csv", "json")
FIELDS = tuple(RunRecord.model_fields)
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


def csv_chunks(batches: Iterable[pa.RecordBatch]) -> Iterator[bytes]:
    """The runs as CSV (header first), a chunk per batch."""
    yield (",".join(FIELDS) + "\r\n").encode("ascii")
    for batch in batches:
        yield csv_lines(batch, FIELDS)


def json_chunks(batches: Iterable[pa.RecordBatch]) -> Iterator[bytes]:
    """The runs as a JSON array, one record per line, a chunk per batch."""
    yield b"["
    empty = True
    for batch in batches:
        if batch.num_rows:
            records = json_records(batch, FIELDS)
            yield records[1:] if empty else records  # the first record has no comma before it
            empty = False
    yield b"]\n" if empty else b"\n]\n"


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

    def counted(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        nonlocal rows
        for batch in batches:
            rows += batch.num_rows
            yield batch

    chunks = csv_chunks if fmt == "csv" else json_chunks
    for data in chunks(
        counted(run_batches(engine=engine, filters=filters, sort=sort, rows=BATCH_ROWS))
    ):
        if data:
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
