"""a registry of workers: host, pid, start, heartbeat, current run and scheduler tick

Every worker (the app's thread, `runwatch worker`, serve-api's thread) adds its row when it starts,
beats it at most every heartbeat_s and marks it stopped on a clean stop; the Health page,
/api/health/details and /metrics read it, and show a worker whose beat went stale as lost.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

import db.models

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "worker",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("current_run_id", sa.Integer(), nullable=True),
        sa.Column("scheduler_tick_at", db.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("stopped_at", db.models.UTCDateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("worker")
