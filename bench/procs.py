"""Processes for the load benchmarks: start Runwatch's own, and sample their CPU and memory."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
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


def _stat(pid: int) -> tuple[str, list[str]]:
    """The process's command name and the fields of /proc/PID/stat after it."""
    with open(f"/proc/{pid}/stat") as stat:
        head, tail = stat.read().rsplit(")", 1)
    return head.split("(", 1)[1], tail.split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process used so far."""
    fields = _stat(pid)[1]
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    """The process's resident memory in MB."""
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_MB


def descendants(pid: int, named: str) -> list[int]:
    """The processes below `pid` (at any depth) whose command name starts with `named`."""
    children: dict[int, list[int]] = {}
    names = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            names[int(entry)], fields = _stat(int(entry))
        except (OSError, IndexError):  # it exited meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:  # parent by parent, not in id order: ids wrap around
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return [child for child in found if names[child].startswith(named)]


def total(read: Callable[[int], float], pids: list[int]) -> float:
    """`read` summed over the processes still alive."""
    alive = 0.0
    for pid in pids:
        with suppress(OSError):
            alive += read(pid)
    return alive


@dataclass
class Sample:
    """One reading: seconds since the meter started, CPU in cores since the last one, RSS in MB."""

    at: float
    cores: float
    rss: float


@dataclass
class Meter:
    """Samples one process every `every` seconds in a thread, until `stop()`; with `named`, the
    processes below it whose command name starts so (a browser's) instead, summed."""

    pid: int
    every: float = 10.0
    named: str = ""
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Meter:
        """Begin sampling (the first sample is taken at once)."""
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        began = last_wall = time.monotonic()
        last_cpu = self._cpu()
        self.samples.append(Sample(0.0, 0.0, total(rss_mb, list(last_cpu))))
        while not self._stop.wait(self.every):
            wall, cpu = time.monotonic(), self._cpu()
            # a process born since the last sample counts from zero (a browser's new renderer)
            used = sum(seconds - last_cpu.get(pid, 0.0) for pid, seconds in cpu.items())
            self.samples.append(
                Sample(wall - began, used / (wall - last_wall), total(rss_mb, list(cpu)))
            )
            last_wall, last_cpu = wall, cpu

    def _cpu(self) -> dict[int, float]:
        """CPU seconds so far of each process measured (a browser's come and go)."""
        cpu = {}
        for pid in descendants(self.pid, self.named) if self.named else [self.pid]:
            with suppress(OSError):  # it exited meanwhile
                cpu[pid] = cpu_seconds(pid)
        return cpu

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
