"""Sessions for reads and for short write transactions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlmodel import Session

from db.engine import WRITE_OPTION, get_engine


@contextmanager
def write_session(engine: sa.Engine | None = None) -> Iterator[Session]:
    """A session for one short write transaction (BEGIN IMMEDIATE on SQLite), committed at exit."""
    bind = (engine or get_engine()).execution_options(**{WRITE_OPTION: True})
    with Session(bind, expire_on_commit=False) as session, session.begin():
        yield session


@contextmanager
def read_session(engine: sa.Engine | None = None) -> Iterator[Session]:
    """A session for reads; nothing it does is committed."""
    session = Session(engine or get_engine(), expire_on_commit=False)
    try:
        yield session
    finally:
        # A session that began no transaction and loaded no object holds nothing to release:
        # the hot reads (db.driver) leave it so, and closing it cost half their overhead.
        if session.in_transaction() or len(session.identity_map):
            session.close()
