"""The audit export's cells, a column at a time: Arrow batches of runs in, CSV or JSON bytes out.

Every value is formatted by pyarrow.compute kernels over whole columns. The bytes are the ones
Python's `csv.writer` and `json.dumps` give for each run's record (tests/export_reference.py pins
them), so the few cells a kernel cannot prove it renders alike (a duration exactly between two
milliseconds, a text with a quote or non-ASCII for JSON, counters that are not a flat object of
integers) are handed, on their own, to those very Python functions.

pyarrow.csv cannot write these bytes (it quotes every string, the header too, and writes "" for an
empty one), so each line is joined by `binary_join_element_wise` and the lines' buffer is the chunk.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import lru_cache
from typing import Any, TypeAlias

import pyarrow as pa
import pyarrow.compute as pc

from reports.export import compact_json

# a string column: one batch's cells of one field, null where the value is
Cells: TypeAlias = pa.Array

_FORMULA = "^[=+\\-@\\t\\r]"
_CSV_QUOTED = '[,"\\r\\n]'  # what makes Python's csv (QUOTE_MINIMAL) quote a cell
_JSON_ESCAPED = '[^\\x20-\\x7e]|["\\\\]'  # what json.dumps (ensure_ascii) escapes in a string
# A counters object the kernels render: json.dumps' own text of a flat object of integers, its
# keys printable ASCII that JSON writes as it is (and, to keep the patterns plain, no , : { or }).
_KEY = '"[\\x20\\x21\\x23-\\x2b\\x2d-\\x39\\x3b-\\x5b\\x5d-\\x7a\\x7c\\x7e]*"'
_INT = "-?(?:0|[1-9][0-9]*)"
_FLAT = f"^\\{{(?:{_KEY}: {_INT}(?:, {_KEY}: {_INT})*)?\\}}$"
_MS_EXACT_BELOW = 10**15  # microseconds: under ~31 years a float holds the duration to < 0.5 µs


def _where(
    cells: Cells,
    mask: pa.Array,
    fix: Callable[[pa.Array], pa.Array],
    source: pa.Array | None = None,
) -> Cells:
    """`cells` with the masked ones replaced by `fix` of the masked `source` values (default: the
    cells themselves): the costly rendering runs on the few cells that need it."""
    mask = pc.fill_null(mask, False)
    if not pc.any(mask).as_py():
        return cells
    fixed = fix((cells if source is None else source).filter(mask))
    return pc.replace_with_mask(cells, mask, fixed.cast(pa.string()))


def _python(fix: Callable[[Any], str]) -> Callable[[pa.Array], pa.Array]:
    """`fix`, a Python function of one value, over an array (for rare cells only)."""
    return lambda values: pa.array([fix(value) for value in values.to_pylist()], pa.string())


def join(parts: Sequence[Cells | str], sep: str = "", nulls: str | None = None) -> Cells:
    """The element-wise concatenation of columns and constants: null where a part is null, or
    with `nulls` in place of a null part."""
    options = None if nulls is None else pc.JoinOptions("replace", null_replacement=nulls)
    texts = [_text(p) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*texts, _text(sep), options=options)


# Constants go to the kernels as typed scalars: converting an untyped Python value, pyarrow
# loads pandas (about 45 MB) to check whether it is a pandas object (see db.queries.arrow).
@lru_cache(maxsize=512)
def _text(value: str) -> pa.Scalar:
    return pa.scalar(value, pa.string())


@lru_cache(maxsize=512)
def _int(value: int) -> pa.Scalar:
    return pa.scalar(value, pa.int64())


def integers(values: pa.Array) -> Cells:
    """Integers as decimal text."""
    return pc.cast(values, pa.string())


def iso_times(times: pa.Array) -> Cells:
    """UTC timestamps (timestamp[us]) as datetime.isoformat(timespec="microseconds") writes them."""
    # Arrow writes every timestamp[us] as 'YYYY-MM-DD HH:MM:SS.ffffff' (years zero-padded, as
    # Python's): the 11th character is the space isoformat writes as 'T'
    text = pc.binary_replace_slice(pc.cast(times, pa.string()), 10, 11, "T")
    return join([text, "+00:00"])


def durations(started: pa.Array, ended: pa.Array) -> Cells:
    """Seconds from start to end rounded to the ms, as repr(round(seconds, 3)) writes them."""
    micros = pc.cast(pc.subtract(ended, started), pa.int64())
    ms = pc.divide(pc.add(micros, _int(500)), _int(1000))
    whole, part = pc.divide(ms, _int(1000)), pc.modulo(ms, _int(1000))
    text = join([integers(whole), pc.take(_DECIMALS, part)], ".")
    # float rounding decides ties, negatives (-0.0) and ages-long spans: Python renders those
    odd = pc.or_(pc.equal(pc.modulo(micros, _int(1000)), _int(500)), pc.less(micros, _int(0)))
    odd = pc.or_(odd, pc.greater_equal(micros, _int(_MS_EXACT_BELOW)))
    return _where(text, odd, _python(_duration_text), micros)


# the decimals repr() writes for each count of ms in a second: 0 -> '0', 5 -> '005', 120 -> '12'
_DECIMALS = pa.array([f"{ms:03d}".rstrip("0") or "0" for ms in range(1000)], pa.string())


def _duration_text(micros: int) -> str:
    return repr(round(timedelta(microseconds=micros).total_seconds(), 3))


KNOWN_CELLS = 4_096  # formatted values a text format keeps across batches, at most
NEW_CELLS = 32  # a batch with more values not seen yet is formatted as it is, none kept


def per_value(fmt: Callable[[pa.Array], Cells]) -> Callable[[pa.Array], Cells]:
    """`fmt`, applied once per distinct value where a column repeats its values (statuses, job
    names, error types): the distinct values' cells are taken for every row.

    A value's cell is kept once formatted (up to KNOWN_CELLS of them, then forgotten at once), so
    the values every batch repeats are formatted by the first only: each further batch costs one
    encoding and one take, where formatting its few values cost many small kernel calls. A batch
    with over NEW_CELLS values not seen yet (one-off error messages) keeps none of them.
    """
    kept: list[dict[str, str]] = [{}]  # the cells kept; replaced, never emptied (see below)

    def apply(values: pa.Array) -> Cells:
        encoded = pc.dictionary_encode(values)
        if len(encoded.dictionary) * 2 > len(values):
            return fmt(values)
        distinct = encoded.dictionary.to_pylist()
        known = kept[0]
        new = [value for value in distinct if value not in known]
        if len(new) > NEW_CELLS:  # mostly values seen once (error messages): none kept
            return pc.take(fmt(encoded.dictionary), encoded.indices)
        if len(known) + len(new) > KNOWN_CELLS:
            # a new dict rather than clear(): the exports of other threads (serve-api serves
            # several at once) may be between finding their values in the old one and reading them
            known = kept[0] = {}
            new = distinct
        if new:
            known.update(zip(new, fmt(pa.array(new, pa.string())).to_pylist(), strict=True))
        cells = pa.array([known[value] for value in distinct], pa.string())
        return pc.take(cells, encoded.indices)

    return apply


@per_value
def csv_text(values: pa.Array) -> Cells:
    """Text cells as the CSV writes them: formulas neutralised, quoted where csv would quote."""
    values = _where(values, pc.match_substring_regex(values, _FORMULA), _apostrophe)
    return _where(values, pc.match_substring_regex(values, _CSV_QUOTED), _csv_quoted)


def _apostrophe(values: pa.Array) -> Cells:
    return join(["'", values])


def _csv_quoted(values: pa.Array) -> Cells:
    return join(['"', pc.replace_substring(values, '"', '""'), '"'])


@per_value
def json_text(values: pa.Array) -> Cells:
    """Text cells as json.dumps writes them ('null' for None)."""
    text = pc.fill_null(join(['"', values, '"']), _text("null"))
    escaped = pc.match_substring_regex(values, _JSON_ESCAPED)
    return _where(text, escaped, _python(json.dumps), values)


def csv_counters(stored: pa.Array) -> Cells:
    """The stored counters JSON as the CSV writes it: compact with sorted keys, quoted."""
    return _rewritten(stored, _sorted_compact, _sorted_compact_python)


def json_counters(stored: pa.Array) -> Cells:
    """The stored counters JSON as json.dumps writes the counters dict."""
    return _rewritten(stored, None, _dumped_python)


# key order -> the cell of each row, from the struct of its values (v0, v1, … in that order)
Rewrite = Callable[[list[str]], Callable[[pa.Array], Cells]]
MAX_KEY_ORDERS = 32  # key orders a batch's counters are matched against; rows beyond go to Python


def _rewritten(stored: pa.Array, rewrite: Rewrite | None, python: Callable[[Any], str]) -> Cells:
    """Counters text through `rewrite` (None: as stored) where they are a flat object of integers
    with distinct keys, one key order at a time; the others through `python`.

    Each round takes the first row not yet rendered: if it is flat, a pattern of its key order
    extracts the values of every row with that order (one regular expression, in C) and renders
    them; if not, that row goes to `python`. A batch rarely holds more than a few key orders.
    """
    result, pending = stored, pc.is_valid(stored)
    odd = pc.is_null(stored)
    for _ in range(MAX_KEY_ORDERS):
        rows = pc.indices_nonzero(pending)
        if len(rows) == 0:
            break
        first = rows[0].as_py()
        names = _flat_keys(stored[first].as_py())
        if names is None:
            odd = pc.replace_with_mask(odd, _one(len(stored), first), _TRUE)
            pending = pc.replace_with_mask(pending, _one(len(stored), first), _FALSE)
            continue
        candidates = stored.filter(pending)
        if names:
            values = pc.extract_regex(candidates, _key_order_pattern(names))
            hits = pc.is_valid(values)
        else:  # '{}': nothing to extract
            values, hits = pa.nulls(0, pa.struct([])), pc.equal(candidates, _text("{}"))
        matched = pc.replace_with_mask(pending, pending, hits)
        if rewrite is not None:
            cells = rewrite(names)(values.filter(hits) if names else pc.filter(candidates, hits))
            result = pc.replace_with_mask(result, matched, cells)
        pending = pc.and_(pending, pc.invert(matched))
    return _where(result, pc.or_(odd, pending), _python(python), stored)


def _one(size: int, row: int) -> pa.Array:
    """A mask of `size` rows with only `row` set."""
    return pc.equal(pa.array(range(size), pa.int64()), _int(row)) if size else _NO_ROWS


_TRUE, _FALSE, _NO_ROWS = (pa.array(values, pa.bool_()) for values in ([True], [False], []))


def _flat_keys(text: str) -> list[str] | None:
    """The keys of `text`, in order, if it is json.dumps' text of a flat object of integers with
    distinct keys the patterns can name; otherwise None."""
    if not re.fullmatch(_FLAT, text):
        return None
    names = [name for name, _ in json.loads(text, object_pairs_hook=list)]
    return names if len(set(names)) == len(names) else None


def _key_order_pattern(names: list[str]) -> str:
    """A pattern matching exactly the flat counters with keys `names` in this order, each value
    captured as v0, v1, …"""
    pairs = ", ".join(f'"{_literal(name)}": (?P<v{i}>{_INT})' for i, name in enumerate(names))
    return f"^\\{{{pairs}\\}}$"


def _literal(text: str) -> str:
    """`text` as a pattern that matches only itself."""
    return "".join(c if c.isalnum() or c == "_" else f"\\x{ord(c):02x}" for c in text)


def _sorted_compact(names: list[str]) -> Callable[[pa.Array], Cells]:
    """The cells of flat counters with keys `names` (in that order): sorted, compact, quoted."""

    def rewrite(values: pa.Array) -> Cells:
        if not names:
            return values  # '{}' as stored
        parts: list[Cells | str] = []
        for i, name in sorted(enumerate(names), key=lambda pair: pair[1]):
            parts += [('"{' if not parts else ",") + f'""{name}"":', pc.struct_field(values, i)]
        return join([*parts, '}"'])

    return rewrite


def _counters(stored: str | None) -> dict[str, Any]:
    return dict(json.loads(stored) or {}) if stored is not None else {}


def _sorted_compact_python(stored: str | None) -> str:
    counters = _counters(stored)
    return _csv_cell(compact_json(counters) if counters else "{}")


def _csv_cell(text: str) -> str:
    """`text` quoted as csv.writer quotes a cell (the kernels' _csv_quoted, in Python)."""
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\r\n') else text


def _dumped_python(stored: str | None) -> str:
    return json.dumps(_counters(stored))


_TEXT = ("job", "status", "trigger", "triggered_by", "current_step", "error_type", "error_message")
_INTEGERS = ("id", "total_records", "offset", "records_loaded", "records_rejected", "resumed_from")


Format = Callable[[pa.Array], Cells]


def _cells(
    batch: pa.RecordBatch, text: Format, counters: Format, times: Format
) -> dict[str, Cells]:
    """Every field's cells of the batch (RunRecord's fields), by name."""
    column = batch.column
    cells = {name: text(column(name)) for name in _TEXT}
    cells |= {name: integers(column(name)) for name in _INTEGERS}
    cells["start_date"] = times(column("started_at"))
    cells["end_date"] = times(column("ended_at"))
    cells["created_at"] = times(column("created_at"))
    cells["duration"] = durations(column("started_at"), column("ended_at"))
    cells["counters"] = counters(column("counters"))
    return cells


def csv_lines(batch: pa.RecordBatch, fields: Sequence[str]) -> bytes:
    """The batch's runs as CSV lines (csv.writer's bytes: QUOTE_MINIMAL, CRLF, None as '')."""
    cells = _cells(batch, csv_text, csv_counters, iso_times)
    columns = [cells[name] for name in fields]
    columns[-1] = join([columns[-1], "\r\n"], nulls="")
    return _bytes(join(columns, ",", nulls=""))


def json_records(batch: pa.RecordBatch, fields: Sequence[str]) -> bytes:
    """The batch's runs as json.dumps writes their records, each after ',\\n'."""
    cells = _cells(batch, json_text, json_counters, _json_times)
    parts: list[Cells | str] = []
    for i, name in enumerate(fields):
        parts.append((",\n{" if i == 0 else ", ") + json.dumps(name) + ": ")
        parts.append(cells[name])
    parts.append("}")
    return _bytes(join(parts, nulls="null"))


def _json_times(times: pa.Array) -> Cells:
    return join(['"', iso_times(times), '"'])


def _bytes(lines: pa.Array) -> bytes:
    """The concatenated values of a string array: its data buffer, copied once."""
    if len(lines) == 0:
        return b""
    _, offsets, data = lines.buffers()
    bounds = memoryview(offsets).cast("i")  # int32 value offsets
    start, end = bounds[lines.offset], bounds[lines.offset + len(lines)]
    return bytes(memoryview(data)[start:end])
