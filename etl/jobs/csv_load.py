"""How csv_import writes its rows: each chunk goes to the database as soon as it is parsed."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import chain

import sqlalchemy as sa
from sqlmodel import Session

from etl.jobs.csv_rows import Row
from etl.jobs.tables import copy_rows, has_key, upsert_rows


class RowWriter:
    """Writes a run's rows by key, chunk by chunk, while the chunks are still in the CPU's cache.

    On PostgreSQL one COPY straight into the table streams a batch's chunks, so the server stores a
    chunk while the next is parsed (a COPY of new keys is also twice as fast as an upsert); the
    batch's rows are kept meanwhile, for an upsert if the COPY meets a key the table has. Once a
    COPY meets one, or a batch's first row has a stored key, the run is updating rows: from then on
    each batch's chunks stream into the upsert (`etl.jobs.tables.upsert_rows`) and none is kept, so
    a batch that updates rows never holds them all. On SQLite each chunk is upserted.
    """

    def __init__(self) -> None:
        self.copy = True  # until a batch meets an existing key

    def write(
        self, *, session: Session, table: sa.Table, key: Sequence[str], chunks: Iterable[list[Row]]
    ) -> int:
        """Write the rows of every chunk; return how many there were."""
        if session.get_bind().dialect.name != "postgresql":
            return sum(_upsert(session, table, key, rows) for rows in chunks)
        chunks = iter(chunks)
        first = next(filter(None, chunks), None)  # a chunk of bad records only has no rows
        if first is None:
            return 0
        chunks = chain([first], chunks)
        if self.copy and has_key(session=session, table=table, key=key, row=first[0]):
            self.copy = False  # a COPY straight in would be undone
        if self.copy:
            import psycopg  # here: a SQLite process has no use for the driver (~10 MB)

            rows: list[Row] = []  # kept for an upsert if the COPY meets an existing key
            try:
                with session.begin_nested():
                    _copy(session, table, chunks, rows)
                return len(rows)
            except psycopg.errors.UniqueViolation:
                self.copy = False  # the savepoint undid the COPY
            chunks = chain([rows], chunks)  # what the COPY read, then what it had not
        counts: list[int] = []
        upsert_rows(session=session, table=table, key=key, rows=_counted(chunks, counts))
        return sum(counts)


def _upsert(session: Session, table: sa.Table, key: Sequence[str], rows: list[Row]) -> int:
    upsert_rows(session=session, table=table, key=key, rows=rows)
    return len(rows)


def _counted(chunks: Iterable[list[Row]], counts: list[int]) -> Iterator[Row]:
    """The chunks' rows one by one, adding each chunk's length to `counts` as it is read."""
    for rows in chunks:
        counts.append(len(rows))
        yield from rows


def _copy(session: Session, table: sa.Table, chunks: Iterator[list[Row]], kept: list[Row]) -> None:
    """COPY the chunks' rows (in `table`'s column order), adding each chunk to `kept` as it is read."""

    def keeping() -> Iterator[list[Row]]:
        for rows in chunks:
            kept.extend(rows)
            yield rows

    copy_rows(session=session, table=table, rows=chain.from_iterable(keeping()))
