"""remote feeds: mirrored remote runs and followed feeds' checkpoints (sse_follow)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import db.models

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "remote_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("remote_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job", "source", "remote_id", name="uq_remote_run"),
    )
    op.create_table(
        "remote_feed",
        sa.Column("job", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("last_event_id", sa.Text(), nullable=True),
        sa.Column("updated_at", db.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("job", "source"),
    )


def downgrade() -> None:
    op.drop_table("remote_feed")
    op.drop_table("remote_run")
