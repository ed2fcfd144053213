"""CLI start-up: wall time of `runwatch --help` and of `runwatch runs` on an empty database, and the
modules whose import costs most (`python -X importtime`).

Goals (issue 13): `runwatch --help` ≤ 0.3 s, `runwatch runs` on an empty database ≤ 0.6 s.
Each figure is the median of `--repeat` fresh processes; on a shared, loaded machine they are noisy.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOALS_S = {"runwatch --help": 0.3, "runwatch runs (empty database)": 0.6}
IMPORT_LINE = re.compile(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)")


def runwatch(
    *args: str, env: dict[str, str], importtime: bool = False
) -> subprocess.CompletedProcess[str]:
    """`python -m etl ARGS` as its own process (what the `runwatch` script runs)."""
    flags = ["-X", "importtime"] if importtime else []
    command = [sys.executable, *flags, "-m", "etl", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True)


def median_s(args: tuple[str, ...], env: dict[str, str], repeat: int) -> float:
    """The median wall time of `repeat` fresh processes running `runwatch ARGS`."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        runwatch(*args, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def heaviest_imports(
    args: tuple[str, ...], env: dict[str, str], top: int
) -> list[tuple[float, str]]:
    """The modules `python -m etl` imports directly whose import (cumulative) costs most, in seconds."""
    stderr = runwatch(*args, env=env, importtime=True).stderr
    found = []
    for line in stderr.splitlines():
        match = IMPORT_LINE.match(line)
        if match and len(match.group(2)) == 3:  # imported by a top-level module (etl.cli, …)
            found.append((int(match.group(1)) / 1e6, match.group(3)))
    return sorted(found, reverse=True)[:top]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--top", type=int, default=8, help="heaviest imports to list")
    parser.add_argument("--size", help="ignored (bench.all passes it to every script)")
    parser.add_argument("--backend", help="ignored: the empty database is a SQLite file")
    parser.add_argument("--postgres-url", help="ignored")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNWATCH_")}
        env["RUNWATCH_DATABASE_URL"] = f"sqlite:///{folder}/empty.db"
        runwatch("init-db", env=env)
        commands = {"runwatch --help": ("--help",), "runwatch runs (empty database)": ("runs",)}
        print(f"CLI start-up, median of {options.repeat} processes (shared machine: noisy)")
        for name, args in commands.items():
            seconds, goal = median_s(args, env, options.repeat), GOALS_S[name]
            print(
                f"  {name:<34} {seconds:6.2f} s   goal ≤ {goal:.1f} s   x{seconds / goal:5.2f} of goal"
            )
        for name, args in commands.items():
            print(f"heaviest imports of {name}:")
            for seconds, module in heaviest_imports(args, env, options.top):
                print(f"  {module:<40} {seconds:6.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
