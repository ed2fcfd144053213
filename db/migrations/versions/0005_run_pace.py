"""the pace a running run has shown, for its ETA

The runner stores, with each batch's checkpoint, what the run has shown of its speed: batches,
records and seconds so far and the spread of the batches' paces (reports.eta.Pace). The app, the
API and the CLI read it to weigh the run's own pace against its job's history.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("run", sa.Column("pace", sa.JSON(), nullable=True))


def downgrade() -> None:
    # a plain DROP COLUMN (SQLite 3.35+): a batch table copy would lose ix_run_day_status, whose
    # expression SQLite's reflection skips
    op.drop_column("run", "pace")
