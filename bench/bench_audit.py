"""What the tamper-evident ledger costs a trigger, and how fast the chain verifies.

    python -m bench.bench_audit [--size 10000] [--backend sqlite|postgres|both] [--repeat 200]

On a fresh database whose ledger already holds `--size` events, times `etl.commands.trigger`
with the chained append (`record_audit`: lock, read the head, insert, hash, seal) and with a
plain insert of the same audit row in its place, alternating; then the append alone against the
plain insert, and `runwatch audit verify` over the whole ledger. Goal: a trigger costs under
5 ms more with the chain (median).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any
from unittest import mock

import sqlalchemy as sa
from sqlmodel import Session

from bench import DEFAULT_POSTGRES_URL, backends, temp_database, timed
from db.models import AuditEvent, Run, RunStatus
from db.queries import record_audit, write_session
from etl import commands
from etl.commands import Caller, Source
from reports.ledger import verify_ledger

GOAL_MS = 5.0
CALLER = Caller("bench", Source.CLI)


def plain_insert(
    *, session: Session, actor: str, action: str, target: str = "", details: Any = None
) -> AuditEvent:
    """The audit row without the chain: what record_audit cost before the ledger."""
    event = AuditEvent(actor=actor, action=action, target=target, details=details or {})
    session.add(event)
    session.flush()
    return event


def unchained() -> Any:
    """Inside this block commands write their audit rows with plain inserts."""
    return mock.patch.object(commands, "record_audit", plain_insert)


def fill_ledger(engine: sa.Engine, size: int) -> None:
    """`size` chained events, as a ledger in use holds."""
    for start in range(0, size, 1000):
        with write_session(engine) as session:
            for i in range(start, min(size, start + 1000)):
                record_audit(session=session, actor="seed", action="trigger", target=f"run:{i}")


def trigger_ms(engine: sa.Engine) -> float:
    """Milliseconds of one trigger of `demo`; the run is ended afterwards, outside the timing."""
    run, seconds = timed(lambda: commands.trigger(engine, CALLER, "demo", {"total": 10}))
    with write_session(engine) as session:
        session.execute(
            sa.update(Run).where(Run.id == run.id).values(status=RunStatus.CANCELLED)  # type: ignore[arg-type]
        )
    return seconds * 1000


def append_ms(engine: sa.Engine, append: Callable[..., AuditEvent]) -> float:
    """Milliseconds of one write transaction holding only an audit append."""
    start = time.perf_counter()
    with write_session(engine) as session:
        append(session=session, actor="bench", action="trigger", target="run:0", details={"a": 1})
    return (time.perf_counter() - start) * 1000


def measure(engine: sa.Engine, repeat: int) -> dict[str, float]:
    """Median milliseconds of each side, alternating so noise hurts both alike."""
    times: dict[str, list[float]] = {"chain": [], "plain": [], "append": [], "insert": []}
    for _ in range(repeat):
        times["chain"].append(trigger_ms(engine))
        with unchained():
            times["plain"].append(trigger_ms(engine))
        times["append"].append(append_ms(engine, record_audit))
        times["insert"].append(append_ms(engine, plain_insert))
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000, help="events already in the ledger")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--repeat", type=int, default=200, help="triggers per side")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    args = parser.parse_args()
    print(f"audit ledger: {args.size:,} events before, median of {args.repeat} per side")
    for backend in backends(args.backend):
        with temp_database(backend, args.postgres_url) as engine:
            fill_ledger(engine, args.size)
            ms = measure(engine, args.repeat)
            report, verify_s = timed(lambda: verify_ledger(engine))
        extra = ms["chain"] - ms["plain"]
        verdict = "ok" if extra < GOAL_MS else "ABOVE GOAL"
        print(
            f"{backend:<10} trigger {ms['chain']:6.2f} ms chained, {ms['plain']:6.2f} ms plain: "
            f"+{extra:.2f} ms (ratio {ms['chain'] / ms['plain']:.2f}; goal < {GOAL_MS:.0f} ms: {verdict})"
        )
        print(
            f"{'':<10} append alone {ms['append']:6.2f} ms, plain insert {ms['insert']:6.2f} ms "
            f"(+{ms['append'] - ms['insert']:.2f} ms)"
        )
        rate = report.intact / verify_s if verify_s else float("inf")
        print(
            f"{'':<10} verify {report.intact:,} events in {verify_s:.2f} s ({rate:,.0f} events/s)"
        )


if __name__ == "__main__":
    main()
