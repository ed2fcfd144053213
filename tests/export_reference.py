"""The audit export as it was first written, a run at a time: the bytes the columnar export keeps.

Python's csv.writer and json.dumps over `record_values` define the format; tests
compare the columnar export (reports.cells) with this on awkward values.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from db.models import Run, RunRow, run_duration
from reports.export import FIELDS, compact_json, neutralise


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat(timespec="microseconds") if value else None


def record_values(run: Run | RunRow) -> dict[str, Any]:
    """The run's public record (RunRecord's fields, in order) as plain JSON values: one row of
    the JSON export. Times are ISO-8601 UTC, durations in seconds to the ms."""
    started, ended = run.started_at, run.ended_at
    duration = run_duration(started, ended)
    values = [
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
    return dict(zip(FIELDS, values, strict=True))


_TEXT = ("job", "status", "trigger", "triggered_by", "current_step", "error_type", "error_message")


def _csv_row(run: Run) -> list[Any]:
    record = record_values(run)
    record["counters"] = compact_json(record["counters"]) if record["counters"] else "{}"
    for name in _TEXT:
        if record[name]:
            record[name] = neutralise(record[name])
    return list(record.values())


def csv_bytes(runs: Iterable[Run]) -> bytes:
    """The runs as the CSV export writes them."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(FIELDS)
    writer.writerows(_csv_row(run) for run in runs)
    return buffer.getvalue().encode("utf-8")


def json_bytes(runs: Iterable[Run]) -> bytes:
    """The runs as the JSON export writes them."""
    records = [json.dumps(record_values(run)) for run in runs]
    return ("[\n" + ",\n".join(records) + "\n]\n" if records else "[]\n").encode("utf-8")
