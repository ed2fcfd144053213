"""The Statistics page, run headless with AppTest on a small seeded history (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from db.queries import write_session
from tests.factories import make_run
from tests.pages import run_page, texts
from tests.test_reports_stats import (
    DAY0,
    DAY1,
    HISTORY,
    history as history,  # noqa: F401  (the seeded-history fixture)
)


def statistics() -> AppTest:
    """The Statistics page, run once."""
    return run_page("pages/2_Statistics.py")


def cards(at: AppTest) -> dict[str, str]:
    """The summary cards, label -> value."""
    return {m.label: m.value for m in at.metric}


def test_statistics_cards_match_hand_computed_values(
    engine: sa.Engine, no_worker: None, history: list[int]
) -> None:
    at = statistics()
    assert cards(at) == {
        "Runs": "11",
        "Success rate": "60.0 %",  # 6 finished of 10 finished or failed
        "Median duration": "35s",  # finished 10, 20, 30, 40, 60, 100
        "p90 duration": "1m 20s",
        "Records": "3,250",
        "Mean time to recovery": "2h 30m",  # (7225 s + 10890 s) / 2
    }
    assert len(at.get("vega_lite_chart")) == 4


def test_highlights_list_failed_runs_and_runs_slow_per_record(
    engine: sa.Engine, no_worker: None, history: list[int]
) -> None:
    with write_session(engine) as session:  # 10 records in 5 s: 0.5 s each, demo's others 0.1 s
        started = DAY1 + timedelta(hours=7)
        ended = started + timedelta(seconds=5)
        small = make_run(session, job="demo", started_at=started, ended_at=ended, records_loaded=10)
    table = statistics().table[0].value
    # run 9, the longest (100 s), loaded 1,000 records at demo's usual 0.1 s each: not slow
    assert table["Run"].tolist() == [small.id, *(history[i - 1] for i in (8, 11, 4, 3))]
    why = "slower than demo's p90 (300.0 ms per record; this run 500.0 ms)"
    assert table["Why"].tolist() == [why, *["failed"] * 4]


def test_job_choice_narrows_the_statistics(
    engine: sa.Engine, no_worker: None, history: list[int]
) -> None:
    at = statistics()
    at.selectbox(key="statistics_job").set_value("csv_import").run()
    assert not at.exception
    assert cards(at)["Runs"] == "2" and cards(at)["Mean time to recovery"] == "—"


def test_custom_range_of_one_day(engine: sa.Engine, no_worker: None, history: list[int]) -> None:
    at = statistics()
    at.get("button_group")[0].set_value("custom").run()
    assert "Pick the first and the last day" in texts(at)
    at.date_input(key="statistics_custom").set_value((DAY0.date(), DAY0.date())).run()
    assert not at.exception
    assert cards(at)["Runs"] == str(sum(1 for row in HISTORY if row[2].date() == DAY0.date()))


def test_empty_range_says_what_to_do(
    engine: sa.Engine, no_worker: None, history: list[int]
) -> None:
    at = statistics()
    at.get("button_group")[0].set_value("24 h").run()
    assert not at.exception
    assert "No runs in this time range" in texts(at)


def test_unreachable_database_shows_a_banner(database_down: None) -> None:
    at = statistics()
    assert "cannot be reached" in "\n".join(e.value for e in at.error)


def test_duration_chart_draws_the_p50_and_p90_lines(
    engine: sa.Engine, no_worker: None, history: list[int]
) -> None:
    chart = statistics().get("vega_lite_chart")[0].proto
    drawn = chart.spec + "".join(str(d) for d in chart.datasets)
    assert "p50 35.0 s" in drawn and "p90 80.0 s" in drawn
