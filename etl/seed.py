"""`runwatch seed-history`: fast bulk insert of realistic past runs and their events.

For demos and benchmarks. Every seeded run is terminal (85% finished, 10% failed, 5% cancelled), so
the active-run index is never touched; the same seed and end time give the same history.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from db.migrate import refresh_planner_statistics
from db.models import Job, Run, RunEvent, RunStatus, Trigger, run_duration, utcnow
from db.queries import save_job, write_session
from etl.bulk import bulk_insert, reserve_ids

SeedProgress = Callable[[int, int], None]  # (runs seeded so far, runs in all)
_CHUNK_EVENTS = 200_000  # events per transaction: few transactions, bounded memory


@dataclass(frozen=True)
class JobProfile:
    """How one job's runs look: share of all runs, record counts, throughput and failure modes."""

    name: str
    kind: str
    title: str
    share: float
    records: tuple[int, int]
    rate: tuple[float, float]  # records per second
    errors: tuple[tuple[str, str], ...]
    params: dict[str, Any] = field(default_factory=dict)
    schedule: str | None = None  # most seeded runs have trigger `schedule`: their job says when


_INTERRUPTED = ("interrupted", "No heartbeat since {ts} UTC; worker gone.")
_DB_DOWN = (
    "OperationalError",
    "connection to server at 10.0.4.12, port 5432 failed: Connection refused",
)
PROFILES = (
    JobProfile(
        name="demo",
        schedule="*/30 * * * *",
        kind="demo",
        title="Demo catalogue",
        share=0.30,
        records=(5_000, 40_000),
        rate=(1_500.0, 4_000.0),
        errors=(("RuntimeError", "Demo failure provoked at record {at} (fail_at)."), _INTERRUPTED),
    ),
    JobProfile(
        name="csv_import",
        schedule="15 2 * * *",
        kind="csv_import",
        title="CSV import",
        share=0.25,
        records=(1_000, 400_000),
        rate=(8_000.0, 25_000.0),
        errors=(
            (
                "JobError",
                "File 'incoming/orders_{day}.csv' is not valid utf-8 (byte 0xe9 at {at}).",
            ),
            ("JobError", "File 'incoming/customers_{day}.csv' has no key column 'customer_id'."),
            ("JobError", "Too many rejected rows: 1,204 > max_rejects 1,000."),
            _DB_DOWN,
        ),
    ),
    JobProfile(
        name="catalogue_nightly",
        schedule="0 2 * * *",
        kind="demo",
        title="Nightly catalogue sync",
        share=0.25,
        records=(50_000, 200_000),
        rate=(2_500.0, 6_000.0),
        errors=(_INTERRUPTED, _DB_DOWN, ("MemoryError", "Cannot allocate batch buffer")),
        params={"total": 100_000, "batch_size": 1_000, "delay_ms": 0, "seed": 7},
    ),
    JobProfile(
        name="subjects_hourly",
        schedule="0 * * * *",
        kind="demo",
        title="Hourly subject refresh",
        share=0.20,
        records=(500, 5_000),
        rate=(800.0, 2_500.0),
        errors=(("TimeoutError", "Source did not answer within 30 s"), _INTERRUPTED),
        params={"total": 2_000, "batch_size": 200, "delay_ms": 0, "seed": 11},
    ),
)
_USERS = ("alice", "bob", "chen", "dana", "analyst")
_TRIGGERS = (
    (Trigger.SCHEDULE, 0.60),
    (Trigger.MANUAL, 0.25),
    (Trigger.API, 0.10),
    (Trigger.RETRY, 0.05),
)
_STATUSES = ((RunStatus.FINISHED, 0.85), (RunStatus.FAILED, 0.10), (RunStatus.CANCELLED, 0.05))


def ensure_seed_jobs(engine: sa.Engine) -> None:
    """Configure the missing seeded jobs (so their runs can be retried); schedule those without one."""
    with write_session(engine) as session:
        for profile in PROFILES:
            job = session.get(Job, profile.name)
            if job is None:
                job = Job(name=profile.name, title=profile.title, kind=profile.kind)
                job.params = dict(profile.params)
            elif job.schedule is not None:
                continue  # a schedule someone configured stays
            job.schedule = profile.schedule
            save_job(session=session, job=job)


def seed_history(
    engine: sa.Engine,
    *,
    days: int,
    runs_per_day: int,
    events_per_run: int = 20,
    seed: int = 0,
    end: datetime | None = None,
    progress: SeedProgress | None = None,
) -> int:
    """Insert `days` × `runs_per_day` terminal runs ending before `end` (default: this hour); return the count."""
    if days < 1 or runs_per_day < 1 or events_per_run < 2:
        raise ValueError("days and runs per day must be at least 1, events per run at least 2")
    ensure_seed_jobs(engine)
    end = end or utcnow().replace(minute=0, second=0, microsecond=0)
    history = _History(random.Random(seed), end - timedelta(days=days), end, days * runs_per_day)
    chunk = max(1, _CHUNK_EVENTS // events_per_run)
    done = 0
    while done < history.count:
        size = min(chunk, history.count - done)
        with write_session(engine) as session:
            ids = reserve_ids(session=session, table=_table(Run), count=size)
            runs = [history.next_run(run_id) for run_id in ids]
            bulk_insert(session=session, table=_table(Run), rows=runs)
            events = [e for run in runs for e in history.events(run, events_per_run)]
            bulk_insert(session=session, table=_table(RunEvent), rows=events)
        done += size
        if progress:
            progress(done, history.count)
    refresh_planner_statistics(engine)  # a bulk load changes what the planner should expect
    return done


def _table(model: Any) -> sa.Table:
    table: sa.Table = model.__table__
    return table


def _pick(rng: random.Random, weighted: tuple[tuple[Any, float], ...]) -> Any:
    return rng.choices([v for v, _ in weighted], [w for _, w in weighted])[0]


class _History:
    """Generates the runs in time order, and each run's events, from one random generator."""

    def __init__(self, rng: random.Random, start: datetime, end: datetime, count: int) -> None:
        self.rng, self.count = rng, count
        # Leave the last quarter hour free so every seeded run has ended before `end`.
        period = max((end - start).total_seconds() - 900, 1.0)
        offsets = sorted(rng.uniform(0, period) for _ in range(count))
        self.times = iter([start + timedelta(seconds=s) for s in offsets])
        self.last_failed: dict[str, int] = {}
        self.weights = [p.share for p in PROFILES]

    def next_run(self, run_id: int) -> dict[str, Any]:
        """The next run's row (column name → value) with id `run_id`."""
        rng = self.rng
        profile: JobProfile = rng.choices(PROFILES, self.weights)[0]
        status = _pick(rng, _STATUSES)
        created = next(self.times)
        started = created + timedelta(seconds=rng.uniform(0.05, 3.0))
        total = int(rng.triangular(*profile.records, profile.records[0] * 2))
        offset = total
        if status != RunStatus.FINISHED:
            offset = int(total * rng.uniform(0.05, 0.95)) // 100 * 100
        rejected = int(offset * rng.uniform(0, 0.002)) if profile.kind == "csv_import" else 0
        seconds = offset / rng.uniform(*profile.rate) + rng.uniform(0.3, 2.5)
        ended = started + timedelta(seconds=seconds)
        run: dict[str, Any] = {
            "id": run_id,
            "job": profile.name,
            "status": str(status),
            **self._trigger(profile.name),
            "params": _params(profile, total),
            "created_at": created,
            "started_at": started,
            "ended_at": ended,
            "duration_s": run_duration(started, ended),
            "total_records": total,
            "offset": offset,
            "records_loaded": offset - rejected,
            "records_rejected": rejected,
            "counters": _counters(profile, offset, rejected),
            "current_step": None,
            "error_type": None,
            "error_message": None,
            "error_detail": None,
            "heartbeat_at": started + timedelta(seconds=seconds),
            "worker_id": f"etl-worker-{rng.randint(1, 3):02d}:{rng.randint(1000, 60000)}:worker",
            "cancel_requested": status == RunStatus.CANCELLED,
        }
        if status == RunStatus.FAILED:
            self._fail(run, profile)
        return run

    def _trigger(self, job: str) -> dict[str, Any]:
        trigger = _pick(self.rng, _TRIGGERS)
        resumed_from = self.last_failed.pop(job, None) if trigger == Trigger.RETRY else None
        if trigger == Trigger.RETRY and resumed_from is None:
            trigger = Trigger.MANUAL
        by = {Trigger.SCHEDULE: "scheduler", Trigger.API: "api:reporting"}.get(trigger)
        return {
            "trigger": str(trigger),
            "triggered_by": by or self.rng.choice(_USERS),
            "resumed_from": resumed_from,
        }

    def _fail(self, run: dict[str, Any], profile: JobProfile) -> None:
        error_type, template = self.rng.choice(profile.errors)
        beat = run["ended_at"] - timedelta(seconds=self.rng.uniform(60, 90))
        message = template.format(
            ts=f"{beat:%Y-%m-%d %H:%M:%S}", at=run["offset"], day=f"{run['created_at']:%Y-%m-%d}"
        )
        stage = self.rng.choice(("extract", "transform", "load"))
        if error_type == "interrupted":
            run["heartbeat_at"], run["current_step"] = beat, stage
            detail = {"stage": stage, "worker_id": run["worker_id"], "offset": run["offset"]}
        else:
            trace = f'Traceback (most recent call last):\n  File "etl/runner.py", in _execute\n{error_type}: {message}\n'
            detail = {
                "traceback": trace,
                "stage": stage,
                "context": {"offset": run["offset"], "job": run["job"]},
            }
        run.update(error_type=error_type, error_message=message, error_detail=detail)
        self.last_failed[run["job"]] = run["id"]

    def events(self, run: dict[str, Any], count: int) -> list[dict[str, Any]]:
        """`count` events of `run`: its start, log lines and progress, and its end."""
        start, end = run["started_at"], run["ended_at"]
        step, record = (end - start) / (count - 1), _record(run)
        events = [_event(run, start, "status", "INFO", None, "Run started", _running(record, 0))]
        for i in range(1, count - 1):
            ts, done = start + step * i, int(run["offset"] * i / (count - 1))
            if i == 1:
                total = f"{run['total_records']:,}"
                message = f"Extracting from offset 0 of {total} records"
                events.append(_event(run, ts, "log", "INFO", "extract", message))
            elif i == count - 2 and run["status"] != RunStatus.FINISHED:
                events.append(self._last_words(run, ts))
            elif i % 4 == 0:  # progress carries the whole record: keep it to every 4th event
                data = _running(record, done)
                events.append(_event(run, ts, "progress", "INFO", "load", "Progress", data))
            else:
                events.append(self._log_line(run, ts, done))
        level = "ERROR" if run["status"] == RunStatus.FAILED else "INFO"
        error = run["error_message"]
        message = f"Run {run['status']}" + (f": {error}" if error else "")
        events.append(_event(run, end, "status", level, run["current_step"], message, record))
        return events

    def _last_words(self, run: dict[str, Any], ts: datetime) -> dict[str, Any]:
        if run["status"] == "cancelled":
            return _event(
                run, ts, "log", "INFO", "load", f"Cancel requested by {run['triggered_by']}"
            )
        return _event(
            run,
            ts,
            "log",
            "ERROR",
            run["error_detail"].get("stage"),
            f"{run['error_type']}: {run['error_message']}",
        )

    def _log_line(self, run: dict[str, Any], ts: datetime, done: int) -> dict[str, Any]:
        level, template = self.rng.choice(_LOG_LINES)
        message = template.format(
            done=done,
            batch=done // 500 + 1,
            secs=self.rng.uniform(0.1, 4.0),
            rejected=self.rng.randint(1, 40),
        )
        return _event(run, ts, "log", level, "load", message)


_LOG_LINES = (
    ("DEBUG", "Batch {batch} loaded in {secs:.2f} s"),
    ("DEBUG", "Checkpoint at offset {done:,}"),
    ("INFO", "Loaded {done:,} records so far"),
    ("INFO", "Upserted batch {batch} ({done:,} records done)"),
    ("INFO", "Source page {batch} fetched"),
    ("WARNING", "Slow batch {batch}: {secs:.1f} s"),
    ("WARNING", "{rejected} rows rejected in batch {batch}"),
)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _record(run: dict[str, Any]) -> dict[str, Any]:
    """The run's public record as JSON values, as status and progress events carry it."""
    seconds = (run["ended_at"] - run["started_at"]).total_seconds()
    return {
        "id": run["id"],
        "job": run["job"],
        "status": run["status"],
        "trigger": run["trigger"],
        "triggered_by": run["triggered_by"],
        "start_date": _iso(run["started_at"]),
        "end_date": _iso(run["ended_at"]),
        "duration": seconds,
        "total_records": run["total_records"],
        "offset": run["offset"],
        "records_loaded": run["records_loaded"],
        "records_rejected": run["records_rejected"],
        "counters": run["counters"],
        "current_step": run["current_step"],
        "error_type": run["error_type"],
        "error_message": run["error_message"],
        "created_at": _iso(run["created_at"]),
        "resumed_from": run["resumed_from"],
    }


def _running(record: dict[str, Any], done: int) -> dict[str, Any]:
    """The record as it was while running, `done` records in."""
    return dict(
        record,
        status="running",
        end_date=None,
        duration=None,
        offset=done,
        records_loaded=done,
        records_rejected=0,
        counters={},
        current_step="load" if done else None,
        error_type=None,
        error_message=None,
    )


def _event(
    run: dict[str, Any],
    ts: datetime,
    kind: str,
    level: str,
    step: str | None,
    message: str,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "run_id": run["id"],
        "ts": ts,
        "kind": kind,
        "level": level,
        "step": step,
        "message": message,
        "data": data or {},
    }


def _params(profile: JobProfile, total: int) -> dict[str, Any]:
    if profile.kind == "csv_import":
        return {"path": "incoming/*.csv", "table": "orders", "key": ["order_id"]}
    return {**(profile.params or {"batch_size": 500, "delay_ms": 0, "seed": 42}), "total": total}


def _counters(profile: JobProfile, offset: int, rejected: int) -> dict[str, Any]:
    if profile.kind == "csv_import":
        return {"extracted": offset, "loaded": offset - rejected, "rejected": rejected}
    return {"subjects_processed": offset, "categories_processed": -(-offset // 50)}
