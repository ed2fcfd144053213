"""Every page in a real browser at 1440×900 and 1024×768: no text cut off, nothing scrolls sideways."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from db.engine import get_engine
from db.models import Run, utcnow
from db.queries import read_session, register_worker, write_session
from etl.seed import seed_history
from tests.e2e.conftest import AppServer, screenshot, wait_for_app
from ui.history import HISTORY_COLUMNS

pytestmark = pytest.mark.e2e

SIZES = ((1440, 900), (1024, 768))
WAIT_MS = 120_000  # the machine is shared and slow: wait generously, never assert on time
# Each page, what shows it has drawn its data, and the name of its screenshot. History lists the
# failed runs and opens the one with the longest error message ({run}).
PAGES = (
    ("", "Last successful run", "home"),
    ("History?status=failed&run={run}", "Run #{run}", "history"),
    ("Statistics", "Mean time to recovery", "statistics"),
    ("Logs", "matching lines", "logs"),
    ("Jobs", "Start a job from the Live page", "jobs"),
    ("Health", "Scheduler last tick", "health"),
)
# Text whose box is narrower than its content is cut off (ellipsis or hidden overflow), and text
# reaching past the main column is clipped or scrolled to. A metric's value and label are checked
# down to the element that holds the text (its ellipsis box sits inside the metric's own).
# The grids draw on a canvas: GRID reads them.
CUT_OFF = """() => {
  const main = document.querySelector('[data-testid="stMainBlockContainer"]').getBoundingClientRect();
  const text = '[data-testid="stMetricValue"], [data-testid="stMetricLabel"], '
    + '[data-testid="stMetricValue"] *, [data-testid="stMetricLabel"] *, h1, h2, h3, '
    + '[data-testid="stMarkdownContainer"] p, [data-testid="stCaptionContainer"], '
    + '[data-testid="stTable"] td, [data-testid="stTable"] th, [data-testid="stTable"], '
    + '[data-testid="stMain"]';
  return [...document.querySelectorAll(text)]
    .filter(el => el.offsetParent !== null)
    .filter(el => el.scrollWidth > el.clientWidth + 1
      || el.getBoundingClientRect().right > main.right + 1)
    .map(el => (el.getAttribute('data-testid') || el.tagName) + ': ' + el.innerText.slice(0, 60));
}"""

LOADED = """() => !document.querySelector('[data-testid="stSkeleton"]')"""

CELLS_DRAWN = """() => {
  const grid = document.querySelector('[data-testid="stDataFrame"]');
  return !!grid && !!grid.querySelector('td[role="gridcell"]')
    && !!grid.querySelector('th[role="columnheader"]');
}"""
# The first grid's full and visible widths, the columns it draws (it keeps an accessible table of
# the cells in view: a column scrolled out of view is not in it) and, for column `index` drawn
# `width` pixels wide (aria-colindex counts from 1, the checkboxes' column not), the most lines any of its cells in view needs, its words wrapped in the
# grid's font (14 px) between the cell's 8 px paddings.
GRID = """([index, width]) => {
  const grid = document.querySelector('[data-testid="stDataFrame"]');
  const scroller = grid.querySelector('.dvn-scroller');
  const context = document.createElement('canvas').getContext('2d');
  context.font = '14px ' + getComputedStyle(grid).fontFamily;
  const lines = text => {
    let count = 1, line = '';
    for (const word of text.split(' ')) {
      const longer = line ? line + ' ' + word : word;
      if (line && context.measureText(longer).width > width - 16) { count += 1; line = word; }
      else line = longer;
    }
    return count;
  };
  const cells = [...grid.querySelectorAll(`td[aria-colindex="${index + 1}"]`)];
  return {
    full: scroller.scrollWidth,
    visible: scroller.clientWidth,
    drawn: [...grid.querySelectorAll('th[role="columnheader"]')].map(th => th.innerText),
    lines: Math.max(0, ...cells.map(td => lines(td.innerText))),
    cells: cells.length,
  };
}"""


@pytest.fixture
def seeded(app_server: AppServer) -> AppServer:
    """The app over a week of seeded history, and a worker on another host lost two minutes ago."""
    engine = get_engine(app_server.database_url)
    seed_history(engine, days=7, runs_per_day=12, seed=3)
    with write_session(engine) as session:
        silent = utcnow() - timedelta(minutes=2)
        register_worker(
            session=session, name="w2:4242:worker:1", kind="worker", host="w2", pid=4242, now=silent
        )
    return app_server


def longest_error(database_url: str) -> tuple[int, str]:
    """The failed run with the longest error message, and the message."""
    with read_session(get_engine(database_url)) as session:
        length = sa.func.length(Run.error_message)
        query = sa.select(Run.id, Run.error_message).order_by(length.desc(), Run.id).limit(1)
        run_id, message = session.execute(query).one()
    return int(run_id), str(message)


def check_history_grid(page: Any) -> None:
    """The Error column is drawn whole without scrolling the grid sideways, and every message in
    view fits the three lines its wrapped rows hold."""
    widths = [int(column["width"]) for column in HISTORY_COLUMNS.values()]
    error = list(HISTORY_COLUMNS).index("Error")
    # the accessible table is drawn after the canvas, inside it (where locators do not look),
    # and its header row may come a moment after its cells
    page.wait_for_function(CELLS_DRAWN, timeout=WAIT_MS)
    grid = page.evaluate(GRID, [error, widths[error]])
    marker = grid["full"] - sum(widths)  # the checkboxes' column's width
    error_right = marker + sum(widths[: error + 1])
    assert "Error" in grid["drawn"], grid
    assert grid["full"] <= grid["visible"] + 1 or error_right <= grid["visible"] + 1, grid
    assert grid["cells"] and grid["lines"] <= 3, grid


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_no_page_cuts_text_off(seeded: AppServer, browser: Any, width: int, height: int) -> None:
    context = browser.new_context(viewport={"width": width, "height": height}, timezone_id="UTC")
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    failed, message = longest_error(seeded.database_url)
    try:
        for path, drawn, name in PAGES:
            page.goto(f"{seeded.url}/{path.format(run=failed)}")
            page.get_by_text(drawn.format(run=failed), exact=False).first.wait_for(timeout=WAIT_MS)
            wait_for_app(page)
            # lazily loaded widgets (grids, number inputs) draw a placeholder first
            page.wait_for_function(LOADED)
            screenshot(page, f"{name}-{width}")
            assert page.evaluate(CUT_OFF) == [], f"{name} at {width}×{height}"
            if name == "history":
                check_history_grid(page)
                # the run details show the whole message (CUT_OFF checked that it wraps)
                shown = page.locator('[data-testid="stMarkdownContainer"] p', has_text=message)
                shown.first.wait_for(timeout=WAIT_MS)
    finally:
        context.close()
