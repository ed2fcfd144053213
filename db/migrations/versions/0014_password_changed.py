"""when each user's password was last set, so that setting it ends the app sessions signed in before

An admin sets a password (`runwatch user passwd`) when it was forgotten, or when someone else may
know it: the sessions already open in a browser then end at their next page. Users already there
have no such time: their open sessions carry on, as before the upgrade.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

import db.models

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "app_user", sa.Column("password_changed_at", db.models.UTCDateTime(timezone=True))
    )


def downgrade() -> None:
    op.drop_column("app_user", "password_changed_at")  # a plain DROP COLUMN (SQLite >= 3.35)
