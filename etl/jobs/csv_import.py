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
    Row,
    RowParser,
    line_numbers,
    physical_lines,
    raw_text,
    target_table,
)
from etl.jobs.tables import create_table, lock_table_name, table_layout


@dataclass
class CsvBatch(Batch):
    """Records of one file (a blank line is an empty record), with where they are in it."""

    file: str = ""
    file_index: int = 0
    columns: tuple[str, ...] = ()
    first_line: int = 0  # the line the first record starts on
    last_line: int = 0  # the line the last record ends on
    ends_file: bool = False


class CsvImportJob(Job):
    """Imports CSV files (a path or glob, in sorted order) into `table`, upserting rows by `key`.

    A bad row (wrong number of fields, a value not of its column's type, an empty key, a key seen
    earlier in the same file) goes to the quarantine table `csv_reject` with its file, line and
    reason, unless `on_error=fail`; more than `max_rejects` bad rows fail the run. The offset counts
    records across the files, so a resumed run skips exactly what its predecessor committed.
    Records are read, checked and committed `batch_size` at a time (default 50,000).
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
        """Parse and write the batch a chunk at a time (see RowWriter), then quarantine its bad rows."""
        assert isinstance(batch, CsvBatch)
        loaded = 0
        if batch.columns:
            table = self._target(batch, session)
            bad: list[tuple[int, str]] = []
            chunks = self._rows(batch, bad)
            loaded = self.writer.write(
                session=session, table=table, key=self.params["key"], chunks=chunks
            )
            batch.rejects = self._rejects(batch, bad)  # the runner counts them from the batch
            self._enforce_limits(batch.rejects)
        if batch.rejects:
            reject_table: sa.Table = CsvReject.__table__  # type: ignore[attr-defined]
            bulk_insert(session=session, table=reject_table, rows=batch.rejects)
        self._count(batch, loaded)
        return loaded

    # ------------------------------------------------------------ reading

    def _file_batches(self, index: int, file: str, skip: int) -> Generator[CsvBatch, None, int]:
        """The batches of one file after its first `skip` records; returns how many it skipped."""
        skipped = records = 0
        with self._reader(file) as reader:
            columns = self._header(file, reader)
            self.context.log("INFO", f"Reading {file}")
            while True:
                batch = self._next_batch(reader, index, file, columns)
                records += batch.size
                if skipped < skip:
                    batch, count = self._skip(batch, skip - skipped)
                    skipped += count
                if batch.size or batch.ends_file:
                    yield batch
                    self._write_notes()
                if batch.ends_file:
                    break
        self.context.log("INFO", f"Read {file}: {records:,} records")
        return skipped

    def _next_batch(self, reader: Any, index: int, file: str, columns: tuple[str, ...]) -> CsvBatch:
        size = self.params["batch_size"] if columns else 0
        first_line = reader.line_num + 1
        # Tuples of strings leave the garbage collector's watch at once; lists would be scanned
        # again and again by full collections (15% of the run's time).
        records = list(map(tuple, islice(reader, size)))
        return CsvBatch(
            records=records,
            size=len(records) - records.count(()),
            file=file,
            file_index=index,
            columns=columns,
            first_line=first_line,
            last_line=reader.line_num,
            ends_file=len(records) < size or not columns,
        )

    def _skip(self, batch: CsvBatch, count: int) -> tuple[CsvBatch, int]:
        """The batch without its first `count` records, which only rebuild the file's seen keys."""
        if count >= batch.size:
            self._remember_keys(batch)
            return replace(batch, records=[], size=0), batch.size
        cut = done = 0
        while done < count:
            done += bool(batch.records[cut])
            cut += 1
        head = batch.records[:cut]
        self._remember_keys(replace(batch, records=head))
        first_line = batch.first_line + sum(map(physical_lines, head))
        rest = replace(batch, records=batch.records[cut:], size=batch.size - count)
        return replace(rest, first_line=first_line), count

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
        reader = None
        try:
            with open(file, newline="", encoding=self.codec) as handle:
                reader = csv.reader(handle, delimiter=self.params["delimiter"])
                yield reader
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

    def _chunks(self, batch: CsvBatch) -> Iterator[tuple[list[Row], list[tuple[int, str]]]]:
        """Typed rows and (index, reason) of bad records, by chunk; duplicate keys are per file."""
        if self.seen[0] != batch.file_index:
            self.seen = (batch.file_index, set())
        parser = self.parsers.get(batch.columns)
        if parser is None:
            params = self.params
            parser = RowParser(batch.columns, params["types"], params["key"])
            self.parsers[batch.columns] = parser
        return parser.chunks(batch.records, self.seen[1])

    def _rows(self, batch: CsvBatch, bad: list[tuple[int, str]]) -> Iterator[list[Row]]:
        """The batch's rows a chunk at a time, adding (index, reason) of its bad records to `bad`."""
        for rows, chunk_bad in self._chunks(batch):
            bad += chunk_bad
            yield rows

    def _remember_keys(self, batch: CsvBatch) -> None:
        """Parse records a resumed run skips, only for their keys: a later duplicate is still one."""
        for _ in self._chunks(batch):
            pass

    def _rejects(self, batch: CsvBatch, bad: list[tuple[int, str]]) -> list[dict[str, Any]]:
        if not bad:
            return []
        lines = line_numbers(batch.records, batch.first_line, batch.last_line)
        delimiter, now = self.params["delimiter"], utcnow()
        return [
            {
                "run_id": self.context.run_id,
                "file": batch.file,
                "line": lines[index],
                "reason": reason,
                "raw": raw_text(batch.records[index], delimiter),
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
