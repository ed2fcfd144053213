"""Schema migrations: apply Alembic's revisions up to head, safely from many processes at once."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from db.engine import WRITE_OPTION

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
_PG_MIGRATION_LOCK = 0x52554E57  # "RUNW": one migrator at a time per database


def alembic_config() -> Config:
    """The Alembic configuration that points at Runwatch's migrations."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    """The newest revision, from the file names (`0004_run_duration.py` holds revision "0004").

    Read without Alembic, whose import costs most of a CLI command's start-up; a test checks it
    against Alembic's own answer.
    """
    return max(path.name.split("_")[0] for path in (MIGRATIONS / "versions").glob("[0-9]*_*.py"))


def is_current(engine: sa.Engine) -> bool:
    """Whether the database schema is already at the newest revision."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return False
        versions = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
    return versions == [head_revision()]


def upgrade(engine: sa.Engine) -> None:
    """Bring the schema up to head; a no-op when it is there already."""
    if is_current(engine):
        return
    from alembic import command

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
    """On SQLite, analyse the tables for the query planner when the run history has outgrown its
    statistics (PostgreSQL's autovacuum keeps its own).

    Without statistics, or with sampled ones, SQLite's planner reads the history's and the
    statistics' indexes badly (highlights: 24 ms instead of 0.5 ms on 100,000 runs). The run table
    is analysed in full (about 60 ms for 100,000 runs), the others sampled; a start whose history
    has grown by less than a quarter since the last analysis only compares two numbers.
    """
    if engine.dialect.name != "sqlite":
        return
    with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
        runs = conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM run").scalar_one()
        if not runs or runs <= _analysed_runs(conn) * 1.25:
            return
        conn.exec_driver_sql("PRAGMA analysis_limit=1000")  # rows sampled per index
        conn.exec_driver_sql("ANALYZE")
        conn.exec_driver_sql("PRAGMA analysis_limit=0")  # the run table's plans need it all
        conn.exec_driver_sql("ANALYZE run")


def _analysed_runs(conn: sa.Connection) -> int:
    """How many runs the run table held when it was last analysed (0: never)."""
    if not conn.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").first():
        return 0
    stat = conn.exec_driver_sql("SELECT stat FROM sqlite_stat1 WHERE tbl = 'run' LIMIT 1").first()
    return int(stat[0].split()[0]) if stat else 0
