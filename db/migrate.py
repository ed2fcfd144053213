"""Schema migrations: apply Alembic's revisions up to head, safely from many processes at once."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from db.engine import WRITE_OPTION

MIGRATIONS = Path(__file__).parent / "migrations"
_PG_MIGRATION_LOCK = 0x52554E57  # "RUNW": one migrator at a time per database


def alembic_config() -> Config:
    """The Alembic configuration that points at Runwatch's migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def is_current(engine: sa.Engine) -> bool:
    """Whether the database schema is already at the newest revision."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision() == head


def upgrade(engine: sa.Engine) -> None:
    """Bring the schema up to head; a no-op when it is there already."""
    if is_current(engine):
        return
    config = alembic_config()
    with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def init_db(engine: sa.Engine) -> None:
    """Migrate the schema to head and add the built-in jobs: what every entry point runs first."""
    from db.queries import ensure_builtin_jobs, write_session

    upgrade(engine)
    with write_session(engine) as session:
        ensure_builtin_jobs(session=session)
    refresh_planner_statistics(engine)


def refresh_planner_statistics(engine: sa.Engine) -> None:
    """On SQLite, sample every index for the query planner (ANALYZE; PostgreSQL's autovacuum
    keeps its own statistics).

    Without statistics SQLite's planner reads the history's and the statistics' covering indexes
    less well (table lookups and sorts on a large history). Sampled, it takes a few milliseconds
    on 100,000 runs and 2,000,000 events, so every start refreshes them as the history grows.
    """
    if engine.dialect.name != "sqlite":
        return
    with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
        conn.exec_driver_sql("PRAGMA analysis_limit=1000")  # rows sampled per index
        conn.exec_driver_sql("ANALYZE")
