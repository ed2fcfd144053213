"""a stored run duration, and statistics indexes that read it

Every statistics query used to compute each run's duration from ended_at and started_at
(julianday() twice a row on SQLite) and group by date(created_at) through a sort. The duration
is now a column, written with ended_at (backfilled here), and covering indexes hold it:
ix_run_status_created (percentiles, and ended_at for mean time to recovery) and
ix_run_day_status, ordered by UTC day and status so the daily rows need no sort. It replaces
ix_run_created_cover, which only the daily rows read; the duration chart reads its 2,000
newest runs through ix_run_created_at, in the order it sorts by.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Seconds from start to end, exact to the microsecond. SQLite's julianday() keeps only
# milliseconds, so whole seconds and the fractions of the stored text are subtracted apart.
_BACKFILL = {
    "sqlite": "(strftime('%s', ended_at) - strftime('%s', started_at))"
    " + (substr(ended_at, 20) - substr(started_at, 20))",
    "postgresql": "extract(epoch FROM ended_at - started_at)",
}
_UTC_DAY = {"sqlite": "date(created_at)", "postgresql": "date(timezone('UTC', created_at))"}
_OLD_COVER = ["job", "started_at", "ended_at", "records_loaded"]


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.add_column("run", sa.Column("duration_s", sa.Float(), nullable=True))
    op.execute(
        f"UPDATE run SET duration_s = {_BACKFILL[dialect]} "
        "WHERE started_at IS NOT NULL AND ended_at IS NOT NULL"
    )
    op.drop_index("ix_run_status_created", table_name="run")
    op.drop_index("ix_run_created_cover", table_name="run")
    op.create_index(
        "ix_run_status_created", "run", ["status", "created_at", "job", "duration_s", "ended_at"]
    )
    op.create_index(
        "ix_run_day_status",
        "run",
        [sa.text(_UTC_DAY[dialect]), "status", "created_at", "job", "records_loaded", "duration_s"],
    )


def downgrade() -> None:
    op.drop_index("ix_run_day_status", table_name="run")
    op.drop_index("ix_run_status_created", table_name="run")
    op.create_index("ix_run_status_created", "run", ["status", "created_at", *_OLD_COVER])
    op.create_index("ix_run_created_cover", "run", ["created_at", "status", *_OLD_COVER])
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.drop_column("duration_s")
