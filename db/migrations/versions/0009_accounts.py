"""accounts: people who sign in (app_user) and the API's bearer tokens (api_token)

Passwords are stored as Argon2 hashes and tokens as their SHA-256 only; a revoked token keeps its row
(and so its name) for the audit trail.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import db.models

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _string(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def _moment() -> db.models.UTCDateTime:
    return db.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "app_user",
        sa.Column("name", _string(100), nullable=False),
        sa.Column("password_hash", _string(200), nullable=False),
        sa.Column("role", _string(20), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("failed_attempts", sa.Integer(), nullable=False),
        sa.Column("locked_until", _moment(), nullable=True),
        sa.Column("created_at", _moment(), nullable=False),
        sa.Column("updated_at", _moment(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", _string(100), nullable=False),
        sa.Column("token_hash", _string(64), nullable=False),
        sa.Column("role", _string(20), nullable=False),
        sa.Column("created_by", _string(200), nullable=False),
        sa.Column("created_at", _moment(), nullable=False),
        sa.Column("revoked_at", _moment(), nullable=True),
        sa.Column("last_used_at", _moment(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", name="uq_api_token_name"),
        sa.UniqueConstraint("token_hash", name="uq_api_token_hash"),
    )


def downgrade() -> None:
    op.drop_table("api_token")
    op.drop_table("app_user")
