"""The export's read-ahead thread (db.queries.arrow._read_ahead): order, errors, memory, stopping."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from typing import Any

import pytest

from db.queries.arrow import _read_ahead


def test_batches_come_in_order_and_a_reading_error_is_raised_to_the_caller() -> None:
    def batches() -> Generator[Any, None, None]:
        yield from range(3)
        raise RuntimeError("the database went away")

    got = []
    with pytest.raises(RuntimeError, match="went away"):
        for batch in _read_ahead(batches()):
            got.append(batch)
    assert got == [0, 1, 2]


def test_the_reader_reads_one_batch_ahead_of_the_caller_and_no_more() -> None:
    # each batch is a few MB: one queued while the next is read would hold a third for nothing
    read = []

    def batches() -> Generator[Any, None, None]:
        for i in range(5):
            read.append(i)
            yield i

    for batch in _read_ahead(batches()):
        time.sleep(0.05)  # the reader has all the time it wants to run ahead
        assert read[-1] <= batch + 1


def test_closing_early_stops_the_reader_and_closes_the_batches() -> None:
    closed = threading.Event()

    def batches() -> Generator[Any, None, None]:
        try:
            yield from range(1000)
        finally:
            closed.set()

    reader = _read_ahead(batches())
    assert next(reader) == 0
    reader.close()
    assert closed.wait(5)
    assert not any(t.name == "runwatch-export-read" for t in threading.enumerate())
