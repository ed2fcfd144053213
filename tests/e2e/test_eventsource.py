"""A browser's EventSource, on a page from another origin, receives the live feed (CORS)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa

from db.queries import create_run, write_session
from db.settings import Settings
from etl.worker import Worker
from tests.apiserver import running_api

pytestmark = pytest.mark.e2e

PAGE = """<!doctype html>
<html><head><title>feed</title></head><body><ol id="log"></ol><script>
window.received = [];
window.opened = false;
window.source = new EventSource("%(api)s/api/etl/logs/realtime?job=demo");
window.source.onopen = () => { window.opened = true; };
window.source.onerror = () => { window.refused = window.source.readyState === EventSource.CLOSED; };
window.source.addEventListener("run", (event) => {
  const run = JSON.parse(event.data);
  window.received.push({id: Number(event.lastEventId), status: run.status, offset: run.offset});
  const item = document.createElement("li");
  item.textContent = `#${event.lastEventId} ${run.status} ${run.offset}`;
  document.getElementById("log").appendChild(item);
});
</script></body></html>
"""


@contextmanager
def page_server(html: dict[str, str]) -> Iterator[str]:
    """A tiny http.server on its own loopback port (another origin) serving `html["page"]`."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html["page"].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_eventsource_on_another_origin_receives_a_runs_events(
    page: Any, engine: sa.Engine, settings: Settings
) -> None:
    html: dict[str, str] = {}
    with page_server(html) as origin:
        allowed = settings.model_copy(update={"cors_origins": origin})
        with running_api(settings=allowed) as api:
            html["page"] = PAGE % {"api": api}
            page.goto(f"{origin}/")
            page.wait_for_function("window.opened === true")
            with write_session(engine) as session:
                create_run(session=session, job="demo", params={"total": 300, "batch_size": 30})
            worker = threading.Thread(target=Worker(engine, settings).run_once, daemon=True)
            worker.start()
            page.wait_for_function(
                "window.received.some((r) => r.status === 'finished')", timeout=120_000
            )
            received = page.evaluate("window.received")
            page.evaluate("window.source.close()")
            worker.join(120)
    ids = [r["id"] for r in received]
    assert ids == sorted(set(ids))
    assert [r["status"] for r in received][0] == "pending"
    assert received[-1] == {"id": ids[-1], "status": "finished", "offset": 300}
    offsets = [r["offset"] for r in received]
    assert offsets == sorted(offsets)


def test_an_origin_not_allowed_cannot_open_the_feed(
    page: Any, engine: sa.Engine, settings: Settings
) -> None:
    html: dict[str, str] = {}
    with page_server(html) as origin:
        elsewhere = settings.model_copy(update={"cors_origins": "http://127.0.0.1:1"})
        with running_api(settings=elsewhere) as api:
            html["page"] = PAGE % {"api": api}
            page.goto(f"{origin}/")
            page.wait_for_function("window.refused === true")
            assert page.evaluate("window.opened") is False
