"""The audit trail: append an audit event, list the newest."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlmodel import Session, col, select

from db.models import AuditEvent


def record_audit(
    *,
    session: Session,
    actor: str,
    action: str,
    target: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one audit event."""
    event = AuditEvent(actor=actor, action=action, target=target, details=details or {})
    session.add(event)
    session.flush()
    return event


def list_audit(
    *, session: Session, action: str | None = None, limit: int = 100
) -> Sequence[AuditEvent]:
    """The newest audit events, optionally of one action."""
    query = select(AuditEvent)
    if action:
        query = query.where(AuditEvent.action == action)
    return session.exec(query.order_by(col(AuditEvent.id).desc()).limit(limit)).all()
