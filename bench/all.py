"""Run every benchmark script in bench/ in turn: `python -m bench.all [--only NAME] [-- ARGS]`.

ARGS after `--` go to every script (each takes `--size`, `--backend` and `--postgres-url`).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def scripts(only: list[str] | None) -> list[str]:
    """The bench_*.py modules to run, by name, in alphabetical order."""
    names = sorted(path.stem for path in BENCH.glob("bench_*.py"))
    return [name for name in names if not only or any(o in name for o in only)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="run scripts whose name contains this")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="after --: passed to every script")
    options = parser.parse_args()
    extra = [a for a in options.args if a != "--"]
    failed = []
    for name in scripts(options.only):
        print(f"\n== bench.{name} {' '.join(extra)}", flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", f"bench.{name}", *extra], cwd=BENCH.parent)
        print(f"== bench.{name}: exit {code} after {time.perf_counter() - start:.0f} s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
