"""When will a run end: an ETA and its range, from the run's own pace weighed against its history.

Pace is seconds per record, handled as its logarithm (so 2x slower and 2x faster are equally far).
- The job's recent successful runs give the prior: their median pace, and how much runs differ
  (their p10-p90 spread, never taken as less than MIN_RUN_SPREAD).
- The run's own pace so far (its seconds over its records) is the evidence. It counts for more with
  every batch seen and for less the more unsteady the batches were: their spread is pooled with an
  assumed noisy one (START_SPREAD, worth START_BATCHES batches), so a noisy start is not believed.
- The two are combined as normal distributions, in a mixture with the case "this run is unlike its
  history" (UNUSUAL of runs, any pace in a wide band): a run plainly slower or faster than usual is
  believed after a few steady batches instead of being pulled back towards the history.
- Without history the run's own pace alone gives the ETA, once MIN_BATCHES batches are in.
The range is the 5th to 95th percentile of the remaining time: the uncertainty of the pace plus the
noise the remaining batches add, so it narrows as the run goes. The ETA counts down from the latest
batch's end; a batch under way that is clearly late counts as evidence too, so a stall makes it grow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from db.queries.stats import percentile_cont

START_SPREAD = 0.5  # log-pace spread assumed of a run's batches before they show their own
START_BATCHES = 2.0  # how many batches' worth that assumption counts for
MIN_RUN_SPREAD = 0.1  # runs of one job are never assumed to agree better than about 10%
UNUSUAL = 0.1  # prior share of runs unlike their history
UNUSUAL_WIDTH = 4.0  # log-pace band such a run may fall in (from 1/7x to 7x the usual pace)
MIN_BATCHES = 3  # batches a run without history needs before its own pace is trusted
LATE_BATCH = 2.0  # a batch under way this many times longer than the average is late
Z90 = 1.2816  # standard normal quantile of 0.9 (a history's p10-p90 spread is 2 * Z90 deviations)
Z95 = 1.6449  # standard normal quantile of 0.95: the range is p5-p95, 9 runs in 10 end in it


@dataclass(frozen=True)
class Eta:
    """Seconds until the run ends: likely (p50), early (p5) and late (p95); None when unknown."""

    likely_s: float | None
    early_s: float | None
    late_s: float | None

    @property
    def seconds(self) -> tuple[float, float, float] | None:
        """(likely, early, late), or None when unknown."""
        if self.likely_s is None or self.early_s is None or self.late_s is None:
            return None
        return self.likely_s, self.early_s, self.late_s


UNKNOWN = Eta(None, None, None)


@dataclass(frozen=True)
class Pace:
    """What a run has shown of its speed: batches, records and seconds so far, and how steady."""

    batches: int = 0
    records: int = 0
    seconds: float = 0.0  # from the run's start to the end of its latest batch
    log_mean: float = 0.0  # mean log(seconds per record) of the batches
    log_m2: float = 0.0  # sum of squared deviations from log_mean (Welford's running variance)

    def add(self, records: int, seconds: float, at_s: float) -> Pace:
        """This pace after one more batch: `records` in `seconds`, ending `at_s` after the start."""
        if records <= 0:
            return Pace(self.batches, self.records, at_s, self.log_mean, self.log_m2)
        value = math.log(max(seconds, 1e-9) / records)
        batches = self.batches + 1
        mean = self.log_mean + (value - self.log_mean) / batches
        m2 = self.log_m2 + (value - self.log_mean) * (value - mean)
        return Pace(batches, self.records + records, at_s, mean, m2)

    def as_dict(self) -> dict[str, Any]:
        """The pace as the run row stores it (JSON); vars, not asdict: it runs after every batch."""
        return dict(vars(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Pace:
        """The stored pace; an empty one (no batch seen) when missing or malformed."""
        try:
            return cls(**data) if data else cls()
        except TypeError:
            return cls()

    @property
    def batch_variance(self) -> float:
        """Relative variance of one batch's pace: the batches' own spread, pooled with the assumed
        noisy start (log-normal: a sum of batches varies by expm1 of their log variance)."""
        extra = max(self.batches - 1, 0)
        return math.expm1((START_BATCHES * START_SPREAD**2 + self.log_m2) / (START_BATCHES + extra))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th quantile (0..1), interpolated between order statistics (like percentile_cont)."""
    if not values:
        raise ValueError("percentile of no values")
    return percentile_cont(sorted(values), q)


def throughput(records: int, seconds: float | None) -> float | None:
    """Records per second of a run, or None when it cannot be told."""
    if seconds is None or seconds <= 0 or records <= 0:
        return None
    return records / seconds


Belief = tuple[float, float]  # mean and variance of a log pace


def estimate(
    *, remaining: int | None, pace: Pace, history: Sequence[float], waited_s: float = 0.0
) -> Eta:
    """The ETA of a run with `remaining` records to go, from its `pace` and the job's `history`.

    `history` holds the throughputs (records/s) of the job's recent successful runs; `waited_s` is
    how long ago the run's latest batch ended (the ETA counts from now).
    """
    if remaining is None:
        return UNKNOWN
    pace, remaining, waited_s = _late_batch(pace, remaining, waited_s)
    belief = _belief(pace, _prior(history))
    if belief is None:
        return UNKNOWN
    mean, variance = belief
    if pace.batches:  # the remaining batches' own noise averages out over their number
        per_batch = pace.records / pace.batches
        variance += pace.batch_variance / max(remaining / per_batch, 1.0)
    spread = Z95 * math.sqrt(variance)
    seconds = [remaining * math.exp(mean + z) - waited_s for z in (0.0, -spread, spread)]
    likely, early, late = (max(s, 0.0) for s in seconds)
    return Eta(likely, early, late)


def run_eta(
    *,
    total: int | None,
    offset: int,
    pace: Pace,
    started_at: datetime | None,
    now: datetime,
    history: Sequence[float],
) -> Eta:
    """The ETA of a stored run as of `now`: the one estimate the app, the API and the CLI show."""
    if total is None:
        return UNKNOWN
    waited = (now - started_at).total_seconds() - pace.seconds if started_at else 0.0
    return estimate(
        remaining=max(total - offset, 0), pace=pace, history=history, waited_s=max(waited, 0.0)
    )


def _late_batch(pace: Pace, remaining: int, waited_s: float) -> tuple[Pace, int, float]:
    """Count the batch under way as ending now once it is clearly late (over LATE_BATCH times the
    batches' average): a stall is evidence of a slower pace, not of an end about to come."""
    if not pace.batches or remaining <= 0 or waited_s <= LATE_BATCH * pace.seconds / pace.batches:
        return pace, remaining, waited_s
    records = min(max(round(pace.records / pace.batches), 1), remaining)
    return pace.add(records, waited_s, pace.seconds + waited_s), remaining - records, 0.0


def _prior(history: Sequence[float]) -> Belief | None:
    """The log pace the job's past runs suggest, and how much its runs differ."""
    paces = [-math.log(rate) for rate in history if rate > 0]
    if not paces:
        return None
    spread = (percentile(paces, 0.9) - percentile(paces, 0.1)) / (2 * Z90)
    # few runs tell little about how much runs differ: widen with their number
    variance = max(spread, MIN_RUN_SPREAD) ** 2 * (1 + 1 / len(paces))
    return percentile(paces, 0.5), variance


def _observed(pace: Pace) -> Belief | None:
    """The run's own log pace so far and how sure it is, or None before its first batch."""
    if pace.batches == 0 or pace.records <= 0 or pace.seconds <= 0:
        return None
    return math.log(pace.seconds / pace.records), pace.batch_variance / pace.batches


def _belief(pace: Pace, prior: Belief | None) -> Belief | None:
    """What the remaining records' log pace is believed to be: prior, evidence or both."""
    seen = _observed(pace)
    if seen is None:
        return prior
    if prior is None:
        return seen if pace.batches >= MIN_BATCHES else None
    return _combine(prior, seen)


def _combine(prior: Belief, seen: Belief) -> Belief:
    """Prior and evidence, weighed by the odds that the run is like its history at all."""
    (usual, v_prior), (own, v_seen) = prior, seen
    weight = v_prior / (v_prior + v_seen)  # the evidence's share when the run is a usual one
    mean_usual, v_usual = usual + weight * (own - usual), v_prior * (1 - weight)
    total = v_prior + v_seen
    likelihood = math.exp(-((own - usual) ** 2) / (2 * total)) / math.sqrt(2 * math.pi * total)
    odds = (1 - UNUSUAL) * likelihood
    usual_share = odds / (odds + UNUSUAL / UNUSUAL_WIDTH)
    mean = usual_share * mean_usual + (1 - usual_share) * own
    variance = usual_share * (v_usual + (mean_usual - mean) ** 2) + (1 - usual_share) * (
        v_seen + (own - mean) ** 2
    )
    return mean, variance
