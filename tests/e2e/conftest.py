"""Browser test harness: a real `streamlit run Home.py` on a free port, and Chromium driven by Playwright."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from db.engine import dispose_engines, get_engine
from db.migrate import init_db

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The README's screenshots are refreshed only on request (`make screenshots`); an ordinary test run
# still takes them, into a scratch folder, so the tracked PNGs stay as committed.
SCREENSHOTS = Path(
    os.environ.get("RUNWATCH_SCREENSHOT_DIR")
    or Path(tempfile.gettempdir()) / "runwatch-screenshots"
)
STARTUP_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class AppServer:
    """A running Streamlit app: where to browse and which database it uses."""

    url: str
    database_url: str


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip the browser tests, with the reason, where there is no system Chromium."""
    if os.access(CHROMIUM, os.X_OK):
        return
    skip = pytest.mark.skip(reason=f"no {CHROMIUM}: install Debian's chromium (make test does)")
    for item in items:
        if "e2e" in item.keywords:
            item.add_marker(skip)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return bool(response.read().decode().strip() == "ok")
    except OSError:
        return False


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"streamlit exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        if _healthy(url):
            return
        time.sleep(0.3)
    pytest.fail(f"streamlit did not become healthy at {url}:\n{log.read_text()[-3000:]}")


def app_environment(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of the app process: the test database and fast bookkeeping."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNWATCH_")}
    env.update(
        RUNWATCH_DATABASE_URL=database_url,
        RUNWATCH_HEARTBEAT_S="1",
        RUNWATCH_PROGRESS_INTERVAL_S="0.2",
        RUNWATCH_WORKER_POLL_S="0.3",
        STREAMLIT_BROWSER_GATHER_USAGE_STATS="false",
    )
    env.update(extra)
    return env


@pytest.fixture
def app_env() -> dict[str, str]:
    """Extra RUNWATCH_* variables for the app process; override in a test module to change them."""
    return {}


@pytest.fixture
def app_server(tmp_path: Path, app_env: dict[str, str]) -> Iterator[AppServer]:
    """`streamlit run Home.py` on a free loopback port over a fresh, migrated SQLite database."""
    database_url = f"sqlite:///{tmp_path / 'runwatch.db'}"
    init_db(get_engine(database_url))
    dispose_engines()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "streamlit.log"
    command = [
        str(Path(sys.executable).with_name("streamlit")),
        "run",
        "Home.py",
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--browser.gatherUsageStats",
        "false",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=app_environment(database_url, **app_env), stdout=out, stderr=out
        )
    try:
        _wait_healthy(url, process, log)
        yield AppServer(url=url, database_url=database_url)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless system Chromium for the whole test session."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser tab (own context, UTC time zone) with generous default timeouts."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, timezone_id="UTC")
    context.set_default_timeout(30_000)
    tab = context.new_page()
    yield tab
    context.close()


def screenshot(page: Any, name: str) -> Path:
    """Save a small PNG of the visible page as <name>.png (docs/screenshots/ under `make screenshots`)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False, scale="css", animations="disabled")
    return path


def poll(check: Any, timeout_s: float = 90.0, every_s: float = 0.25) -> Any:
    """Call `check` until it returns something truthy; fail after a generous timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(every_s)
    pytest.fail(f"gave up waiting after {timeout_s} s for {check}")


def wait_for_app(page: Any) -> None:
    """Wait until Streamlit has finished running the page script."""
    page.wait_for_selector('[data-testid="stApp"]')
    page.wait_for_function(
        # both running icons (the plain one and the "running man" variant) mean a rerun is under way
        "() => !document.querySelector('[data-testid^=\"stStatusWidgetRunning\"]')"
    )
