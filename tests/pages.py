"""Helpers for the AppTest page tests: run a page once and read its text."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

TIMEOUT_S = 60
ROOT = Path(__file__).resolve().parents[1]
DOWN_URL = "postgresql+psycopg://postgres@127.0.0.1:9/down"  # nothing listens on port 9


def run_page(path: str, query: dict[str, str] | None = None) -> AppTest:
    """The page at `path` (from the repository root), run once with these URL query parameters."""
    at = AppTest.from_file(str(ROOT / path), default_timeout=TIMEOUT_S)
    at.query_params.update(query or {})
    at.run()
    assert not at.exception
    return at


def texts(at: AppTest) -> str:
    """Every piece of text on the page, for substring checks."""
    parts = [e.value for e in (*at.markdown, *at.caption, *at.info, *at.warning, *at.success)]
    parts += [e.value for e in (*at.error, *at.subheader, *at.title)]
    return "\n".join(str(p) for p in parts)
