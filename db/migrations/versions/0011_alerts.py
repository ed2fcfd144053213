"""alerts: rules, the alerts they raised (one per event), every delivery attempt, the checks' cursor

The cursor starts at the newest run event, so the runs that ended before alerts existed raise none.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import db.models

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_TEXT = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "alert_rule",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job", _TEXT(length=100), nullable=True),
        sa.Column("kind", _TEXT(length=20), nullable=False),
        sa.Column("limit_value", sa.Float(), nullable=True),
        sa.Column("channel", _TEXT(length=10), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", db.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "alert",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=True),
        sa.Column("dedup_key", _TEXT(length=300), nullable=False),
        sa.Column("kind", _TEXT(length=20), nullable=False),
        sa.Column("job", _TEXT(length=100), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("channel", _TEXT(length=10), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("status", _TEXT(length=10), nullable=False),
        sa.Column("created_at", db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("read_at", db.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedup_key"),
    )
    op.create_index("ix_alert_rule_id", "alert", ["rule_id"])
    op.create_index("ix_alert_read_at", "alert", ["read_at"])
    op.create_table(
        "alert_delivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("channel", _TEXT(length=10), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.Column("at", db.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["alert_id"], ["alert.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_alert_delivery_alert_id", "alert_delivery", ["alert_id"])
    op.create_index("ix_alert_delivery_at", "alert_delivery", ["at"])
    cursor = op.create_table(
        "alert_cursor",
        sa.Column("name", _TEXT(length=20), nullable=False),
        sa.Column("last_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    newest = op.get_bind().execute(sa.text("SELECT coalesce(max(id), 0) FROM run_event")).scalar()
    op.bulk_insert(cursor, [{"name": "ended", "last_id": int(newest or 0)}])


def downgrade() -> None:
    op.drop_table("alert_cursor")
    op.drop_table("alert_delivery")
    op.drop_table("alert")
    op.drop_table("alert_rule")
