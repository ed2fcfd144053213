"""indexes for History and Statistics on large histories

Covering indexes let the statistics aggregates read the few run columns they need from the
index instead of the wide run rows (JSON params, counters, tracebacks), and (job, ended_at,
status) turns mean time to recovery's "previous and next run of the job" into index seeks.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_COVERED = ["job", "started_at", "ended_at", "records_loaded"]


def upgrade() -> None:
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.drop_index("ix_run_status_created")
        batch_op.create_index("ix_run_status_created", ["status", "created_at", *_COVERED])
        batch_op.create_index("ix_run_created_cover", ["created_at", "status", *_COVERED])
        batch_op.create_index("ix_run_job_ended", ["job", "ended_at", "status"])


def downgrade() -> None:
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.drop_index("ix_run_job_ended")
        batch_op.drop_index("ix_run_created_cover")
        batch_op.drop_index("ix_run_status_created")
        batch_op.create_index("ix_run_status_created", ["status", "created_at"])
