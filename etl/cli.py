"""The `runwatch` command line: everything Runwatch does, without the web app."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any

import pydantic
import sqlalchemy as sa

from db.engine import get_engine, sqlite_file
from db.migrate import init_db
from db.models import MAX_ID, TERMINAL_STATUSES, Job, Run, RunRow, RunStatus, Trigger
from db.queries import (
    SORT_KEYS,
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
from etl import cli_alerts, commands
from etl.commands import EXIT_USAGE
from etl.jobs import JOB_KINDS, JobError
from etl.progress import ProgressBar
from etl.runner import Runner
from etl.schedules import Catchup
from etl.worker import Worker, make_worker_id
from reports import dates, ledger
from reports.durations import format_duration
from reports.eta import Pace

EXIT_OK, EXIT_FAILED = 0, 1

Command = Callable[[argparse.Namespace, sa.Engine], int]


def cmd_init_db(args: argparse.Namespace, engine: sa.Engine) -> int:
    """Create or migrate the schema (every command does this first) and say where."""
    print(f"Database ready: {sa.make_url(get_settings().database_url).render_as_string()}")
    return EXIT_OK


def cmd_jobs(args: argparse.Namespace, engine: sa.Engine) -> int:
    """List the configured jobs."""
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
    commands.pause(engine, caller(), args.job)
    print(f"Job {args.job} paused: its schedule enqueues nothing and Run now is refused.")
    return EXIT_OK


def cmd_unpause(args: argparse.Namespace, engine: sa.Engine) -> int:
    """Resume a paused job: its schedule runs again from its next tick."""
    job = commands.unpause(engine, caller(), args.job)
    nxt = f"; next scheduled run {job.next_run_at:%Y-%m-%d %H:%M} UTC" if job.next_run_at else ""
    print(f"Job {args.job} resumed{nxt}.")
    return EXIT_OK


def cmd_add_job(args: argparse.Namespace, engine: sa.Engine) -> int:
    """Configure a job (or replace one with --replace), its parameters checked by its kind."""
    job, existed = commands.add_job(
        engine,
        caller(),
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


def caller() -> commands.Caller:
    """The CLI's caller: the configured actor, through the CLI."""
    return commands.Caller(actor=get_settings().actor, source=commands.Source.CLI)


def cmd_serve_api(args: argparse.Namespace, engine: sa.Engine) -> int:
    """Serve the HTTP API and live feed."""
    from api.app import serve

    serve(host=args.host, port=args.port)
    return EXIT_OK


# ---------------------------------------------------------------- argument types


def parse_param(text: str) -> tuple[str, Any]:
    """`key=value` with the value read as JSON when it is JSON (numbers, booleans), else as text."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return key.strip(), value


def parse_moment(text: str, *, day_end: bool = False) -> datetime:
    """An ISO date or datetime as aware UTC (naive means UTC); a bare date ends at midnight if `day_end`."""
    try:
        return dates.parse_moment(text, day_end=day_end)  # --until 2026-11-30 includes that day
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO date or datetime like 2026-11-30 or 2026-11-30T08:00, got {text!r}"
        ) from None


def parse_until(text: str) -> datetime:
    """The end of a --until range (exclusive; a bare date includes that day)."""
    return parse_moment(text, day_end=True)


def at_least(minimum: int, maximum: int = MAX_ID) -> Callable[[str], int]:
    """An argparse type: a whole number from `minimum` to `maximum`."""

    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {number}")
        if number > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum:,}, got {number:,}")
        return number

    return parse


# ---------------------------------------------------------------- run, cancel, resume


def cmd_run(args: argparse.Namespace, engine: sa.Engine) -> int:
    """Start a run of a job here with a progress bar (or enqueue it with --detach)."""
    here = None if args.detach else make_worker_id("cli")
    run = commands.trigger(engine, caller(), args.job, dict(args.params), run_here=here)
    if args.detach:
        print(run.id)
        print(
            f"Run #{run.id} of {run.job} enqueued for a worker (runwatch worker).", file=sys.stderr
        )
        return EXIT_OK
    return execute_here(engine, run)


def cmd_cancel(args: argparse.Namespace, engine: sa.Engine) -> int:
    """Cancel a pending run, or ask a running one to stop after its current batch."""
    run = commands.cancel(engine, caller(), args.run_id)
    if run.status == RunStatus.CANCELLED:
        print(f"Run #{run.id} cancelled.")
    else:
        print(f"Cancel requested: run #{run.id} stops after its current batch.")
    return EXIT_OK


def cmd_resume(args: argparse.Namespace, engine: sa.Engine) -> int:
    """Resume a failed or cancelled run from its checkpoint (or from 0 with --restart)."""
    here = None if args.detach else make_worker_id("cli")
    run = commands.resume(
        engine, caller(), args.run_id, from_checkpoint=not args.restart, run_here=here
    )
    how = "from the start" if args.restart else f"from offset {run.offset:,}"
    print(f"Run #{run.id} resumes run #{args.run_id} {how}.", file=sys.stderr)
    if args.detach:
        print(run.id)
        return EXIT_OK
    return execute_here(engine, run)


def execute_here(engine: sa.Engine, run: Run) -> int:
    """Execute a running run in this process with a progress bar; Ctrl-C cancels it."""
    with read_session(engine) as session:
        history = job_throughputs(session=session, job=run.job)
    bar = ProgressBar(f"#{run.id} {run.job}", run.total_records, start=run.offset, history=history)
    if bar.tty:
        bar.update(run.offset, force=True)

    def progress(r: Run) -> None:
        bar.update(r.offset, r.total_records, pace=Pace.from_dict(r.pace))

    runner = Runner(engine, get_settings(), on_progress=progress)
    assert run.id is not None
    with cancel_on_interrupt(engine, run.id):
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
def cancel_on_interrupt(engine: sa.Engine, run_id: int) -> Iterator[None]:
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
        threading.Thread(target=_cancel_quietly, args=(engine, run_id), daemon=True).start()

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


def _cancel_quietly(engine: sa.Engine, run_id: int) -> None:
    with suppress(RunwatchError):  # the run may have ended meanwhile
        commands.cancel(engine, caller(), run_id)


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
            export(engine, args.format, filters, sort, out)
        out.flush()
    finally:
        if args.output:
            out.close()
    return EXIT_OK


def export(engine: sa.Engine, fmt: Any, filters: RunFilters, sort: RunSort, out: Any) -> None:
    """Stream the audit export: the very bytes the app and the API produce."""
    for chunk in commands.export(engine, caller(), fmt, filters, sort):
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
    report = ledger.verify_ledger(engine)
    print(ledger.ledger_message(report), file=sys.stdout if report.breach is None else sys.stderr)
    return EXIT_OK if report.breach is None else EXIT_FAILED


def cmd_audit_verify_export(args: argparse.Namespace, engine: sa.Engine) -> int:
    """Whether a file is byte for byte an export Runwatch recorded: 0 matched, 1 no match."""
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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
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


# ---------------------------------------------------------------- parser and main


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="runwatch", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("init-db", help="create or migrate the database").set_defaults(
        handler=cmd_init_db
    )
    commands.add_parser("jobs", help="list the jobs").set_defaults(handler=cmd_jobs)
    _add_job_command(commands)
    for name, handler, what in (
        ("pause", cmd_pause, "pause a job: no scheduled run, no Run now"),
        ("unpause", cmd_unpause, "resume a paused job"),
    ):
        command = commands.add_parser(name, help=what)
        command.add_argument("job", metavar="JOB", help="the job's name (see `runwatch jobs`)")
        command.set_defaults(handler=handler)
    _add_run_commands(commands)
    _add_runs_command(commands)
    worker = commands.add_parser("worker", help="execute pending runs until stopped")
    worker.add_argument("--once", action="store_true", help="execute at most one run, then exit")
    worker.set_defaults(handler=cmd_worker)
    _add_seed_command(commands)
    _add_audit_commands(commands)
    cli_alerts.add_commands(commands, caller)
    serve = commands.add_parser("serve-api", help="serve the HTTP API and SSE feed")
    serve.add_argument("--host", default=settings.api_host)
    serve.add_argument("--port", type=int, default=settings.api_port)
    serve.set_defaults(handler=cmd_serve_api)
    return parser


def _add_params_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "-p",
        dest="params",
        metavar="KEY=VALUE",
        type=parse_param,
        action="append",
        default=[],
        help=f"{what}; JSON values (numbers, true/false, objects) are typed, anything else is text",
    )


def _add_job_command(commands: Any) -> None:
    add = commands.add_parser("add-job", help="configure a job (admins)")
    add.add_argument("name", metavar="NAME", help="the job's name: lower-case letters, digits, _ -")
    add.add_argument("--kind", required=True, help="which job class runs it: demo, csv_import, …")
    add.add_argument("--title", default="", help="the name the app shows (default: NAME)")
    add.add_argument(
        "--schedule", default=None, help="a cron expression the workers run it on, e.g. '0 2 * * *'"
    )
    add.add_argument(
        "--timezone", default="UTC", help="the schedule's wall clock, an IANA name (default UTC)"
    )
    add.add_argument(
        "--catchup",
        choices=[str(c) for c in Catchup],
        default=str(Catchup.LATEST),
        help="missed ticks when workers come back: none, the latest (default) or all (capped)",
    )
    add.add_argument("--disabled", action="store_true", help="configure it, but refuse runs")
    add.add_argument("--replace", action="store_true", help="change a job that exists")
    _add_params_option(add, "a default parameter")
    add.set_defaults(handler=cmd_add_job)


def _add_run_commands(commands: Any) -> None:
    run = commands.add_parser("run", help="run a job here with a progress bar")
    run.add_argument("job", metavar="JOB", help="the job's name (see `runwatch jobs`)")
    _add_params_option(run, "a parameter")
    run.add_argument(
        "--detach", action="store_true", help="only enqueue it for a worker; print its id"
    )
    run.set_defaults(handler=cmd_run)
    cancel = commands.add_parser("cancel", help="cancel a pending or running run")
    cancel.add_argument("run_id", metavar="RUN_ID", type=at_least(1))
    cancel.set_defaults(handler=cmd_cancel)
    resume = commands.add_parser("resume", help="resume a failed or cancelled run here")
    resume.add_argument("run_id", metavar="RUN_ID", type=at_least(1))
    resume.add_argument("--restart", action="store_true", help="start again from record 0")
    resume.add_argument(
        "--detach", action="store_true", help="only enqueue it for a worker; print its id"
    )
    resume.set_defaults(handler=cmd_resume)


def _add_runs_command(commands: Any) -> None:
    runs = commands.add_parser("runs", help="list or export the run history")
    runs.add_argument(
        "--status", action="append", choices=[str(s) for s in RunStatus], help="repeatable"
    )
    runs.add_argument("--job", action="append", help="repeatable")
    runs.add_argument(
        "--trigger", action="append", choices=[str(t) for t in Trigger], help="repeatable"
    )
    runs.add_argument(
        "--since",
        type=parse_moment,
        metavar="DATE",
        help="created at or after (UTC unless an offset is given)",
    )
    runs.add_argument(
        "--until",
        type=parse_until,
        metavar="DATE",
        help="created before (a bare date includes that day)",
    )
    runs.add_argument("--sort", choices=SORT_KEYS, default="created_at")
    runs.add_argument("--asc", action="store_true", help="oldest or smallest first")
    runs.add_argument("--format", choices=("table", "csv", "json"), default="table")
    runs.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    runs.add_argument("--limit", type=at_least(0), default=50, help="table rows to show (0: all)")
    runs.set_defaults(handler=cmd_runs)


def _add_seed_command(commands: Any) -> None:
    seed = commands.add_parser("seed-history", help="bulk-insert realistic past runs")
    seed.add_argument("--days", type=at_least(1, 3650), required=True)
    seed.add_argument("--runs-per-day", type=at_least(1, 1_000_000), required=True)
    seed.add_argument("--events-per-run", type=at_least(2, 1000), default=20)
    seed.add_argument("--seed", type=int, default=0, help="same seed, same history")
    seed.set_defaults(handler=cmd_seed_history)


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


def _add_audit_commands(commands: Any) -> None:
    audit = commands.add_parser("audit", help="check the tamper-evident audit ledger")
    checks = audit.add_subparsers(dest="audit_command", required=True, metavar="CHECK")
    verify = checks.add_parser("verify", help="check the hash chain; name the first broken row")
    verify.set_defaults(handler=cmd_audit_verify)
    export = checks.add_parser(
        "verify-export", help="whether FILE is exactly an export Runwatch recorded, and whose"
    )
    export.add_argument("file", metavar="FILE", help="a CSV or JSON export")
    export.set_defaults(handler=cmd_audit_verify_export)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; exit codes: 0 ok, 1 run failed, 2 bad usage or input, 3 job already active."""
    try:
        args = build_parser().parse_args(argv)
        if args.handler is not cmd_init_db:
            refuse_new_database(get_settings().database_url)
        engine = get_engine()
        init_db(engine)
        handler: Command = args.handler
        return handler(args, engine)
    except SystemExit as exit:  # argparse's usage errors (2) and --help (0), also from main([...])
        return exit.code if isinstance(exit.code, int) else EXIT_USAGE
    except RunwatchError as error:
        print(f"runwatch: {error}", file=sys.stderr)
        return commands.refusal(error).exit_code
    except JobError as error:
        print(f"runwatch: {error}", file=sys.stderr)
        return EXIT_USAGE
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


def _first_error(error: pydantic.ValidationError) -> str:
    first = error.errors()[0]
    name = "RUNWATCH_" + str(first["loc"][0]).upper() if first["loc"] else "setting"
    return f"{name}: {first['msg']}"


if __name__ == "__main__":
    sys.exit(main())
