"""The audit export as it was first written, a run at a time: the bytes the columnar export keeps.

Python's csv.writer and json.dumps over reports.export.record_values define the format; tests
compare the columnar export (reports.cells) with this on awkward values.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Any

from db.models import Run
from reports.cells import compact_json, neutralise
from reports.export import FIELDS, record_values

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
