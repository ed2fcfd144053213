"""How csv_import writes its rows: each chunk goes to the database as soon as it is parsed."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import chain

import psycopg
import sqlalchemy as sa
from sqlmodel import Session

from etl.jobs.csv_rows import Row
from etl.jobs.tables import copy_rows, upsert_rows


class RowWriter:
    """Writes a run's rows by key, chunk by chunk, while the chunks are still in the CPU's cache.

    On PostgreSQL one COPY straight into the table streams a batch's chunks, so the server stores a
    chunk while the next is parsed (a COPY of new keys is also twice as fast as an upsert). Once a
    COPY meets a key the table has, the run is updating rows: that COPY is undone and from then on
    each batch is upserted whole (`db.queries.upsert_rows`). On SQLite each chunk is upserted.
    """

    def __init__(self) -> None:
        self.copy = True  # until a COPY meets an existing key

    def write(
        self, *, session: Session, table: sa.Table, key: Sequence[str], chunks: Iterable[list[Row]]
    ) -> int:
        """Write the rows of every chunk; return how many there were."""
        if session.get_bind().dialect.name != "postgresql":
            return sum(_upsert(session, table, key, rows) for rows in chunks)
        chunks = iter(chunks)
        rows: list[Row] = []  # kept for an upsert if the COPY meets an existing key
        if self.copy:
            try:
                with session.begin_nested():
                    _copy(session, table, chunks, rows)
                return len(rows)
            except psycopg.errors.UniqueViolation:
                self.copy = False  # the savepoint undid the COPY
        rows += chain.from_iterable(chunks)  # what the COPY had not read yet
        return _upsert(session, table, key, rows)


def _upsert(session: Session, table: sa.Table, key: Sequence[str], rows: list[Row]) -> int:
    upsert_rows(session=session, table=table, key=key, rows=rows)
    return len(rows)


def _copy(session: Session, table: sa.Table, chunks: Iterator[list[Row]], kept: list[Row]) -> None:
    """COPY the chunks' rows (in `table`'s column order), adding each chunk to `kept` as it is read."""

    def keeping() -> Iterator[list[Row]]:
        for rows in chunks:
            kept.extend(rows)
            yield rows

    copy_rows(session=session, table=table, rows=chain.from_iterable(keeping()))
