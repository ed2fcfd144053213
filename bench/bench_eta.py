"""ETA accuracy: replay synthetic runs and score the estimate at 10%, 25% and 50% of each.

    python -m bench.bench_eta [--runs 1000] [--seed 1]

Each scenario draws `--runs` runs of 2,000 records in batches of 50 (the demo job's shape), each
against a history of five earlier runs of its job (as noisy as it; the pace of any run differs by
about 10% from the usual one). For each reading the
error is |predicted end - actual end| as a share of the run's duration, and a hit is an actual end
inside the range. Baseline: the previous estimator (history weighed by progress alone, p50-p90
range, the run's plain rate without history). The figures are exact replays: no timing, no noise
from the machine. Goals: median error at 25% <= 5% on steady paces, <= 10% over all scenarios,
the range holding the actual end in >= 80% of readings.
"""

from __future__ import annotations

import argparse
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reports.eta import Pace, estimate, percentile

RECORDS, BATCH = 2000, 50
BASE_PACE = 0.0012  # seconds per record: the demo job's 60 ms per batch of 50
RUN_SPREAD = 0.1  # log-pace spread from run to run
HISTORY_RUNS = 5
READINGS = (0.10, 0.25, 0.50)
STEADY = ("as usual", "2x slower", "2x faster", "no history")
GOALS = {"steady_25": 0.05, "overall_25": 0.10, "in_range": 0.80}


@dataclass(frozen=True)
class Scenario:
    """How a synthetic run differs from its history."""

    name: str
    factor: float = 1.0  # its pace against the history's
    change_at: float | None = None  # share of records after which its pace changes
    change: float = 1.0  # by this factor
    noise: float = 0.1  # log-pace spread of its batches
    history: bool = True


SCENARIOS = (
    Scenario("as usual"),
    Scenario("2x slower", factor=2.0),
    Scenario("2x faster", factor=0.5),
    Scenario("slows 1.5x at 50%", change_at=0.5, change=1.5),
    Scenario("noisy batches", noise=0.5),
    Scenario("no history", history=False),
)


@dataclass(frozen=True)
class Reading:
    """One estimate of one run: its error as a share of the duration, and whether the range held."""

    scenario: str
    share: float
    error: float | None  # None when no estimate was given
    hit: bool


Estimator = Callable[[Sequence[float], Sequence[float], float], tuple[float, float, float] | None]


def synthetic_run(scenario: Scenario, rng: random.Random) -> tuple[list[float], list[float]]:
    """The run's batch durations and its history's throughputs (records/s): earlier runs of the
    same job, as noisy as it, at the usual pace."""
    usual = Scenario("history", noise=scenario.noise)
    past = [sum(_batches(usual, rng)) for _ in range(HISTORY_RUNS)] if scenario.history else []
    return _batches(scenario, rng), [RECORDS / seconds for seconds in past]


def _batches(scenario: Scenario, rng: random.Random) -> list[float]:
    """Batch durations of one run: its pace, drawn around the usual one, changed and jittered."""
    pace = BASE_PACE * scenario.factor * rng.lognormvariate(0, RUN_SPREAD)
    batches = []
    for start in range(0, RECORDS, BATCH):
        changed = scenario.change_at is not None and start >= scenario.change_at * RECORDS
        factor = scenario.change if changed else 1.0
        noise = rng.lognormvariate(-(scenario.noise**2) / 2, scenario.noise)  # mean 1
        batches.append(BATCH * pace * factor * noise)
    return batches


def current(
    batches: Sequence[float], history: Sequence[float], _: float
) -> tuple[float, float, float] | None:
    """Runwatch's estimator after `batches`: (likely, early, late) seconds to go."""
    pace, at = Pace(), 0.0
    for seconds in batches:
        at += seconds
        pace = pace.add(BATCH, seconds, at)
    return estimate(remaining=RECORDS - BATCH * len(batches), pace=pace, history=history).seconds


def previous(
    batches: Sequence[float], history: Sequence[float], elapsed: float
) -> tuple[float, float, float] | None:
    """The estimator before this one (the baseline): history weighed by progress alone."""
    done = BATCH * len(batches)
    remaining, rate = RECORDS - done, done / elapsed
    paces = [1 / r for r in history]
    if not paces:  # the status endpoint fell back on the run's plain rate
        return remaining / rate, remaining / rate, remaining / rate
    typical, slow = percentile(paces, 0.5), percentile(paces, 0.9)
    weight = done / RECORDS
    factor = ((1 - weight) * typical + weight / rate) / typical
    return remaining * typical * factor, remaining * typical * factor, remaining * slow * factor


def replay(estimator: Estimator, runs: int, seed: int) -> list[Reading]:
    """Every reading of `runs` runs of every scenario."""
    readings = []
    for number, scenario in enumerate(SCENARIOS):
        rng = random.Random(seed * 1000 + number)
        for _ in range(runs):
            batches, history = synthetic_run(scenario, rng)
            readings += [_read(scenario, batches, history, share, estimator) for share in READINGS]
    return readings


def _read(
    scenario: Scenario,
    batches: list[float],
    history: list[float],
    share: float,
    estimator: Estimator,
) -> Reading:
    seen = batches[: round(share * len(batches))]
    at, duration = sum(seen), sum(batches)
    eta = estimator(seen, history, at)
    if eta is None:
        return Reading(scenario.name, share, None, False)
    likely, early, late = eta
    return Reading(
        scenario.name, share, abs(at + likely - duration) / duration, early <= duration - at <= late
    )


def median_error(readings: Sequence[Reading]) -> float:
    """Median error of the readings; a reading without an estimate counts as wholly wrong."""
    return statistics.median(1.0 if r.error is None else r.error for r in readings)


def in_range(readings: Sequence[Reading]) -> float:
    """Share of the readings whose range held the actual end."""
    return sum(r.hit for r in readings) / len(readings)


def goals(readings: Sequence[Reading]) -> dict[str, float]:
    """The three figures the goals are set on."""
    at_25 = [r for r in readings if r.share == 0.25]
    steady = [r for r in at_25 if r.scenario in STEADY]
    return {
        "steady_25": median_error(steady),
        "overall_25": median_error(at_25),
        "in_range": in_range(readings),
    }


def _ratio(new: float, old: float) -> str:
    return f"{new / old:5.2f}x" if old else "   - "


def _pick(readings: Sequence[Reading], scenario: str, share: float) -> list[Reading]:
    return [r for r in readings if r.scenario == scenario and r.share == share]


def _table(new: list[Reading], old: list[Reading]) -> None:
    print(f"{'scenario':<18} {'at':>4}  {'median error':>22}  {'in range':>20}")
    print(f"{'':<24}{'now':>6} {'before':>7} {'ratio':>7}  {'now':>5} {'before':>7}")
    for scenario in SCENARIOS:
        for share in READINGS:
            n, o = _pick(new, scenario.name, share), _pick(old, scenario.name, share)
            errors = median_error(n), median_error(o)
            print(
                f"{scenario.name:<18} {share:>4.0%}  {errors[0]:>6.1%} {errors[1]:>7.1%}"
                f" {_ratio(*errors):>7}  {in_range(n):>5.0%} {in_range(o):>7.0%}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs per scenario")
    parser.add_argument("--seed", type=int, default=1)
    # bench.all passes every script --size, --backend and --postgres-url: no use to a replay
    args, _ = parser.parse_known_args()
    if args.runs < 1:
        raise SystemExit("--runs must be at least 1")
    new, old = replay(current, args.runs, args.seed), replay(previous, args.runs, args.seed)
    print(f"eta: {args.runs} runs per scenario, {RECORDS:,} records in batches of {BATCH}")
    _table(new, old)
    now, before = goals(new), goals(old)
    for name, goal in GOALS.items():
        met = now[name] >= goal if name == "in_range" else now[name] <= goal
        print(
            f"{name:<11} {now[name]:6.1%}  baseline {before[name]:6.1%}"
            f"  ratio {_ratio(now[name], before[name])}  goal {goal:.0%}: {'met' if met else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
