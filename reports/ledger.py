"""The audit ledger's two checks, as the app and the CLI say them: is the chain intact, and is this
file an export Runwatch made?"""

from __future__ import annotations

import hashlib
from io import BufferedIOBase
from typing import Any

import sqlalchemy as sa

from db.queries import Breach, ChainReport, ExportRecord, find_export, read_session, verify_chain

_BREACHES = {
    Breach.CHANGED: "it was changed after it was written (its content no longer matches its hash)",
    Breach.INSERTED: "it was inserted outside Runwatch (the chain does not lead through it)",
    Breach.DELETED: "a row before it was deleted (or the row before it was changed and re-hashed)",
}


def verify_ledger(engine: sa.Engine) -> ChainReport:
    """Walk the whole audit chain."""
    with read_session(engine) as session:
        return verify_chain(session=session)


def ledger_message(report: ChainReport) -> str:
    """One line: "intact: N events" or the first row that was changed, deleted or inserted."""
    if report.broken_id is None or report.breach is None:
        return f"intact: {report.intact:,} events (newest hash {report.head[:16]})"  # as the issue says
    before = f"{report.intact:,} event{'' if report.intact == 1 else 's'} before it intact"
    return f"broken at audit row #{report.broken_id}: {_BREACHES[report.breach]}; {before}"


def file_sha256(stream: BufferedIOBase) -> str:
    """The SHA-256 (hex) of a file's bytes, read in chunks."""
    return hashlib.file_digest(stream, "sha256").hexdigest()


def match_export(engine: sa.Engine, stream: BufferedIOBase) -> tuple[str, ExportRecord | None]:
    """The file's SHA-256 and the recorded export with those exact bytes, if any."""
    digest = file_sha256(stream)
    with read_session(engine) as session:
        return digest, find_export(session=session, sha256=digest)


def export_message(digest: str, found: ExportRecord | None) -> str:
    """One line: who made the export, when, from where, with which filters and rows; or no match."""
    if found is None:
        return f"no match: no recorded export has SHA-256 {digest}"
    details = found.details
    when = found.ts.strftime("%Y-%m-%d %H:%M:%S UTC")
    source = details.get("source", "?")
    rows = details.get("rows")
    count = f"{rows:,} rows" if isinstance(rows, int) else "? rows"
    what = f"{str(details.get('format', '?')).upper()} of {found.target}, {count}"
    return (
        f"matches export (audit row #{found.id}): {what}, made by {found.actor} via {source} "
        f"at {when}; filters: {describe_filters(details.get('filters'))}"
    )


def describe_filters(filters: Any) -> str:
    """The filters an export recorded, as `name=value` pairs (or "none")."""
    if not isinstance(filters, dict):
        return "none"
    parts = []
    for name, value in filters.items():
        if isinstance(value, list):
            value = ",".join(map(str, value))
        if value not in (None, "", []):
            parts.append(f"{name}={value}")
    return " ".join(parts) or "none"
