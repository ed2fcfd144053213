"""Typed rows from CSV records for the csv_import job: column types, the row parser, line numbers."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial
from operator import is_not, itemgetter
from typing import Any, cast

import sqlalchemy as sa

from db.models import UTCDateTime

# A step of parsing a field, given its text or the previous step's value.
Step = Callable[[Any], Any]
Row = tuple[Any, ...]
INT64 = (-(2**63), 2**63 - 1)
CHUNK = 2048  # records read and parsed at once (see RowParser.parse)
NUL = "\x00"  # valid in CSV and in SQLite text, refused by PostgreSQL in any text
_ISO_DATES = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:\n[0-9]{4}-[0-9]{2}-[0-9]{2})*")
_not_none = partial(is_not, None)
_BOOLS = {"true": True, "t": True, "yes": True, "y": True, "1": True}
_BOOLS |= {"false": False, "f": False, "no": False, "n": False, "0": False}


def to_bool(text: str) -> bool:
    """`text` as a boolean: true/false, t/f, yes/no, y/n or 1/0, in any case."""
    try:
        return _BOOLS[text.strip().lower()]
    except KeyError:
        raise ValueError(text) from None


def to_datetime(text: str) -> datetime:
    """`text` (ISO 8601) as an aware UTC datetime; a value without an offset is taken as UTC."""
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def to_int64(text: str) -> int:
    """`text` as a whole number that fits a 64-bit column."""
    value = int(text)
    if not INT64[0] <= value <= INT64[1]:
        raise ValueError(text)
    return value


def to_key_text(text: str) -> str:
    """`text` unchanged, but an empty key refused (so the row takes the explaining path)."""
    if not text:
        raise ValueError(text)
    return text


@dataclass(frozen=True)
class ColumnType:
    """A column type of csv_import: its SQL type, its parser, its name in messages.

    The parser is a chain of steps applied in turn (none: the text is kept), so that the row
    builder can inline each step as a C call. Dates end as their YYYY-MM-DD text: what SQLAlchemy
    stores in SQLite and what COPY reads, without a Python adapter call per value at the driver.
    """

    sql: Callable[[], sa.types.TypeEngine[Any]]
    steps: tuple[Step, ...]
    label: str

    def parse(self, text: str) -> Any:
        """`text` as a value of this type; ValueError or OverflowError when it is not one."""
        value: Any = text
        for step in self.steps:
            value = step(value)
        return value


TYPES: dict[str, ColumnType] = {
    "int": ColumnType(sa.BigInteger, (to_int64,), "whole number"),
    "float": ColumnType(sa.Double, (float,), "number"),
    "bool": ColumnType(sa.Boolean, (to_bool,), "true/false value"),
    "date": ColumnType(sa.Date, (date.fromisoformat, date.isoformat), "date (YYYY-MM-DD)"),
    "datetime": ColumnType(UTCDateTime, (to_datetime,), "date-time (ISO 8601)"),
    "text": ColumnType(sa.Text, (), "text"),
}


def target_table(
    name: str, columns: Sequence[str], types: dict[str, str], key: Sequence[str]
) -> sa.Table:
    """The table csv_import creates for a file's columns: typed, with `key` as its primary key.

    A sole whole-number key is declared INTEGER on SQLite, which makes it the table's rowid: each
    row is then one B-tree entry instead of two (the table's and its key index's), a quarter less
    time to load; the rowid holds the same 64-bit range. Keys come from the file, so none is
    generated (no sequence on PostgreSQL).
    """
    rowid = key[0] if len(key) == 1 and types.get(key[0]) == "int" else None

    def column(column_name: str) -> sa.Column[Any]:
        kind = TYPES[types.get(column_name, "text")].sql()
        if column_name == rowid:
            kind = kind.with_variant(sa.Integer(), "sqlite")
        key_part = column_name in key
        return sa.Column(column_name, kind, primary_key=key_part, autoincrement=False)

    return sa.Table(name, sa.MetaData(), *map(column, columns))


def _compile(
    parsers: Sequence[Sequence[Step]], kept: Collection[int] = ()
) -> Callable[[Sequence[str]], Row]:
    """One function building a row from a record's fields, with each field's steps inlined.

    The fields at `kept` are only checked by their steps (which return a true value): the row
    keeps their text.

    Why generated code: one call per row instead of one per field halves the cost of the hot loop.
    Only parameter names and indexes made here go into the source, never data.
    """
    namespace: dict[str, Any] = {}
    fields = []
    for i, steps in enumerate(parsers):
        value = f"f[{i}]"
        for n, step in enumerate(steps):
            namespace[f"p{i}_{n}"] = step
            value = f"p{i}_{n}({value})"
        fields.append(f"({value} and f[{i}])" if i in kept else value)
    return cast(
        Callable[[Sequence[str]], Row], eval(f"lambda f: ({', '.join(fields)},)", namespace)
    )


class RowParser:
    """Turns the records of one file layout into typed rows, or says why a record cannot be one."""

    def __init__(self, columns: Sequence[str], types: dict[str, str], key: Sequence[str]) -> None:
        self.columns = tuple(columns)
        self.types = [TYPES[types.get(name, "text")] for name in self.columns]
        self.key_at = [self.columns.index(name) for name in key]
        self.key_of = itemgetter(*self.key_at)
        self.int_at = [i for i, t in enumerate(self.types) if t is TYPES["int"]]
        self.date_at = [i for i, t in enumerate(self.types) if t is TYPES["date"]]
        self.text_at = [i for i, t in enumerate(self.types) if not t.steps]
        parsers = [
            t.steps or ((to_key_text,) if i in self.key_at else ())
            for i, t in enumerate(self.types)
        ]
        # The fast path parses ints with int() and keeps a date's text once date.fromisoformat
        # took it; per chunk it checks the ints' range and that the dates were written
        # YYYY-MM-DD (see parse): formatting a date again costs more than reading it.
        fast = [
            (int,) if i in self.int_at else steps[:1] if i in self.date_at else steps
            for i, steps in enumerate(parsers)
        ]
        self.fast = _compile(fast, kept=self.date_at)
        self.exact = _compile(parsers)

    def parse(
        self, records: Sequence[Sequence[str]], seen: set[Any]
    ) -> tuple[list[Row], list[tuple[int, str]]]:
        """The rows of the good records and (index, reason) of the bad; `seen`: the file's keys.

        Meant for a chunk of CHUNK records: it stays in the CPU's cache across the several passes
        over it and on to the database (about 15% less time than passes over a batch of 50,000),
        and a bad record sends only its chunk down the slow path.
        """
        rows = self._parse_clean(records, seen)
        if rows is not None:
            return rows, []
        rows, bad = self._parse(records, seen, self.fast)
        if self._as_exact(rows):
            return rows, bad
        for row in rows:  # a number past 64 bits or a date in another form: parse again, exactly
            seen.discard(self.key_of(row))
        return self._parse(records, seen, self.exact)

    def _parse_clean(self, records: Sequence[Sequence[str]], seen: set[Any]) -> list[Row] | None:
        """The rows when every record is good (the usual case), else None; loops run in C."""
        if set(map(len, records)) != {len(self.columns)}:
            return None
        for i in self.text_at:  # other types refuse a NUL character when parsed
            if NUL in "".join(map(itemgetter(i), records)):
                return None
        try:
            rows = list(map(self.fast, records))
        except (ValueError, OverflowError):
            return None
        keys = list(map(self.key_of, rows))
        if not self._as_exact(rows) or len(set(keys)) < len(keys) or not seen.isdisjoint(keys):
            return None
        seen.update(keys)
        return rows

    def _parse(
        self,
        records: Sequence[Sequence[str]],
        seen: set[Any],
        build: Callable[[Sequence[str]], Row],
    ) -> tuple[list[Row], list[tuple[int, str]]]:
        rows: list[Row] = []
        bad: list[tuple[int, str]] = []
        width, key_of = len(self.columns), self.key_of
        for index, fields in enumerate(records):
            if len(fields) != width:
                if fields:  # no fields at all: a blank line, not a record
                    bad.append((index, f"expected {width} fields, found {len(fields)}"))
                continue
            try:
                row = build(fields)
            except (ValueError, OverflowError):
                explained, reason = self.explain(fields)
                if explained is None:
                    bad.append((index, reason))
                    continue
                row = explained
            held = self._nul_column(fields)
            if held:
                bad.append(
                    (index, f"column '{held}' holds a NUL character, which PostgreSQL cannot store")
                )
                continue
            key = key_of(row)
            if key in seen:
                bad.append((index, f"duplicate key {self.describe(key)}: an earlier line has it"))
                continue
            seen.add(key)
            rows.append(row)
        return rows, bad

    def explain(self, fields: Sequence[str]) -> tuple[Row | None, str]:
        """The row of fields the fast path refused (empty values become NULL), or why there is none."""
        values: list[Any] = []
        for i, (name, kind, text) in enumerate(zip(self.columns, self.types, fields, strict=True)):
            if text == "" and i in self.key_at:
                return None, f"key column '{name}' is empty"
            if text == "" or not kind.steps:
                values.append(None if kind.steps else text)
                continue
            try:
                values.append(kind.parse(text))
            except (ValueError, OverflowError):
                return None, f"column '{name}': {_clip(text)!r} is not a valid {kind.label}"
        return tuple(values), ""

    def _nul_column(self, fields: Sequence[str]) -> str | None:
        """The first text column whose value holds a NUL character, if any."""
        return next((self.columns[i] for i in self.text_at if NUL in fields[i]), None)

    def describe(self, key: Any) -> str:
        """A key as `name=value` pairs, for messages."""
        values = key if len(self.key_at) > 1 else (key,)
        names = (self.columns[i] for i in self.key_at)
        return ", ".join(
            f"{name}={_clip(str(value))}" for name, value in zip(names, values, strict=True)
        )

    def _as_exact(self, rows: list[Row]) -> bool:
        """Whether the fast path's rows are what the exact one makes: ints in range, dates as YYYY-MM-DD."""
        for i in self.int_at:
            values = list(filter(_not_none, map(itemgetter(i), rows)))  # loops in C
            if values and (min(values) < INT64[0] or max(values) > INT64[1]):
                return False
        for i in self.date_at:
            texts = "\n".join(filter(_not_none, map(itemgetter(i), rows)))
            if texts and not _ISO_DATES.fullmatch(texts):
                return False
        return True


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def physical_lines(fields: Sequence[str]) -> int:
    """How many lines of the file a record spans (a blank line is a record without fields)."""
    return 1 + sum(f.count("\n") + f.count("\r") - f.count("\r\n") for f in fields)


def line_numbers(records: Sequence[Sequence[str]], first_line: int, last_line: int) -> list[int]:
    """The line each record starts on, given where the first starts and the last ends."""
    if last_line - first_line + 1 == len(records):  # no record spans lines: the usual case
        return list(range(first_line, last_line + 1))
    lines, line = [], first_line
    for fields in records:
        lines.append(line)
        line += physical_lines(fields)
    return lines


def raw_text(fields: Sequence[str], delimiter: str) -> str:
    """A record written back as CSV (quoted where needed), for the quarantine; NUL becomes U+FFFD."""
    out = io.StringIO()
    # With "\r\n" as the terminator the writer quotes fields holding a line break.
    csv.writer(out, delimiter=delimiter, lineterminator="\r\n").writerow(fields)
    return out.getvalue().removesuffix("\r\n").replace(NUL, "\ufffd")
