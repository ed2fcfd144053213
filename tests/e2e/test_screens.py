"""Every page in a real browser at 1440×900 and 1024×768: no text cut off, nothing scrolls sideways."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from db.engine import get_engine
from db.models import utcnow
from db.queries import register_worker, write_session
from etl.seed import seed_history
from tests.e2e.conftest import AppServer, screenshot, wait_for_app

pytestmark = pytest.mark.e2e

SIZES = ((1440, 900), (1024, 768))
WAIT_MS = 120_000  # the machine is shared and slow: wait generously, never assert on time
# Each page, what shows it has drawn its data, and the name of its screenshot.
PAGES = (
    ("", "Last successful run", "home"),
    ("History?run=5", "Run #5", "history"),
    ("Statistics", "Mean time to recovery", "statistics"),
    ("Logs", "matching lines", "logs"),
    ("Jobs", "Start a job from the Live page", "jobs"),
    ("Health", "Scheduler last tick", "health"),
)
# Text whose box is narrower than its content is cut off (ellipsis or hidden overflow), and text
# reaching past the main column is clipped or scrolled to. The grids draw on a canvas: not read.
CUT_OFF = """() => {
  const main = document.querySelector('[data-testid="stMainBlockContainer"]').getBoundingClientRect();
  const text = '[data-testid="stMetricValue"], [data-testid="stMetricLabel"], h1, h2, h3, '
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


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_no_page_cuts_text_off(seeded: AppServer, browser: Any, width: int, height: int) -> None:
    context = browser.new_context(viewport={"width": width, "height": height}, timezone_id="UTC")
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    try:
        for path, drawn, name in PAGES:
            page.goto(f"{seeded.url}/{path}")
            page.get_by_text(drawn, exact=False).first.wait_for(timeout=WAIT_MS)
            wait_for_app(page)
            # lazily loaded widgets (grids, number inputs) draw a placeholder first
            page.wait_for_function(LOADED)
            screenshot(page, f"{name}-{width}")
            assert page.evaluate(CUT_OFF) == [], f"{name} at {width}×{height}"
    finally:
        context.close()
