"""A PostgreSQL cluster owned by one test: its own data directory and port, stopped and started at will.

Fault tests stop the database under a running worker; they cannot do that to the shared server on
5432, so each gets a cluster of its own (initdb into a temporary directory, trust auth, 127.0.0.1 on a
free port). PostgreSQL refuses to run as root, so when the tests run as root (CI does) every server
command runs as the `postgres` OS user, in a directory that user owns.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.apiserver import free_port

SERVER_USER = "postgres"
START_TIMEOUT_S = 60
# Durability is not under test here and fsync is slow on a shared disk; an immediate stop is a
# process crash, not a power cut, so the OS still holds every committed page.
SERVER_OPTIONS = "-c fsync=off -c full_page_writes=off -c shared_buffers=16MB -c max_connections=60"


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory, or None when there is none."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    return Path(found[-1]).parent if found else None


def _version(initdb: str) -> int:
    part = Path(initdb).parent.parent.name
    return int(part) if part.isdigit() else 0


class PgCluster:
    """One throwaway cluster: `init()` once, then `start()`, `stop()`, `restart()` as a test needs."""

    def __init__(self, bin_dir: Path, root: Path, port: int | None = None) -> None:
        self.bin_dir, self.root, self.port = bin_dir, root, port or free_port()
        self.data, self.log = root / "data", root / "server.log"

    def _command(self, tool: str, *args: str) -> list[str]:
        command = [str(self.bin_dir / tool), *args]
        if os.geteuid() == 0:  # the server will not run as root
            return ["runuser", "-u", SERVER_USER, "--", *command]
        return command

    def _run(self, tool: str, *args: str, timeout: float = START_TIMEOUT_S) -> None:
        done = subprocess.run(
            self._command(tool, *args), capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed: {done.stderr or done.stdout}")

    def init(self) -> PgCluster:
        """Create the data directory (user postgres, trust auth, UTF-8)."""
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8")
        return self

    def start(self, port: int | None = None) -> None:
        """Start the server on 127.0.0.1:`port` and wait until it accepts connections.

        Another `port` serves the same data to the test alone: clients of the usual port still
        find the database down (a fault test's sweeper can act while a worker cannot reach it).
        """
        port = port or self.port
        options = f"-p {port} -c listen_addresses=127.0.0.1 -k {self.root} {SERVER_OPTIONS}"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` closes sessions cleanly, `immediate` is a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, mode: str = "fast") -> None:
        """Stop and start again on the same port."""
        self.stop(mode)
        self.start()

    @property
    def running(self) -> bool:
        """Whether the server process is up."""
        status = subprocess.run(
            self._command("pg_ctl", "-D", str(self.data), "status"), capture_output=True
        )
        return status.returncode == 0

    def url(self, database: str = "postgres", port: int | None = None) -> str:
        """The SQLAlchemy URL of `database` on this cluster (on its port, or `port`)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{port or self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create database `name` and return its URL."""
        dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        """Stop the server if it runs and delete its files."""
        if self.data.exists() and self.running:
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def make_root() -> Path:
    """A fresh directory the server's OS user owns (pytest's tmp_path is root-only when run as root)."""
    root = Path(tempfile.mkdtemp(prefix="runwatch-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, user=SERVER_USER, group=SERVER_USER)
    return root


@pytest.fixture
def pg_cluster() -> Iterator[PgCluster]:
    """A started PostgreSQL cluster of this test's own on a free port; removed afterwards."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        reason = "no PostgreSQL server binaries under /usr/lib/postgresql"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the fault tests: {reason}")
        pytest.skip(reason)
    cluster = PgCluster(bin_dir, make_root())
    try:
        cluster.init().start()
        yield cluster
    finally:
        cluster.destroy()
