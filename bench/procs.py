"""Processes for the load benchmarks: start Runwatch's own, and sample their CPU and memory."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20


def runwatch(database_url: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
    """`python -m etl ARGS` on `database_url`, quiet, with extra RUNWATCH_* settings."""
    environ = {**os.environ, **env, "RUNWATCH_DATABASE_URL": database_url}
    return subprocess.Popen(
        [sys.executable, "-m", "etl", *args],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if it has not exited after `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    """The process's resident memory in MB."""
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_MB


@dataclass
class Sample:
    """One reading: seconds since the meter started, CPU in cores since the last one, RSS in MB."""

    at: float
    cores: float
    rss: float


@dataclass
class Meter:
    """Samples one process every `every` seconds in a thread, until `stop()`."""

    pid: int
    every: float = 10.0
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Meter:
        """Begin sampling (the first sample is taken at once)."""
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        began = last_wall = time.monotonic()
        last_cpu = cpu_seconds(self.pid)
        self.samples.append(Sample(0.0, 0.0, rss_mb(self.pid)))
        while not self._stop.wait(self.every):
            wall, cpu = time.monotonic(), cpu_seconds(self.pid)
            cores = (cpu - last_cpu) / (wall - last_wall)
            self.samples.append(Sample(wall - began, cores, rss_mb(self.pid)))
            last_wall, last_cpu = wall, cpu

    def stop(self) -> list[Sample]:
        """Stop sampling; the samples taken."""
        self._stop.set()
        return self.samples

    def mean_cores(self) -> float:
        """Mean CPU over the samples, in cores."""
        busy = [s.cores for s in self.samples[1:]]
        return sum(busy) / len(busy) if busy else 0.0

    def series(self) -> str:
        """`t cores rss` for each sample, on one line."""
        return "  ".join(f"{s.at:.0f}s:{s.cores:.2f}c/{s.rss:.0f}MB" for s in self.samples)
