"""What the status endpoint reports: the current run, its rate and ETA, and the process's use."""

from __future__ import annotations

import os
import resource
import threading
import time
from datetime import datetime, timedelta

from sqlmodel import Session

from api.models import EtaRange, EtlStatus, PerformanceMetrics
from db.models import ACTIVE_STATUSES, EventKind, Run, RunStatus, utcnow
from db.queries import RunFilters, get_run, job_throughputs, list_events, list_runs
from reports.eta import Pace, estimate, run_eta


class ProcessMeter:
    """Memory and CPU of this process; CPU as a share of one core since the previous reading."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = (time.monotonic(), time.process_time())

    def read(self) -> tuple[float, float]:
        """(resident memory in MB, CPU % since the last call)."""
        now, cpu = time.monotonic(), time.process_time()
        with self._lock:
            (wall0, cpu0), self._last = self._last, (now, cpu)
        share = (cpu - cpu0) / (now - wall0) * 100 if now > wall0 else 0.0
        return round(rss_mb(), 1), round(share, 1)


def rss_mb() -> float:
    """Resident memory of this process in MB (peak where /proc is missing)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_run(*, session: Session, job: str | None) -> Run | None:
    """The job's (or any job's) active run, else its newest run."""
    jobs = (job,) if job else ()
    for statuses in (ACTIVE_STATUSES, ()):
        filters = RunFilters(statuses=tuple(statuses), jobs=jobs)
        page = list_runs(session=session, filters=filters, page_size=1)
        if page.runs:
            return get_run(session=session, run_id=page.runs[0].id)
    return None


def starting_offset(*, session: Session, run: Run) -> int:
    """The offset the run started from (its checkpoint when resumed), from its first status event."""
    assert run.id is not None
    first = list_events(session=session, run_id=run.id, kinds=[EventKind.STATUS], limit=1)
    value = (first[0].data or {}).get("offset") if first else 0
    return value if isinstance(value, int) else 0


def run_rate(*, session: Session, run: Run) -> float | None:
    """Records per second of the run since it started."""
    if run.started_at is None:
        return None
    end = run.ended_at or utcnow()
    elapsed = (end - run.started_at).total_seconds()
    done = run.offset - starting_offset(session=session, run=run)
    return round(done / elapsed, 1) if elapsed > 0 and done >= 0 else None


def estimated_completion(*, session: Session, run: Run) -> tuple[datetime, EtaRange | None] | None:
    """When the run should end and the range it should end in (its end time once it has ended)."""
    if run.ended_at is not None:
        return run.ended_at, None
    if run.status != RunStatus.RUNNING:
        return None
    now = utcnow()
    eta = run_eta(
        total=run.total_records,
        offset=run.offset,
        pace=Pace.from_dict(run.pace),
        started_at=run.started_at,
        now=now,
        history=job_throughputs(session=session, job=run.job),
    )
    if eta.seconds is None:
        return None
    likely, early, late = (now + timedelta(seconds=s) for s in eta.seconds)
    return likely, EtaRange(earliest=early, latest=late)


def progress(run: Run) -> float | None:
    """Percent of the run's records done (100 once finished, None when the total is unknown)."""
    if run.status == RunStatus.FINISHED:
        return 100.0
    if not run.total_records:
        return None
    return round(min(run.offset / run.total_records, 1.0) * 100, 1)


def etl_status(*, session: Session, job: str | None, meter: ProcessMeter) -> EtlStatus:
    """The status report of `job` (or of the whole ETL)."""
    memory, cpu = meter.read()
    run = current_run(session=session, job=job)
    rate = run_rate(session=session, run=run) if run else None
    metrics = PerformanceMetrics(records_per_second=rate, memory_usage=memory, cpu_usage=cpu)
    if run is None:
        return EtlStatus(
            is_running=False,
            current_log_id=None,
            job=job,
            status=None,
            progress_percentage=None,
            last_update=None,
            estimated_completion=None,
            estimated_completion_range=None,
            current_step=None,
            performance_metrics=metrics,
        )
    ends = estimated_completion(session=session, run=run)
    return EtlStatus(
        is_running=run.status in ACTIVE_STATUSES,
        current_log_id=run.id,
        job=run.job,
        status=run.status,
        progress_percentage=progress(run),
        last_update=max(t for t in (run.created_at, run.heartbeat_at, run.ended_at) if t),
        estimated_completion=ends[0] if ends else None,
        estimated_completion_range=ends[1] if ends else None,
        current_step=run.current_step,
        performance_metrics=metrics,
    )


def estimated_duration(*, session: Session, job: str, total: int | None) -> float | None:
    """Seconds a run of `total` records should take, from the job's history alone (p50)."""
    history = job_throughputs(session=session, job=job)
    eta = estimate(remaining=total, pace=Pace(), history=history)
    return None if eta.likely_s is None else round(eta.likely_s, 1)
