"""a claim on each pending alert, so that one whose deliverer died is delivered by another worker

The worker that raises an alert delivers it. If that worker dies (or loses the database) before
the alert's status is stored, the alert would stay pending for good; with `claimed_at` the next
alert check of any worker takes over a pending alert claimed longer ago than a delivery can take.
The alerts pending at the upgrade count as claimed when they were raised.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

import db.models

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("alert", sa.Column("claimed_at", db.models.UTCDateTime(timezone=True)))
    op.execute("UPDATE alert SET claimed_at = created_at WHERE status = 'pending'")
    op.create_index("ix_alert_status_claimed", "alert", ["status", "claimed_at"])


def downgrade() -> None:
    op.drop_index("ix_alert_status_claimed", table_name="alert")
    op.drop_column("alert", "claimed_at")  # a plain DROP COLUMN (SQLite >= 3.35), as in 0006
