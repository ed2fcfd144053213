"""When will a run end: an ETA range from the job's past throughput, corrected by the current run.

Past successful runs give the time each record took (seconds per record, the inverse of their
throughput). The median of those is the typical pace, their 90th percentile the slow pace that 9 runs
in 10 beat. The current run's own pace replaces the typical one in proportion to how far it got, so
the estimate leans on history at the start and on what is happening now near the end; the slow pace
is scaled by the same correction. No history means the ETA is unknown.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Eta:
    """Seconds until the run ends: likely (`low_s`) to slow (`high_s`); None when unknown."""

    low_s: float | None
    high_s: float | None

    @property
    def known(self) -> bool:
        """Whether there was enough to estimate from."""
        return self.low_s is not None and self.high_s is not None


UNKNOWN = Eta(None, None)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th quantile (0..1), linearly interpolated between order statistics (like percentile_cont)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def throughput(records: int, seconds: float | None) -> float | None:
    """Records per second of a run, or None when it cannot be told."""
    if seconds is None or seconds <= 0 or records <= 0:
        return None
    return records / seconds


def estimate(
    *, done: int, total: int | None, elapsed_s: float | None, history: Sequence[float]
) -> Eta:
    """The ETA range of a run that did `done` of `total` records in `elapsed_s` seconds.

    `history` holds the throughputs (records/s) of the job's past successful runs.
    """
    paces = [1.0 / rate for rate in history if rate > 0]
    if total is None or not paces:
        return UNKNOWN
    remaining = max(total - done, 0)
    typical, slow = percentile(paces, 0.5), percentile(paces, 0.9)
    factor = _correction(done=done, total=total, elapsed_s=elapsed_s, typical=typical)
    return Eta(remaining * typical * factor, remaining * slow * factor)


def _correction(*, done: int, total: int, elapsed_s: float | None, typical: float) -> float:
    """How much slower (>1) or faster (<1) than typical the run is going, weighted by its progress."""
    rate = throughput(done, elapsed_s)
    if rate is None or total <= 0:
        return 1.0
    weight = min(done / total, 1.0)
    return ((1 - weight) * typical + weight / rate) / typical
