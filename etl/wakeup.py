"""This process's workers, so a command can wake them at once instead of at their next poll, and a
test (or a shutdown) can stop every one of them.

Apart from etl.worker because the workers' scheduler enqueues through etl.commands, which wakes them.
"""

from __future__ import annotations

import weakref
from typing import Protocol


class Wakeable(Protocol):
    """Anything that looks for work when woken: a worker."""

    def wake(self) -> None: ...

    def stop(self) -> None: ...


_local_workers: weakref.WeakSet[Wakeable] = weakref.WeakSet()  # every worker of this process


def register(worker: Wakeable) -> None:
    """Wake `worker` with the others from now on (until it is garbage)."""
    _local_workers.add(worker)


def wake_local_workers() -> None:
    """Ask every worker of this process to look for pending runs now, not at its next poll."""
    for worker in list(_local_workers):
        worker.wake()


def stop_local_workers() -> None:
    """Ask every worker of this process to finish its current run and stop."""
    for worker in list(_local_workers):
        worker.stop()
