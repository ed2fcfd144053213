"""The audit trail: a hash-chained ledger of audit events, appended one at a time, read and verified.

Each row stores `prev_hash` (the previous row's `row_hash`) and `row_hash`, the SHA-256 of its own
content and `prev_hash` as canonical JSON. Changing, deleting or inserting a row directly in the
database breaks the chain at that row, which `verify_chain` names.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlmodel import Session, col, select

from db.models import AuditEvent
from db.queries.base import PG_AUDIT_LOCK, escape_like

GENESIS = "0" * 64  # the prev_hash of the first row
_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def event_hash(
    *,
    id: int,
    ts: datetime,
    actor: str,
    action: str,
    target: str,
    details: dict[str, Any],
    prev_hash: str | None,
) -> str:
    """The SHA-256 (hex) of one audit row's content and its predecessor's hash, as canonical JSON."""
    content = {
        "id": id,
        "ts": ts.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "target": target,
        "details": details,
        "prev": prev_hash,
    }
    return hashlib.sha256(_canonical(content).encode("utf-8")).hexdigest()


_INSERT = sa.insert(AuditEvent)
_NEWEST = "SELECT {} FROM audit_event ORDER BY id DESC LIMIT 1"
# Both take the next id first, since the hash covers it. On PostgreSQL the advisory lock serialises
# appends; the head is read by a second statement, with a snapshot taken once the lock is held, sent in
# the same round trip (psycopg runs a parameterless string of statements in one go).
_PG_HEAD = (
    f"SELECT pg_advisory_xact_lock({PG_AUDIT_LOCK}); "
    f"SELECT nextval(pg_get_serial_sequence('audit_event', 'id')), ({_NEWEST.format('row_hash')})"
)
# Under BEGIN IMMEDIATE nobody else writes: the next id is the newest one's plus 1, as SQLite picks.
_SQLITE_HEAD = sa.text(
    f"SELECT coalesce(({_NEWEST.format('id')}), 0) + 1, ({_NEWEST.format('row_hash')})"
)


def _next_id_and_head(session: Session) -> tuple[int, str | None]:
    """The id the next row gets and the newest row's hash, with appends serialised until commit."""
    if session.get_bind().dialect.name != "postgresql":
        next_id, head = session.execute(_SQLITE_HEAD).one()
        return int(next_id), head
    cursor = session.connection().connection.cursor()
    try:
        cursor.execute(_PG_HEAD)
        cursor.nextset()
        row = cursor.fetchone()
    finally:
        cursor.close()
    assert row is not None
    return int(row[0]), row[1]


def record_audit(
    *,
    session: Session,
    actor: str,
    action: str,
    target: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one audit event to the chain (the ledger's only append), sealed with its hash."""
    next_id, head = _next_id_and_head(session)
    # Through JSON and back, so the hash covers exactly what the database returns later.
    stored = json.loads(json.dumps(details or {}))
    event = AuditEvent(
        id=next_id,
        actor=actor,
        action=action,
        target=target,
        details=stored,
        prev_hash=head or GENESIS,
    )
    event.row_hash = seal(event)
    session.execute(_INSERT, event.model_dump())
    return event


def seal(event: AuditEvent | ChainRow) -> str:
    """The hash `event` must carry, given its content and prev_hash."""
    assert event.id is not None
    return event_hash(
        id=event.id,
        ts=event.ts,
        actor=event.actor,
        action=event.action,
        target=event.target,
        details=event.details,
        prev_hash=event.prev_hash,
    )


# ---------------------------------------------------------------- verifying the chain


class Breach(StrEnum):
    """How the chain breaks at a row."""

    CHANGED = "changed"  # its content no longer matches its hash
    INSERTED = "inserted"  # it was added outside the chain: the next row links past it, or nothing links it
    DELETED = "deleted"  # it is sealed but does not link to the row before it: rows are missing


@dataclass(frozen=True)
class ChainReport:
    """A verification's outcome: the intact events before the first break, and that break."""

    intact: int
    head: str  # row_hash of the last intact row
    broken_id: int | None = None
    breach: Breach | None = None


def check_chain(rows: Iterable[ChainRow]) -> ChainReport:
    """Walk the rows in id order and stop at the first one that was changed, deleted or inserted."""
    expected, intact = GENESIS, 0
    for row, after in _with_next(rows):
        sealed = row.id is not None and row.row_hash == seal(row)
        linked = row.prev_hash == expected
        if sealed and linked:
            intact, expected = intact + 1, str(row.row_hash)
            continue
        skipped = after is not None and after.prev_hash == expected
        breach = Breach.DELETED if sealed else Breach.CHANGED
        if skipped or not (sealed or linked):
            breach = Breach.INSERTED
        return ChainReport(intact, expected, row.id, breach)
    return ChainReport(intact, expected)


def _with_next(rows: Iterable[ChainRow]) -> Iterator[tuple[ChainRow, ChainRow | None]]:
    """Each row with the one after it (None after the last)."""
    previous: ChainRow | None = None
    for row in rows:
        if previous is not None:
            yield previous, row
        previous = row
    if previous is not None:
        yield previous, None


class ChainRow(NamedTuple):
    """One audit row as the verification reads it."""

    id: int
    ts: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any]
    prev_hash: str | None
    row_hash: str | None


_CHAIN = sa.select(*(col(getattr(AuditEvent, name)) for name in ChainRow._fields)).order_by(
    col(AuditEvent.id)
)


def verify_chain(*, session: Session) -> ChainReport:
    """Check the whole ledger, oldest first, in one streamed read (tuples, not ORM objects)."""
    result = session.execute(_CHAIN.execution_options(yield_per=1000))
    return check_chain(ChainRow._make(row) for row in result)


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class AuditFilters:
    """Which audit events a reader wants: actors, actions, text in the target, a time range."""

    actors: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    target: str = ""  # matched anywhere in the target
    since: datetime | None = None  # at or after
    until: datetime | None = None  # before

    def as_dict(self) -> dict[str, Any]:
        """The filters as plain JSON values (for the export's audit record)."""
        return {
            "actors": list(self.actors),
            "actions": list(self.actions),
            "target": self.target,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
        }

    def clauses(self) -> list[sa.ColumnElement[bool]]:
        """The WHERE clauses of these filters."""
        where: list[sa.ColumnElement[bool]] = []
        if self.actors:
            where.append(col(AuditEvent.actor).in_(self.actors))
        if self.actions:
            where.append(col(AuditEvent.action).in_(self.actions))
        if self.target:
            where.append(col(AuditEvent.target).ilike(f"%{escape_like(self.target)}%", escape="\\"))
        if self.since:
            where.append(col(AuditEvent.ts) >= self.since)
        if self.until:
            where.append(col(AuditEvent.ts) < self.until)
        return where


def list_audit(
    *,
    session: Session,
    action: str | None = None,
    filters: AuditFilters | None = None,
    limit: int | None = 100,
) -> Sequence[AuditEvent]:
    """The newest audit events that match (optionally of one action), at most `limit`."""
    where = (filters or AuditFilters()).clauses()
    if action:
        where.append(col(AuditEvent.action) == action)
    query = select(AuditEvent).where(*where).order_by(col(AuditEvent.id).desc())
    return session.exec(query if limit is None else query.limit(limit)).all()


def count_audit(*, session: Session, filters: AuditFilters | None = None) -> int:
    """How many audit events match."""
    query = (
        select(sa.func.count())
        .select_from(AuditEvent)
        .where(*(filters or AuditFilters()).clauses())
    )
    return int(session.exec(query).one())


def audit_actors(*, session: Session) -> list[str]:
    """Every actor in the ledger, in order."""
    query = select(AuditEvent.actor).distinct().order_by(col(AuditEvent.actor))
    return list(session.exec(query).all())


class ExportRecord(NamedTuple):
    """An export the ledger recorded: who made it, when, from where, with which filters, how many rows."""

    id: int
    ts: datetime
    actor: str
    target: str
    details: dict[str, Any]


def find_export(*, session: Session, sha256: str) -> ExportRecord | None:
    """The first recorded export whose bytes had this SHA-256 (hex), if any."""
    digest = col(AuditEvent.details)["sha256"].as_string()
    query = (
        select(AuditEvent)
        .where(col(AuditEvent.action) == "export", digest == sha256.lower())
        .order_by(col(AuditEvent.id))
        .limit(1)
    )
    event = session.exec(query).first()
    if event is None or event.id is None:
        return None
    return ExportRecord(event.id, event.ts, event.actor, event.target, event.details)
