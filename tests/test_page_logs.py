"""The Logs page, run headless with AppTest: cursor reads, filters, order and the log download."""

from __future__ import annotations

import html
import re

import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from db.queries import append_event, list_events, read_session, write_session
from reports.logs import stream_log
from tests.factories import make_run
from tests.pages import run_page


def logs_page() -> AppTest:
    """The Logs page, run once."""
    return run_page("pages/3_Logs.py")


ROW = re.compile(r"<tr style='color:([^']*)' data-level='(\w+)'>(.*?)</tr>")
CELL = re.compile(r"<td[^>]*>(.*?)</td>")


def shown(at: AppTest) -> list[tuple[str, str, str]]:
    """The log rows shown, top to bottom: (colour, level, message)."""
    tables = [element.proto.body for element in at.get("html")]
    rows = ROW.findall(tables[0]) if tables else []
    return [
        (colour, level, html.unescape(CELL.findall(cells)[-1])) for colour, level, cells in rows
    ]


def messages(at: AppTest) -> list[str]:
    """The messages shown, top to bottom."""
    return [message for *_, message in shown(at)]


def log(engine: sa.Engine, run_id: int, message: str, level: str = "INFO") -> None:
    with write_session(engine) as session:
        append_event(session=session, run_id=run_id, message=message, level=level)


@pytest.fixture
def run_id(engine: sa.Engine) -> int:
    """A run with three log lines: one per level from INFO to ERROR."""
    with write_session(engine) as session:
        run = make_run(session)
    assert run.id is not None
    for level in ("INFO", "WARNING", "ERROR"):
        log(engine, run.id, f"{level.lower()} line", level)
    return run.id


def test_logs_empty_state(engine: sa.Engine, no_worker: None) -> None:
    at = logs_page()
    assert "No log lines yet" in at.info[0].value


def test_logs_show_new_lines_after_a_rerun(engine: sa.Engine, no_worker: None, run_id: int) -> None:
    at = logs_page()
    assert messages(at) == ["error line", "warning line", "info line"]
    cursor = at.session_state["logs_cursor"]
    log(engine, run_id, "fresh <b>line</b> & more")
    at.run()
    assert not at.exception
    assert messages(at)[0] == "fresh <b>line</b> & more"  # shown as text, never as markup
    assert at.session_state["logs_cursor"] > cursor


def test_logs_newest_last_order(engine: sa.Engine, no_worker: None, run_id: int) -> None:
    at = logs_page()
    at.radio(key="logs_order").set_value("Newest last").run()
    assert messages(at) == ["info line", "warning line", "error line"]


def test_logs_level_and_text_filters(engine: sa.Engine, no_worker: None, run_id: int) -> None:
    at = logs_page()
    colours = {level: colour for colour, level, _ in shown(at)}
    assert colours["ERROR"] == "#dc2626" and colours["WARNING"] != colours["INFO"]
    at.selectbox(key="logs_level").set_value("WARNING").run()
    assert messages(at) == ["error line", "warning line"]
    at.text_input(key="logs_text").set_value("warn").run()
    assert messages(at) == ["warning line"]


def test_logs_run_choice_and_pause(engine: sa.Engine, no_worker: None, run_id: int) -> None:
    with write_session(engine) as session:
        other = make_run(session)
    assert other.id is not None
    log(engine, other.id, "other run")
    at = logs_page()
    at.selectbox(key="logs_run").set_value(run_id).run()
    assert "other run" not in messages(at) and len(messages(at)) == 3
    at.toggle(key="logs_follow").set_value(False).run()
    log(engine, run_id, "while paused")
    at.run()
    assert "while paused" not in messages(at)


def test_download_log_streams_the_whole_run(engine: sa.Engine, run_id: int) -> None:
    for n in range(25):
        log(engine, run_id, f"bulk {n}")
    text = b"".join(stream_log(engine, run_id=run_id, chunk=10)).decode()
    lines = text.splitlines()
    assert len(lines) == 28 and lines[0].endswith("info line") and lines[-1].endswith("bulk 24")
    assert "ERROR" in lines[2] and "+00:00" in lines[0]


def test_logs_database_down_banner(database_down: None) -> None:
    at = logs_page()
    assert "The database cannot be reached" in at.error[0].value


def test_log_lines_are_the_events_without_their_data(engine: sa.Engine, run_id: int) -> None:
    with read_session(engine) as session:
        events = list_events(session=session, after_id=1, min_level="WARNING", newest_first=True)
        lines = list_events(
            session=session, after_id=1, min_level="WARNING", newest_first=True, with_data=False
        )
    assert [line[:-1] for line in lines] == [event[:-1] for event in events]
    assert all(line.data is None for line in lines)
    assert lines[0].message == "error line" and lines[0].run_id == run_id


def test_a_search_without_matches_says_nothing_matched(
    engine: sa.Engine, no_worker: None, run_id: int
) -> None:
    at = logs_page()
    at.text_input(key="logs_text").set_value("warn").run()
    assert "Showing the newest 1 matching line (" in "\n".join(c.value for c in at.caption)
    at.text_input(key="logs_text").set_value("no such words").run()
    assert not at.exception
    assert at.info[0].value.startswith("No log line matches “no such words”")
    assert "start a run" not in at.info[0].value
