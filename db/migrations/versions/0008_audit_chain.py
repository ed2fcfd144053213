"""a hash chain over the audit trail

Each audit_event row gets prev_hash (the previous row's row_hash) and row_hash (SHA-256 of its
content and prev_hash), so a row changed, deleted or inserted outside Runwatch breaks the chain
(`runwatch audit verify`). The rows that exist are chained here, oldest first, with the very
function that seals every new row.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from db.models import UTCDateTime
from db.queries.audit import GENESIS, event_hash

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_AUDIT = sa.table(
    "audit_event",
    sa.column("id", sa.Integer),
    sa.column("ts", UTCDateTime),
    sa.column("actor", sa.String),
    sa.column("action", sa.String),
    sa.column("target", sa.String),
    sa.column("details", sa.JSON),
    sa.column("prev_hash", sa.String),
    sa.column("row_hash", sa.String),
)


def upgrade() -> None:
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("row_hash", sa.String(length=64), nullable=True))
    _backfill(op.get_bind())


def _backfill(connection: sa.Connection) -> None:
    """Chain every existing row, oldest first."""
    columns = [_AUDIT.c[name] for name in ("id", "ts", "actor", "action", "target", "details")]
    rows = connection.execute(sa.select(*columns).order_by(_AUDIT.c.id)).all()
    prev, update = GENESIS, []
    for row in rows:
        content = dict(row._mapping, details=row.details or {})
        sealed = event_hash(**content, prev_hash=prev)
        update.append({"key": row.id, "prev": prev, "sealed": sealed})
        prev = sealed
    if update:
        connection.execute(
            _AUDIT.update()
            .where(_AUDIT.c.id == sa.bindparam("key"))
            .values(prev_hash=sa.bindparam("prev"), row_hash=sa.bindparam("sealed")),
            update,
        )


def downgrade() -> None:
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_column("row_hash")
        batch_op.drop_column("prev_hash")
