"""What each `runwatch` command does, once `etl.cli` has parsed its arguments.

Apart from the parser because this is where the database, the jobs and the runner are imported:
`runwatch --help` or a usage error needs none of them, and they are most of a command's start-up.
"""

from __future__ import annotations

import argparse
import faulthandler
import io
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC
from typing import TYPE_CHECKING, Any

import pydantic
import sqlalchemy as sa

from db.engine import get_engine, sqlite_file
from db.migrate import init_db
from db.models import TERMINAL_STATUSES, Job, Run, RunRow, RunStatus
from db.queries import (
    RunFilters,
    RunSort,
    RunwatchError,
    iter_runs,
    job_throughputs,
    list_events,
    list_jobs,
    list_runs,
    read_session,
)
from db.settings import get_settings
from etl import commands
from etl.cli import EXIT_FAILED, EXIT_OK, Command
from etl.commands import EXIT_USAGE
from reports import dates
from reports.durations import format_duration

if TYPE_CHECKING:
    from etl.worker import Worker

# The job kinds, the runner, the worker and the ledger are imported by the commands that use them:
# `runwatch runs` and `runwatch jobs` start without them.


def execute(args: argparse.Namespace) -> int:
    """Run the parsed command on the configured database; errors become a message and an exit code."""
    try:
        if not args.creates_database:
            refuse_new_database(get_settings().database_url)
        engine = get_engine()
        init_db(engine)
        args.caller = caller(engine)  # a bad RUNWATCH_TOKEN is refused whatever the command
        handler: Command = args.handler
        return handler(args, engine)
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else EXIT_USAGE
    except RunwatchError as error:
        print(f"runwatch: {error}", file=sys.stderr)
        return commands.refusal(error).exit_code
    except pydantic.ValidationError as error:
        print(f"runwatch: bad setting: {_first_error(error)}", file=sys.stderr)
        return EXIT_USAGE
    except sa.exc.ArgumentError as error:
        print(f"runwatch: bad database URL: {error}", file=sys.stderr)
        return EXIT_USAGE
    except sa.exc.OperationalError as error:
        print(f"runwatch: cannot reach the database: {error.orig}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader (e.g. `| head`) has seen enough; keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # a job's own error; etl.jobs is imported by then if it raised one
        from etl.jobs import JobError

        if not isinstance(error, JobError):
            raise
        print(f"runwatch: {error}", file=sys.stderr)
        return EXIT_USAGE


def _first_error(error: pydantic.ValidationError) -> str:
    first = error.errors()[0]
    name = "RUNWATCH_" + str(first["loc"][0]).upper() if first["loc"] else "setting"
    return f"{name}: {first['msg']}"


def cmd_init_db(args: argparse.Namespace, engine: sa.Engine) -> int:
    """Create or migrate the schema (every command does this first) and say where."""
    print(f"Database ready: {sa.make_url(get_settings().database_url).render_as_string()}")
    return EXIT_OK


def cmd_jobs(args: argparse.Namespace, engine: sa.Engine) -> int:
    """List the configured jobs."""
    from etl.jobs import JOB_KINDS

    with read_session(engine) as session:
        for job in list_jobs(session=session):
            state = "" if job.enabled else "  (disabled)"
            state += "  (paused)" if job.paused else ""
            print(f"{job.name:<20} {job.kind:<12} {_schedule_text(job):<40} {job.params}{state}")
            kind = JOB_KINDS.get(job.kind)
            for param in kind.parameters if kind else ():
                print(f"    {param.describe()}")
    return EXIT_OK


def _schedule_text(job: Job) -> str:
    """A job's schedule with its time zone and next tick, or `-`."""
    if not job.schedule:
        return "-"
    upcoming = f", next {job.next_run_at:%Y-%m-%d %H:%M} UTC" if job.next_run_at else ""
    return f"{job.schedule} ({job.timezone}{upcoming})"


def cmd_pause(args: argparse.Namespace, engine: sa.Engine) -> int:
    """Pause a job: no scheduled run and no Run now until it is unpaused; an active run goes on."""
    commands.pause(engine, args.caller, args.job)
    print(f"Job {args.job} paused: its schedule enqueues nothing and Run now is refused.")
    return EXIT_OK


def cmd_unpause(args: argparse.Namespace, engine: sa.Engine) -> int:
    """Resume a paused job: its schedule runs again from its next tick."""
    job = commands.unpause(engine, args.caller, args.job)
    nxt = f"; next scheduled run {job.next_run_at:%Y-%m-%d %H:%M} UTC" if job.next_run_at else ""
    print(f"Job {args.job} resumed{nxt}.")
    return EXIT_OK


def cmd_add_job(args: argparse.Namespace, engine: sa.Engine) -> int:
    """Configure a job (or replace one with --replace), its parameters checked by its kind."""
    job, existed = commands.add_job(
        engine,
        args.caller,
        name=args.name,
        kind=args.kind,
        params=dict(args.params),
        title=args.title,
        schedule=args.schedule,
        timezone=args.timezone,
        catchup=args.catchup,
        enabled=not args.disabled,
        replace=args.replace,
    )
    print(f"Job {job.name} ({job.kind}) {'replaced' if existed else 'added'}.")
    return EXIT_OK


def caller(engine: sa.Engine) -> commands.Caller:
    """The CLI's caller: the local admin named by RUNWATCH_ACTOR, or the API token in RUNWATCH_TOKEN
    (its name and role; Unauthenticated when it is unknown or revoked)."""
    token = get_settings().token.get_secret_value()
    if not token:
        return commands.Caller(actor=get_settings().actor, source=commands.Source.CLI)
    from etl.accounts import authenticate_token

    return authenticate_token(engine, token, source=commands.Source.CLI)


def cmd_serve_api(args: argparse.Namespace, engine: sa.Engine) -> int:
    """Serve the HTTP API and live feed (refused beyond loopback while RUNWATCH_AUTH=none)."""
    from api.app import serve

    settings = get_settings()
    serve(host=args.host or settings.api_host, port=args.port or settings.api_port)
    return EXIT_OK


# ---------------------------------------------------------------- run, cancel, resume


def cmd_run(args: argparse.Namespace, engine: sa.Engine) -> int:
    """Start a run of a job here with a progress bar (or enqueue it with --detach)."""
    from etl.worker import make_worker_id

    here = None if args.detach else make_worker_id("cli")
    run = commands.trigger(engine, args.caller, args.job, dict(args.params), run_here=here)
    if args.detach:
        print(run.id)
        print(
            f"Run #{run.id} of {run.job} enqueued for a worker (runwatch worker).", file=sys.stderr
        )
        return EXIT_OK
    return execute_here(engine, run, args.caller)


def cmd_cancel(args: argparse.Namespace, engine: sa.Engine) -> int:
    """Cancel a pending run, or ask a running one to stop after its current batch."""
    run = commands.cancel(engine, args.caller, args.run_id)
    if run.status == RunStatus.CANCELLED:
        print(f"Run #{run.id} cancelled.")
    else:
        print(f"Cancel requested: run #{run.id} stops after its current batch.")
    return EXIT_OK


def cmd_resume(args: argparse.Namespace, engine: sa.Engine) -> int:
    """Resume a failed or cancelled run from its checkpoint (or from 0 with --restart)."""
    from etl.worker import make_worker_id

    here = None if args.detach else make_worker_id("cli")
    run = commands.resume(
        engine, args.caller, args.run_id, from_checkpoint=not args.restart, run_here=here
    )
    how = "from the start" if args.restart else f"from offset {run.offset:,}"
    print(f"Run #{run.id} resumes run #{args.run_id} {how}.", file=sys.stderr)
    if args.detach:
        print(run.id)
        return EXIT_OK
    return execute_here(engine, run, args.caller)


def execute_here(engine: sa.Engine, run: Run, who: commands.Caller) -> int:
    """Execute a running run in this process with a progress bar; Ctrl-C cancels it (as `who`)."""
    from etl.progress import ProgressBar
    from etl.runner import Runner
    from reports.eta import Pace

    with read_session(engine) as session:
        history = job_throughputs(session=session, job=run.job)
    bar = ProgressBar(f"#{run.id} {run.job}", run.total_records, start=run.offset, history=history)
    if bar.tty:
        bar.update(run.offset, force=True)

    def progress(r: Run) -> None:
        bar.update(r.offset, r.total_records, pace=Pace.from_dict(r.pace))

    runner = Runner(engine, get_settings(), on_progress=progress)
    assert run.id is not None
    with cancel_on_interrupt(engine, run.id, who):
        ended = runner.execute(run)
    bar.close(ended.status)
    print(outcome(ended), file=sys.stderr)
    for warning in run_warnings(engine, run.id):
        print(f"runwatch: warning: {warning}", file=sys.stderr)
    return EXIT_OK if ended.status == RunStatus.FINISHED else EXIT_FAILED


def run_warnings(engine: sa.Engine, run_id: int, limit: int = 20) -> list[str]:
    """The run's WARNING log lines, oldest first (an empty file, say), as the Logs page shows them."""
    with read_session(engine) as session:
        lines = list_events(
            session=session, run_id=run_id, min_level="WARNING", limit=limit, with_data=False
        )
    return [line.message for line in lines if line.level == "WARNING"]


def outcome(run: Run) -> str:
    """One line on how a run ended."""
    took = ""
    if run.started_at and run.ended_at:
        took = f" in {format_duration((run.ended_at - run.started_at).total_seconds())}"
    text = f"Run #{run.id} {run.status}: {run.records_loaded:,} records loaded{took}"
    if run.records_rejected:
        text += f", {run.records_rejected:,} rejected"
    if run.error_message:
        text += f". {run.error_type}: {run.error_message}"
    return text


@contextmanager
def cancel_on_interrupt(engine: sa.Engine, run_id: int, who: commands.Caller) -> Iterator[None]:
    """While a run executes here, Ctrl-C (or SIGTERM) requests its cancel; a second Ctrl-C quits."""
    asked = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        if asked.is_set():
            raise KeyboardInterrupt
        asked.set()
        print(
            f"\nCancelling run #{run_id} after its current batch (Ctrl-C again to quit at once)...",
            file=sys.stderr,
        )
        # Not from the handler itself: it may have interrupted this thread's own write transaction.
        threading.Thread(target=_cancel_quietly, args=(engine, run_id, who), daemon=True).start()

    with _signals_handled_by(on_signal):
        yield


@contextmanager
def _signals_handled_by(on_signal: Callable[[int, object], None]) -> Iterator[None]:
    """SIGINT and SIGTERM call `on_signal` inside the block; the previous handlers come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _cancel_quietly(engine: sa.Engine, run_id: int, who: commands.Caller) -> None:
    with suppress(RunwatchError):  # the run may have ended meanwhile
        commands.cancel(engine, who, run_id)


# ---------------------------------------------------------------- runs


def cmd_runs(args: argparse.Namespace, engine: sa.Engine) -> int:
    """List the run history as a table, or export it as CSV or JSON."""
    if problem := dates.reversed_range(args.since, args.until):
        raise RunwatchError(problem)  # as the API's 422, rather than an empty table
    filters = RunFilters(
        statuses=tuple(args.status or ()),
        jobs=tuple(args.job or ()),
        triggers=tuple(args.trigger or ()),
        since=args.since,
        until=args.until,
    )
    sort = RunSort(key=args.sort, descending=not args.asc)
    try:
        out = open(args.output, "wb") if args.output else sys.stdout.buffer  # noqa: SIM115
    except OSError as error:
        raise RunwatchError(f"Cannot write {args.output}: {error.strerror}.") from None
    try:
        if args.format == "table":
            out.write(runs_table(engine, filters, sort, args.limit).encode("utf-8"))
        else:
            export(engine, args.caller, args.format, filters, sort, out)
        out.flush()
    finally:
        if args.output:
            out.close()
    return EXIT_OK


def export(
    engine: sa.Engine, who: commands.Caller, fmt: Any, filters: RunFilters, sort: RunSort, out: Any
) -> None:
    """Stream the audit export: the very bytes the app and the API produce."""
    for chunk in commands.export(engine, who, fmt, filters, sort):
        out.write(chunk)


_COLUMNS = "{:>7}  {:<18} {:<9} {:<9} {:<19} {:>9} {:>11}  {}"


def runs_table(engine: sa.Engine, filters: RunFilters, sort: RunSort, limit: int) -> str:
    """The runs as a text table, the first `limit` of them (0: all), with a footer when cut."""
    lines = [
        _COLUMNS.format(
            "ID", "JOB", "STATUS", "TRIGGER", "CREATED (UTC)", "DURATION", "RECORDS", "ERROR"
        )
    ]
    with read_session(engine) as session:
        if limit:
            page = list_runs(session=session, filters=filters, sort=sort, page_size=limit)
            runs, total = page.runs, page.total
        else:
            runs = list(iter_runs(session=session, filters=filters, sort=sort))
            total = len(runs)
        lines += [_table_row(run) for run in runs]
    if len(runs) < total:
        lines.append(
            f"({len(runs):,} of {total:,} runs shown; --limit 0 shows all, --format csv|json exports them)"
        )
    return "\n".join(lines) + "\n"


def _table_row(run: RunRow) -> str:
    took = "-"
    if run.started_at and run.ended_at:
        took = format_duration((run.ended_at - run.started_at).total_seconds())
    error = f"{run.error_type}: {run.error_message}"[:60] if run.error_message else ""
    created = f"{run.created_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}"
    return _COLUMNS.format(
        run.id,
        run.job[:18],
        run.status,
        run.trigger,
        created,
        took,
        f"{run.records_loaded:,}",
        error,
    )


# ---------------------------------------------------------------- audit ledger


def cmd_audit_verify(args: argparse.Namespace, engine: sa.Engine) -> int:
    """Check the audit ledger's hash chain: 0 intact, 1 broken (naming the first broken row)."""
    from reports import ledger

    report = ledger.verify_ledger(engine)
    print(ledger.ledger_message(report), file=sys.stdout if report.breach is None else sys.stderr)
    return EXIT_OK if report.breach is None else EXIT_FAILED


def cmd_audit_verify_export(args: argparse.Namespace, engine: sa.Engine) -> int:
    """Whether a file is byte for byte an export Runwatch recorded: 0 matched, 1 no match."""
    from reports import ledger

    try:
        with open(args.file, "rb") as stream:
            digest, found = ledger.match_export(engine, stream)
    except OSError as error:
        raise RunwatchError(f"Cannot read {args.file}: {error.strerror}.") from None
    print(ledger.export_message(digest, found), file=sys.stdout if found else sys.stderr)
    return EXIT_OK if found else EXIT_FAILED


# ---------------------------------------------------------------- worker and seeding


def cmd_worker(args: argparse.Namespace, engine: sa.Engine) -> int:
    """Execute pending runs until stopped (SIGTERM/Ctrl-C finish the current run first)."""
    from etl.worker import Worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with suppress(io.UnsupportedOperation):  # a stderr that is no file (captured) cannot take it
        faulthandler.register(signal.SIGUSR1, all_threads=True)  # kill -USR1: every thread's stack
    worker = Worker(engine, get_settings())
    worker.runner.on_progress = _log_outcome
    with stop_on_signals(worker):
        if not args.once:
            worker.run_forever()
            return EXIT_OK
        ran = worker.run_once()
    if ran is None:
        print("No pending run.", file=sys.stderr)
        return EXIT_OK
    return EXIT_OK if ran.status == RunStatus.FINISHED else EXIT_FAILED


def _log_outcome(run: Run) -> None:
    if run.status in TERMINAL_STATUSES:
        logging.getLogger("runwatch.worker").info(outcome(run))


@contextmanager
def stop_on_signals(worker: Worker) -> Iterator[None]:
    """SIGTERM or Ctrl-C: finish the current run, then stop; a second Ctrl-C quits at once."""

    def on_signal(signum: int, frame: object) -> None:
        if worker.stopping.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        print("Stopping after the current run (Ctrl-C again to quit at once)...", file=sys.stderr)
        worker.stop()

    with _signals_handled_by(on_signal):
        yield


def cmd_seed_history(args: argparse.Namespace, engine: sa.Engine) -> int:
    """Bulk-insert realistic past runs and their events (for demos and benchmarks)."""
    from etl.progress import ProgressBar
    from etl.seed import seed_history

    bar = ProgressBar("seeding runs", args.days * args.runs_per_day)
    count = seed_history(
        engine,
        days=args.days,
        runs_per_day=args.runs_per_day,
        events_per_run=args.events_per_run,
        seed=args.seed,
        progress=lambda done, total: bar.update(done, total),
    )
    bar.close("done")
    events = count * args.events_per_run
    print(f"Seeded {count:,} runs and {events:,} events over the last {args.days} days.")
    return EXIT_OK


def refuse_new_database(url: str) -> None:
    """RunwatchError when `url` names a SQLite file that does not exist: only init-db creates one.

    Otherwise a moved or deleted file would silently give this command a new, empty database
    while the app and the API keep the old one open.
    """
    path = sqlite_file(url)
    if path is not None and not path.exists():
        raise RunwatchError(
            f"No database at {path}. Create it with `runwatch init-db` (make run does), or point "
            "RUNWATCH_DATABASE_URL at the database you mean."
        )
