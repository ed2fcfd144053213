"""The ETA range: hand-computed figures from past throughput and the current run's pace."""

from __future__ import annotations

import pytest

from reports.eta import UNKNOWN, Eta, estimate, percentile, throughput


def test_percentile_interpolates_between_order_statistics() -> None:
    assert percentile([4, 1, 3, 2], 0.5) == 2.5
    # position 0.9 * 3 = 2.7 -> 3 + 0.7 * (4 - 3)
    assert percentile([1, 2, 3, 4], 0.9) == pytest.approx(3.7)
    assert percentile([7], 0.9) == 7


def test_eta_is_unknown_without_history() -> None:
    assert estimate(done=10, total=100, elapsed_s=1, history=[]) == UNKNOWN
    assert not UNKNOWN.known


def test_eta_is_unknown_without_a_total() -> None:
    assert estimate(done=10, total=None, elapsed_s=1, history=[100.0]) == UNKNOWN


def test_eta_at_the_start_is_history_alone() -> None:
    # paces 1/100, 1/50, 1/25 s per record: median 0.02, p90 0.02 + 0.8 * 0.02 = 0.036
    eta = estimate(done=0, total=1000, elapsed_s=0, history=[100.0, 50.0, 25.0])
    assert eta.low_s == pytest.approx(1000 * 0.02)
    assert eta.high_s == pytest.approx(1000 * 0.036)


def test_eta_is_corrected_by_the_current_runs_pace() -> None:
    # history pace 0.01 s/record (100/s); the run did 500 of 1000 in 10 s: pace 0.02.
    # weight 0.5: corrected pace 0.5 * 0.01 + 0.5 * 0.02 = 0.015, factor 1.5, 500 left.
    eta = estimate(done=500, total=1000, elapsed_s=10, history=[100.0])
    assert eta == Eta(pytest.approx(7.5), pytest.approx(7.5))


def test_eta_range_scales_the_slow_pace_by_the_same_correction() -> None:
    # paces 0.01 and 0.02: median 0.015, p90 0.019; run at 250/1000 in 2.5 s: pace 0.01.
    # corrected 0.75 * 0.015 + 0.25 * 0.01 = 0.01375, factor 0.91666..., 750 left.
    eta = estimate(done=250, total=1000, elapsed_s=2.5, history=[100.0, 50.0])
    assert eta.low_s == pytest.approx(750 * 0.01375)
    assert eta.high_s == pytest.approx(750 * 0.019 * 0.01375 / 0.015)


def test_eta_of_a_complete_run_is_zero() -> None:
    assert estimate(done=1000, total=1000, elapsed_s=5, history=[100.0]) == Eta(0.0, 0.0)


def test_throughput_ignores_runs_it_cannot_measure() -> None:
    assert throughput(1000, 10.0) == 100.0
    assert throughput(1000, 0) is None
    assert throughput(0, 10.0) is None
    assert throughput(10, None) is None
