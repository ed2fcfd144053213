"""a claim token on each run, which fences the writes of the worker that claimed it

A worker's writes for a run (batch checkpoints, events, heartbeats, its end) only land while
the run is still running under the token set when that worker claimed it; a run the orphan sweep
failed, or that another claim took, refuses them.

Revision ID: 0005_fencing
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_fencing"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("run", sa.Column("claim_token", sa.String(length=32), nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite >= 3.35): batch mode would rebuild the table and lose the
    # expression index ix_run_day_status, which it cannot reflect.
    op.drop_column("run", "claim_token")
