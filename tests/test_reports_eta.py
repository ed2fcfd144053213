"""The ETA: the run's own pace weighed against its history, on hand-built and replayed runs."""

from __future__ import annotations

import math
import statistics
from datetime import timedelta

import pytest

from bench.bench_eta import SCENARIOS, STEADY, Reading, current, goals, in_range, replay
from db.models import utcnow
from reports.eta import MIN_BATCHES, UNKNOWN, Eta, Pace, estimate, percentile, run_eta, throughput

HISTORY = [100.0, 100.0, 100.0, 100.0, 100.0]  # records/s: 0.01 s a record


def steady(batches: int, seconds_per_record: float, size: int = 50) -> Pace:
    """The pace of `batches` equal batches of `size` records."""
    pace = Pace()
    for n in range(1, batches + 1):
        pace = pace.add(size, size * seconds_per_record, n * size * seconds_per_record)
    return pace


def test_percentile_interpolates_between_order_statistics() -> None:
    assert percentile([4, 1, 3, 2], 0.5) == 2.5
    # position 0.9 * 3 = 2.7 -> 3 + 0.7 * (4 - 3)
    assert percentile([1, 2, 3, 4], 0.9) == pytest.approx(3.7)
    assert percentile([7], 0.9) == 7


def test_throughput_ignores_runs_it_cannot_measure() -> None:
    assert throughput(1000, 10.0) == 100.0
    assert throughput(1000, 0) is None
    assert throughput(0, 10.0) is None
    assert throughput(10, None) is None


def test_pace_keeps_the_mean_and_spread_of_its_batches() -> None:
    durations = [0.5, 0.7, 0.4, 0.9]
    pace, at = Pace(), 0.0
    for seconds in durations:
        at += seconds
        pace = pace.add(50, seconds, at)
    logs = [math.log(s / 50) for s in durations]
    assert (pace.batches, pace.records, pace.seconds) == (4, 200, pytest.approx(2.5))
    assert pace.log_mean == pytest.approx(statistics.mean(logs))
    assert pace.log_m2 / 3 == pytest.approx(statistics.variance(logs))


def test_an_empty_batch_moves_the_clock_but_is_no_evidence() -> None:
    assert Pace().add(0, 1.0, 3.0) == Pace(seconds=3.0)


def test_stored_pace_round_trips_and_a_malformed_one_is_empty() -> None:
    pace = steady(3, 0.01)
    assert Pace.from_dict(pace.as_dict()) == pace
    assert Pace.from_dict(None) == Pace.from_dict({"nope": 1}) == Pace()


def test_unknown_without_total_or_without_history_and_batches() -> None:
    assert estimate(remaining=None, pace=steady(5, 0.01), history=HISTORY) == UNKNOWN
    assert estimate(remaining=100, pace=Pace(), history=[]) == UNKNOWN
    assert UNKNOWN.seconds is None


def test_history_alone_gives_its_median_pace_and_a_range_around_it() -> None:
    eta = estimate(remaining=1000, pace=Pace(), history=[100.0, 50.0, 25.0])
    assert eta.likely_s == pytest.approx(1000 / 50)
    assert eta.early_s is not None and eta.late_s is not None
    assert eta.early_s < 1000 / 50 < eta.late_s


def test_without_history_the_runs_own_pace_gives_the_eta_after_a_few_batches() -> None:
    assert not estimate(remaining=1000, pace=steady(MIN_BATCHES - 1, 0.02), history=[]).seconds
    eta = estimate(remaining=1000, pace=steady(MIN_BATCHES, 0.02), history=[])
    assert eta.likely_s == pytest.approx(1000 * 0.02)


@pytest.mark.parametrize("factor", [2.0, 0.5])
def test_a_run_plainly_unlike_its_history_is_believed_within_a_few_batches(factor: float) -> None:
    eta = estimate(remaining=1500, pace=steady(6, 0.01 * factor), history=HISTORY)
    assert eta.likely_s == pytest.approx(1500 * 0.01 * factor, rel=0.02)


def test_a_noisy_start_is_not_believed() -> None:
    pace = Pace().add(50, 0.5, 0.5).add(50, 2.5, 3.0)  # 3x slower than history, but jumpy
    eta = estimate(remaining=1900, pace=pace, history=HISTORY)
    assert eta.likely_s is not None and eta.likely_s < 1900 * 0.03 * 0.5


def test_the_range_holds_the_likely_end_and_narrows_as_the_run_goes() -> None:
    widths = []
    for batches in (4, 10, 20, 36):
        likely, early, late = estimate(
            remaining=2000 - 50 * batches, pace=steady(batches, 0.02), history=HISTORY
        ).seconds or (0, 0, 0)
        assert early < likely < late
        widths.append(late - early)
    assert widths == sorted(widths, reverse=True)


def test_a_stalled_batch_makes_the_eta_grow_instead_of_reaching_zero() -> None:
    pace = steady(10, 0.01)  # 0.5 s a batch
    likely = [
        estimate(remaining=1500, pace=pace, history=HISTORY, waited_s=waited).likely_s
        for waited in (0.4, 10.0, 30.0)
    ]
    assert likely[0] == pytest.approx(15 - 0.4)  # on pace: counts down
    assert likely[0] < likely[1] < likely[2]


def test_eta_of_a_complete_run_is_zero() -> None:
    assert estimate(remaining=0, pace=steady(5, 0.01), history=HISTORY) == Eta(0.0, 0.0, 0.0)


def test_a_stored_run_counts_from_now_not_from_its_latest_batch() -> None:
    pace, now = steady(10, 0.01), utcnow()
    started = now - timedelta(seconds=pace.seconds + 0.8)  # latest batch (0.5 s) ended 0.8 s ago
    eta = run_eta(total=1000, offset=500, pace=pace, started_at=started, now=now, history=HISTORY)
    assert eta.likely_s == pytest.approx(500 * 0.01 - 0.8)
    assert run_eta(
        total=None, offset=0, pace=pace, started_at=started, now=now, history=HISTORY
    ) == (UNKNOWN)


@pytest.fixture(scope="module")
def replayed() -> list[Reading]:
    """The benchmark's replay of every scenario, smaller: 100 runs each."""
    return replay(current, runs=100, seed=7)


def test_replayed_scenarios_meet_the_error_goals(replayed: list[Reading]) -> None:
    figures = goals(replayed)
    assert figures["steady_25"] <= 0.05
    assert figures["overall_25"] <= 0.10


@pytest.mark.parametrize("scenario", [s.name for s in SCENARIOS if s.name in STEADY])
def test_the_range_holds_the_end_of_steady_runs(replayed: list[Reading], scenario: str) -> None:
    assert in_range([r for r in replayed if r.scenario == scenario]) >= 0.85


def test_the_range_of_noisy_runs_holds_their_end_most_of_the_time(replayed: list[Reading]) -> None:
    assert in_range([r for r in replayed if r.scenario == "noisy batches"]) >= 0.7
