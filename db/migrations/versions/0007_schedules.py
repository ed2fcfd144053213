"""schedules: per-job time zone, catch-up policy, pause and next tick; a run's scheduled tick

Jobs that already carry a schedule get `next_run_at` = now: the first scheduler pass finds no tick
between then and now and moves it to the schedule's next tick, so nothing old is caught up.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import db.models

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job", schema=None, recreate="never") as batch_op:
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
    op.add_column(
        "run", sa.Column("scheduled_for", db.models.UTCDateTime(timezone=True), nullable=True)
    )
    op.create_index("uq_run_job_scheduled", "run", ["job", "scheduled_for"], unique=True)


def downgrade() -> None:
    # Plain ALTER TABLE DROP COLUMN (SQLite 3.35+): a batch copy of `run` would lose the
    # expression index ix_run_day_status, which 0004's downgrade drops.
    op.drop_index("uq_run_job_scheduled", table_name="run")
    op.execute("ALTER TABLE run DROP COLUMN scheduled_for")
    op.drop_index("ix_job_next_run_at", table_name="job")
    for name in ("next_run_at", "paused", "catchup", "timezone"):
        op.execute(f"ALTER TABLE job DROP COLUMN {name}")
