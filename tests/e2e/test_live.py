"""The Live page in a real browser: Run now, live progress, toast, pause."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import AppServer, wait_for_app

pytestmark = pytest.mark.e2e


def test_home_opens_in_browser(app_server: AppServer, page: Any) -> None:
    page.goto(app_server.url)
    wait_for_app(page)
    page.get_by_text("Runwatch").first.wait_for()
