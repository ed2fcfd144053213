"""Real API servers for tests: uvicorn on a free loopback port, in a thread or in its own process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from db.engine import get_engine
from db.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_app(app: FastAPI) -> Iterator[str]:
    """Serve `app` with a real uvicorn server in a thread; yield its base URL, stop it at exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # bound before uvicorn starts, so no other test can take the port
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        if thread.is_alive():
            server.force_exit = True
            thread.join(15)
        sock.close()


@contextmanager
def running_api(
    database_url: str | None = None, *, settings: Settings | None = None
) -> Iterator[str]:
    """The Runwatch API on `database_url` (migrated already) in a real uvicorn server; yields its URL."""
    from api.app import create_app

    settings = settings or get_settings()
    if database_url is not None:
        settings = settings.model_copy(update={"database_url": database_url})
    app = create_app(get_engine(settings.database_url), settings)
    with running_app(app) as url:
        yield url


@dataclass
class ApiProcess:
    """A `runwatch serve-api` process: its base URL and process handle."""

    url: str
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.process.pid


@contextmanager
def api_process(database_url: str, env: dict[str, str] | None = None) -> Iterator[ApiProcess]:
    """`runwatch serve-api` in its own process on a free port; yields it once /health answers."""
    port = free_port()
    environ = {**os.environ, **(env or {}), "RUNWATCH_DATABASE_URL": database_url}
    command = [sys.executable, "-m", "etl", "serve-api", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(command, cwd=ROOT, env=environ, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process)
        yield ApiProcess(url=url, process=process)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(15)


def _wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"serve-api exited with code {process.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("serve-api did not answer /health in time")
