"""The csv_import job: CSV files into a typed target table, upserted by key, bad rows quarantined."""

from __future__ import annotations

import csv
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from itertools import islice
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from db.models import CsvReject, utcnow
from etl.bulk import bulk_insert
from etl.jobs.base import Batch, Job, JobError
from etl.jobs.csv_files import (
    ascii_compatible,
    count_plain_lines,
    decode_problem,
    header_problem,
    quoted,
)
from etl.jobs.csv_load import RowWriter
from etl.jobs.csv_params import PARAMETERS, check_params, matching_files
from etl.jobs.csv_rows import (
    CHUNK,
    Row,
    RowParser,
    line_numbers,
    raw_text,
    target_table,
)
from etl.jobs.tables import create_table, lock_table_name, table_layout

Record = tuple[str, ...]  # a CSV record's fields (a blank line is a record without fields)


@dataclass
class CsvBatch(Batch):
    """Up to `batch_size` records of one file, read from its `reader` a chunk at a time while
    `load` writes them: a batch's records are never all in memory at once, so a worker's memory
    does not keep the high-water mark of 50,000 parsed records (see README, "Memory over a long
    life"). `size` and `ends_file` are known once the batch is loaded."""

    file: str = ""
    file_index: int = 0
    columns: tuple[str, ...] = ()
    reader: Any = None  # the file's CSV reader, at the batch's first record
    ends_file: bool = False


class CsvImportJob(Job):
    """Imports CSV files (a path or glob, in sorted order) into `table`, upserting rows by `key`.

    A bad row (wrong number of fields, a value not of its column's type, an empty key, a key seen
    earlier in the same file) goes to the quarantine table `csv_reject` with its file, line and
    reason, unless `on_error=fail`; more than `max_rejects` bad rows fail the run. The offset counts
    records across the files, so a resumed run skips exactly what its predecessor committed.
    Records are committed `batch_size` at a time (default 50,000), read and checked CHUNK at a time.
    """

    kind = "csv_import"
    description = "CSV files into a typed table, upserted by key; bad rows quarantined."
    parameters = PARAMETERS

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        checked = check_params(params)
        encoding = checked["encoding"]
        self.files = matching_files(checked["path"])
        # Python's utf-8 codec keeps a byte order mark as a character; utf-8-sig drops it.
        self.codec = "utf-8-sig" if encoding == "utf-8" else encoding
        self.parsers: dict[tuple[str, ...], RowParser] = {}
        self.tables: dict[tuple[str, ...], sa.Table] = {}
        self.seen: tuple[int, set[Any]] = (-1, set())  # keys loaded so far from file number n
        self.notes: list[str] = []  # log lines from inside a load, written after its commit
        self.writer = RowWriter()
        return checked

    def estimate_total(self, params: dict[str, Any]) -> int | None:
        """Records in all files: a scan of line ends, or a CSV parse where lines and records differ."""
        return sum(self._count_records(file) for file in self.files)

    def extract(self, params: dict[str, Any], offset: int) -> Iterator[Batch]:
        names = ", ".join(params["key"])
        self.context.log(
            "INFO",
            f"Importing {len(self.files)} file(s) into table {params['table']} by key ({names})",
        )
        left = offset
        for index, file in enumerate(self.files):
            left -= yield from self._file_batches(index, file, left)
        if left:
            raise JobError(
                f"The files hold {offset - left:,} records, fewer than the checkpoint's {offset:,}:"
                " they changed since the run being resumed."
            )

    def load(self, batch: Batch, session: Session) -> int:
        """Read, parse and write the batch a chunk at a time (see RowWriter), then quarantine its
        bad rows."""
        assert isinstance(batch, CsvBatch)
        loaded = 0
        if batch.columns:
            table = self._target(batch, session)
            chunks = self._rows(batch)
            loaded = self.writer.write(
                session=session, table=table, key=self.params["key"], chunks=chunks
            )
            self._enforce_limits(batch.rejects)
        if batch.rejects:
            reject_table: sa.Table = CsvReject.__table__  # type: ignore[attr-defined]
            bulk_insert(session=session, table=reject_table, rows=batch.rejects)
        self._count(batch, loaded)
        return loaded

    # ------------------------------------------------------------ reading

    def _file_batches(self, index: int, file: str, skip: int) -> Generator[CsvBatch, None, int]:
        """The batches of one file after its first `skip` records; returns how many it skipped."""
        with self._reader(file) as reader:
            columns = self._header(file, reader)
            self.context.log("INFO", f"Reading {file}")
            batch = CsvBatch(
                records=[], size=0, file=file, file_index=index, columns=columns, reader=reader
            )
            batch.ends_file = not columns
            skipped = self._skip(batch, skip)
            records = skipped
            while True:
                yield batch  # read as it is loaded
                self._write_notes()
                records += batch.size
                if batch.ends_file:
                    break
                batch = replace(batch, size=0, rejects=[])
        self.context.log("INFO", f"Read {file}: {records:,} records")
        return skipped

    def _read(self, batch: CsvBatch, count: int) -> list[Record]:
        """The batch's next `count` records, fewer where its file ends (the batch then ends it)."""
        with self._read_errors(batch.file, batch.reader):
            # Tuples of strings leave the garbage collector's watch at once; lists would be scanned
            # again and again by full collections (15% of the run's time).
            records = list(map(tuple, islice(batch.reader, count)))
        batch.ends_file = len(records) < count
        return records

    def _skip(self, batch: CsvBatch, count: int) -> int:
        """Read past the file's first `count` records, only to remember their keys (a later
        duplicate is still one); returns how many there were."""
        skipped = 0
        while skipped < count and not batch.ends_file:
            records = self._read(batch, min(CHUNK, count - skipped))
            self._parser(batch).parse(records, self._seen(batch))
            skipped += len(records) - records.count(())
        return skipped

    def _header(self, file: str, reader: Any) -> tuple[str, ...]:
        """The file's column names (none for an empty file), checked against key and types."""
        for fields in reader:
            if fields:
                break
        else:
            self.context.log("WARNING", f"{file} is empty")
            return ()
        columns = tuple(name.strip() for name in fields)
        problem = header_problem(columns, self.params)
        if problem:
            raise JobError(f"{file}: {problem}.")
        return columns

    @contextmanager
    def _reader(self, file: str) -> Iterator[Any]:
        """A CSV reader of `file`; undecodable bytes, bad CSV and read errors become JobErrors."""
        with self._read_errors(file), open(file, newline="", encoding=self.codec) as handle:
            reader = csv.reader(handle, delimiter=self.params["delimiter"])
            with self._read_errors(file, reader):
                yield reader

    @contextmanager
    def _read_errors(self, file: str, reader: Any = None) -> Iterator[None]:
        """Undecodable bytes, bad CSV and read errors of `file` as JobErrors (also where `load`
        reads, outside the extract generator)."""
        try:
            yield
        except UnicodeDecodeError as error:
            encoding = self.params["encoding"]
            raise JobError(decode_problem(file, encoding, self.codec, error)) from None
        except csv.Error as error:
            line = reader.line_num if reader else 0
            raise JobError(f"{file}, line {line}: not valid CSV ({error}).") from None
        except OSError as error:
            raise JobError(f"Cannot read {file}: {error.strerror or error}.") from None

    def _count_records(self, file: str) -> int:
        if ascii_compatible(self.params["encoding"]):
            count = count_plain_lines(file)
            if count is not None:
                return count
        with self._reader(file) as reader:
            return max(sum(1 for fields in reader if fields) - 1, 0)

    # ------------------------------------------------------------ checking

    def _rows(self, batch: CsvBatch) -> Iterator[list[Row]]:
        """The batch's typed rows, a chunk of records read and parsed at a time; its bad records
        go to `batch.rejects` (the runner counts them from there)."""
        parser, seen = self._parser(batch), self._seen(batch)
        left = self.params["batch_size"]
        while left and not batch.ends_file:
            first_line = batch.reader.line_num + 1
            records = self._read(batch, min(CHUNK, left))
            lines = (first_line, batch.reader.line_num)  # where the chunk starts and ends
            left -= len(records)
            batch.size += len(records) - records.count(())
            rows, bad = parser.parse(records, seen)
            batch.rejects += self._rejects(batch.file, records, lines, bad)
            yield rows

    def _parser(self, batch: CsvBatch) -> RowParser:
        """The row parser of the batch's columns."""
        parser = self.parsers.get(batch.columns)
        if parser is None:
            params = self.params
            parser = RowParser(batch.columns, params["types"], params["key"])
            self.parsers[batch.columns] = parser
        return parser

    def _seen(self, batch: CsvBatch) -> set[Any]:
        """The keys loaded so far from the batch's file: duplicate keys are per file."""
        if self.seen[0] != batch.file_index:
            self.seen = (batch.file_index, set())
        return self.seen[1]

    def _rejects(
        self, file: str, records: list[Record], lines: tuple[int, int], bad: list[tuple[int, str]]
    ) -> list[dict[str, Any]]:
        """The quarantine rows of a chunk's bad `records`, which span `lines` (first, last)."""
        if not bad:
            return []
        starts = line_numbers(records, *lines)
        delimiter, now = self.params["delimiter"], utcnow()
        return [
            {
                "run_id": self.context.run_id,
                "file": file,
                "line": starts[index],
                "reason": reason,
                "raw": raw_text(records[index], delimiter),
                "ts": now,
            }
            for index, reason in bad
        ]

    def _enforce_limits(self, rejects: list[dict[str, Any]]) -> None:
        """Fail on the first bad row (on_error=fail) or on the one past max_rejects."""
        if not rejects:
            return
        if self.params["on_error"] == "fail":
            raise JobError(f"{_where(rejects[0])} (on_error=fail).")
        limit = self.params["max_rejects"]
        before = int(self.context.counters.get("rejected", 0))
        if limit is not None and before + len(rejects) > limit:
            over = rejects[max(limit - before, 0)]
            raise JobError(f"More than {limit:,} rows rejected (max_rejects); {_where(over)}.")

    # ------------------------------------------------------------ loading

    def _target(self, batch: CsvBatch, session: Session) -> sa.Table:
        """The target table for the batch's columns, created or checked on first use."""
        table = self.tables.get(batch.columns)
        if table is None:
            params = self.params
            table = target_table(params["table"], batch.columns, params["types"], params["key"])
            self.tables[batch.columns] = table
            self._prepare(table, batch.file, session)
        return table

    def _prepare(self, table: sa.Table, file: str, session: Session) -> None:
        """Create the table, or check an existing one can take the file's columns by key."""
        lock_table_name(session=session, name=table.name)  # a run importing beside us waits here
        layout = table_layout(session=session, name=table.name)
        key = self.params["key"]
        if layout is None:
            create_table(session=session, table=table)
            self.notes.append(f"Created table {table.name} with primary key ({', '.join(key)})")
            return
        missing = [column.name for column in table.columns if column.name not in layout.columns]
        if missing:
            raise JobError(f"Table '{table.name}' has no column(s) {quoted(missing)} of {file}.")
        if frozenset(key) not in layout.unique_keys:
            raise JobError(
                f"Table '{table.name}' has no primary key or unique constraint on"
                f" ({', '.join(key)}), which csv_import needs to upsert by key."
            )

    def _count(self, batch: CsvBatch, loaded: int) -> None:
        counters = self.context.counters
        counters["extracted"] = counters.get("extracted", 0) + batch.size
        counters["loaded"] = counters.get("loaded", 0) + loaded
        counters["rejected"] = counters.get("rejected", 0) + len(batch.rejects)
        done = batch.file_index + 1 if batch.ends_file else 0
        counters["files"] = max(counters.get("files", 0), done)

    def _write_notes(self) -> None:
        for note in self.notes:
            self.context.log("INFO", note)
        self.notes.clear()


def _where(reject: dict[str, Any]) -> str:
    return f"{reject['file']}, line {reject['line']}: {reject['reason']}"
