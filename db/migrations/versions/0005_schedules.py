"""schedules: per-job time zone, catch-up policy, pause and next tick; a run's scheduled tick

Jobs that already carry a schedule get `next_run_at` = now: the first scheduler pass finds no tick
between then and now and moves it to the schedule's next tick, so nothing old is caught up.

Revision ID: 0005_schedules
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import db.models

revision = "0005_schedules"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "timezone",
                sqlmodel.sql.sqltypes.AutoString(length=64),
                nullable=False,
                server_default="UTC",
            )
        )
        batch_op.add_column(
            sa.Column(
                "catchup",
                sqlmodel.sql.sqltypes.AutoString(length=10),
                nullable=False,
                server_default="latest",
            )
        )
        batch_op.add_column(
            sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("next_run_at", db.models.UTCDateTime(timezone=True), nullable=True)
        )
    op.create_index("ix_job_next_run_at", "job", ["next_run_at"])
    now = db.models.utcnow()
    job = sa.table("job", sa.column("schedule"), sa.column("next_run_at", db.models.UTCDateTime))
    op.execute(job.update().where(job.c.schedule.is_not(None)).values(next_run_at=now))
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("scheduled_for", db.models.UTCDateTime(timezone=True), nullable=True)
        )
    op.create_index("uq_run_job_scheduled", "run", ["job", "scheduled_for"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_run_job_scheduled", table_name="run")
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.drop_column("scheduled_for")
    op.drop_index("ix_job_next_run_at", table_name="job")
    with op.batch_alter_table("job", schema=None) as batch_op:
        for name in ("next_run_at", "paused", "catchup", "timezone"):
            batch_op.drop_column(name)
