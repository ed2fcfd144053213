"""records loaded in the statistics' covering index

The Statistics highlights compare a run's time per record with its job's p90 of time per record,
so the percentile read needs records_loaded beside the duration. ix_run_status_created gains it
as its last column: the read stays on the index instead of visiting the wide run rows.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_BEFORE = ["status", "created_at", "job", "duration_s", "ended_at"]


def upgrade() -> None:
    op.drop_index("ix_run_status_created", table_name="run")
    op.create_index("ix_run_status_created", "run", [*_BEFORE, "records_loaded"])


def downgrade() -> None:
    op.drop_index("ix_run_status_created", table_name="run")
    op.create_index("ix_run_status_created", "run", _BEFORE)
