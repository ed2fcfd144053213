"""An SSE client that follows the live feed through outages, resuming with Last-Event-ID."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import requests
from sseclient import SSEClient

RECONNECT_S = 0.5  # pause before reconnecting (the feed's own retry hint is 2 s)
READ_TIMEOUT_S = 30.0  # the feed sends a keep-alive every 15 s; silence beyond this is a dead link


class FollowingClient(threading.Thread):
    """Reads the feed until `stop()`, reconnecting with Last-Event-ID whenever the stream breaks."""

    def __init__(self, url: str, after: int) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.after = (
            after  # the first connection resumes after this id: nothing before it is missed
        )
        self.ids: list[int] = []
        self.connections = 0
        self.failures: list[str] = []  # why each stream ended early, for a failing assertion
        self.stopping = threading.Event()
        self.response: requests.Response | None = None

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self._follow()
            except Exception as error:  # a dropped stream fails in many ways inside requests
                self.failures.append(type(error).__name__)
            if not self.stopping.is_set():
                time.sleep(RECONNECT_S)

    def _follow(self) -> None:
        headers = {
            "Accept": "text/event-stream",
            "Last-Event-ID": str(self.ids[-1] if self.ids else self.after),
        }
        self.response = requests.get(
            self.url, stream=True, headers=headers, timeout=(5, READ_TIMEOUT_S)
        )
        self.connections += 1
        if self.response.status_code != 200:
            self.failures.append(f"HTTP {self.response.status_code}")
            return
        for event in SSEClient(self.response.iter_content(chunk_size=None)).events():
            if event.id:
                self.ids.append(int(event.id))
        self.failures.append("stream ended")

    def drop(self) -> None:
        """Break the current connection, as a network blip would; the client reconnects.

        The socket is shut down rather than the response closed: closing waits for the reading
        thread, which may sit in a read until the next keep-alive 15 s later.
        """
        connection = getattr(self.response and self.response.raw, "connection", None)
        sock = getattr(connection, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        """End the client: no more reconnects, and the current stream closed."""
        self.stopping.set()
        self.drop()
