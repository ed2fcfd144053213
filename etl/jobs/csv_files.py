"""The files of the csv_import job: header checks, cheap record counts, decoding errors."""

from __future__ import annotations

import codecs
from functools import partial
from typing import Any

from etl.jobs.base import JobError

MAX_NAME_BYTES = 63  # PostgreSQL cuts longer identifiers short


def header_problem(columns: tuple[str, ...], params: dict[str, Any]) -> str | None:
    """What is wrong with a header, if anything."""
    if "" in columns:
        return f"column {columns.index('') + 1} of the header has no name"
    nul = [name for name in columns if "\x00" in name]
    if nul:  # PostgreSQL refuses it in any text, names and messages too
        return f"column name(s) {', '.join(map(repr, nul))} hold a NUL character"
    twice = sorted({name for name in columns if columns.count(name) > 1})
    if twice:
        return f"the header names {quoted(twice)} more than once"
    long = [name for name in columns if len(name.encode()) > MAX_NAME_BYTES]
    if long:
        return f"column name(s) {quoted(long)} are longer than {MAX_NAME_BYTES} bytes"
    lacking = [name for name in params["key"] if name not in columns]
    if lacking:
        return f"the header lacks the key column(s) {quoted(lacking)} (it has {quoted(columns)})"
    untyped = [name for name in params["types"] if name not in columns]
    if untyped:
        return f"the header lacks column(s) {quoted(untyped)} named in 'types'"
    return None


def quoted(names: Any) -> str:
    """Names in single quotes, comma-separated, for messages."""
    return ", ".join(f"'{name}'" for name in names)


def ascii_compatible(codec: str) -> bool:
    """Whether line ends and quotes are the same bytes in `codec` as in ASCII."""
    sample = '\r\n"'
    try:
        return sample.encode(codec) == sample.encode("ascii")
    except UnicodeError:
        return False


def count_plain_lines(file: str) -> int | None:
    """Records in `file` counted by line ends, or None if quotes, blank lines or lone CRs are in it."""
    lines, last = 0, b"\n"
    try:
        with open(file, "rb") as handle:
            # Each chunk ends at a line end, so no pattern below is cut in two.
            while chunk := handle.read(1 << 20) + handle.readline():
                if b'"' in chunk or chunk.startswith((b"\n", b"\r\n")) or b"\n\n" in chunk:
                    return None
                if b"\n\r\n" in chunk or chunk.count(b"\r") != chunk.count(b"\r\n"):
                    return None
                lines += chunk.count(b"\n")
                last = chunk[-1:]
    except OSError as error:
        raise JobError(f"Cannot read {file}: {error.strerror or error}.") from None
    lines += last != b"\n"  # the last line has no line end
    return max(lines - 1, 0)


def decode_problem(file: str, encoding: str, codec: str, error: UnicodeDecodeError) -> str:
    """A message naming the file, the line and the bytes that are not valid in the encoding."""
    bad = error.object[error.start : error.end].hex(" ")
    line = _undecodable_line(file, codec)
    where = f"line {line} has" if line else "it has"
    return f"{file} is not valid {encoding}: {where} bytes that cannot be decoded ({bad})."


def _undecodable_line(file: str, codec: str) -> int | None:
    """The line of the first byte `codec` cannot decode (counting line feeds)."""
    decoder = codecs.getincrementaldecoder(codec)()
    line = 1
    with open(file, "rb") as handle:
        for chunk in iter(partial(handle.read, 1 << 16), b""):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as error:
                return line + chunk[: max(error.start, 0)].count(b"\n")
            line += chunk.count(b"\n")
    return None
