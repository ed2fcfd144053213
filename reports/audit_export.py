"""Exports of the audit trail: the filtered events as CSV or JSON, with each row's chain hashes."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from datetime import UTC
from typing import Any

import sqlalchemy as sa

from db.models import AuditEvent
from db.queries import AuditFilters, list_audit, read_session
from reports.export import FORMATS, Format, neutralise

FIELDS = ("id", "ts", "actor", "source", "action", "target", "details", "prev_hash", "row_hash")
_TEXT = ("actor", "source", "action", "target")


def event_values(event: AuditEvent) -> dict[str, Any]:
    """One event as plain JSON values, in FIELDS order; the time ISO-8601 UTC."""
    details = event.details or {}
    return {
        "id": event.id,
        "ts": event.ts.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": event.actor,
        "source": details.get("source", ""),
        "action": event.action,
        "target": event.target,
        "details": details,
        "prev_hash": event.prev_hash,
        "row_hash": event.row_hash,
    }


def audit_bytes(events: Sequence[AuditEvent], fmt: Format) -> bytes:
    """The events as CSV (header row, formulas neutralised, details as compact JSON) or a JSON array."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    records = [event_values(event) for event in events]
    if fmt == "json":
        lines = ",\n".join(json.dumps(record, sort_keys=False) for record in records)
        return (f"[\n{lines}\n]\n" if records else "[]\n").encode("utf-8")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(FIELDS)
    for record in records:
        record["details"] = json.dumps(record["details"], sort_keys=True, separators=(",", ":"))
        record.update({name: neutralise(str(record[name])) for name in _TEXT})
        writer.writerow(record.values())
    return buffer.getvalue().encode("utf-8")


class stream_audit_export:  # noqa: N801 (iterates like a generator, as reports.export.stream_export)
    """The filtered audit events (newest first) in `fmt`; `rows` counts them once produced."""

    def __init__(self, *, engine: sa.Engine, fmt: Format, filters: AuditFilters) -> None:
        self.rows = 0
        self._chunks = self._produce(engine, fmt, filters)

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def _produce(self, engine: sa.Engine, fmt: Format, filters: AuditFilters) -> Iterator[bytes]:
        with read_session(engine) as session:
            events = list_audit(session=session, filters=filters, limit=None)
        self.rows = len(events)
        yield audit_bytes(events, fmt)
