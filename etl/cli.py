"""The `runwatch` command line: everything Runwatch does, without the web app.

This module only parses: it imports nothing heavier than the names of `db.enums`, so `--help` and
usage errors answer at once. `etl.cli_commands` (the database, the jobs, the runner) is imported
when a command runs, and the account commands import `etl.accounts` (Argon2) only when they run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from db.enums import MAX_ID, SORT_KEYS, AlertKind, Catchup, Channel, RunStatus, Trigger
from etl.cli_accounts import add_account_commands
from reports import dates

if TYPE_CHECKING:
    import sqlalchemy as sa

EXIT_OK, EXIT_FAILED = 0, 1

Command = Callable[[argparse.Namespace, "sa.Engine"], int]


def lazy(name: str, module: str = "etl.cli_commands") -> Command:
    """The command `name` of `module`, imported only when it runs."""

    def handler(args: argparse.Namespace, engine: sa.Engine) -> int:
        command: Command = getattr(importlib.import_module(module), name)
        return command(args, engine)

    handler.__name__ = name
    return handler


DESCRIPTION = "The `runwatch` command line: everything Runwatch does, without the web app."


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


# ---------------------------------------------------------------- parser and main


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="runwatch", description=DESCRIPTION)
    parser.set_defaults(creates_database=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("init-db", help="create or migrate the database").set_defaults(
        handler=lazy("cmd_init_db"), creates_database=True
    )
    commands.add_parser("jobs", help="list the jobs").set_defaults(handler=lazy("cmd_jobs"))
    _add_job_command(commands)
    for name, handler, what in (
        ("pause", lazy("cmd_pause"), "pause a job: no scheduled run, no Run now"),
        ("unpause", lazy("cmd_unpause"), "resume a paused job"),
    ):
        command = commands.add_parser(name, help=what)
        command.add_argument("job", metavar="JOB", help="the job's name (see `runwatch jobs`)")
        command.set_defaults(handler=handler)
    _add_run_commands(commands)
    _add_runs_command(commands)
    worker = commands.add_parser("worker", help="execute pending runs until stopped")
    worker.add_argument("--once", action="store_true", help="execute at most one run, then exit")
    worker.set_defaults(handler=lazy("cmd_worker"))
    _add_seed_command(commands)
    _add_audit_commands(commands)
    add_account_commands(commands)
    add_alert_commands(commands)
    serve = commands.add_parser("serve-api", help="serve the HTTP API and SSE feed")
    serve.add_argument("--host", help="the address to listen on (default RUNWATCH_API_HOST)")
    serve.add_argument("--port", type=int, help="the port (default RUNWATCH_API_PORT)")
    serve.set_defaults(handler=lazy("cmd_serve_api"))
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
    add.set_defaults(handler=lazy("cmd_add_job"))


def _add_run_commands(commands: Any) -> None:
    run = commands.add_parser("run", help="run a job here with a progress bar")
    run.add_argument("job", metavar="JOB", help="the job's name (see `runwatch jobs`)")
    _add_params_option(run, "a parameter")
    run.add_argument(
        "--detach", action="store_true", help="only enqueue it for a worker; print its id"
    )
    run.set_defaults(handler=lazy("cmd_run"))
    cancel = commands.add_parser("cancel", help="cancel a pending or running run")
    cancel.add_argument("run_id", metavar="RUN_ID", type=at_least(1))
    cancel.set_defaults(handler=lazy("cmd_cancel"))
    resume = commands.add_parser("resume", help="resume a failed or cancelled run here")
    resume.add_argument("run_id", metavar="RUN_ID", type=at_least(1))
    resume.add_argument("--restart", action="store_true", help="start again from record 0")
    resume.add_argument(
        "--detach", action="store_true", help="only enqueue it for a worker; print its id"
    )
    resume.set_defaults(handler=lazy("cmd_resume"))


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
    runs.set_defaults(handler=lazy("cmd_runs"))


def _add_seed_command(commands: Any) -> None:
    seed = commands.add_parser("seed-history", help="bulk-insert realistic past runs")
    seed.add_argument("--days", type=at_least(1, 3650), required=True)
    seed.add_argument("--runs-per-day", type=at_least(1, 1_000_000), required=True)
    seed.add_argument("--events-per-run", type=at_least(2, 1000), default=20)
    seed.add_argument("--seed", type=int, default=0, help="same seed, same history")
    seed.set_defaults(handler=lazy("cmd_seed_history"))


def _add_audit_commands(commands: Any) -> None:
    audit = commands.add_parser("audit", help="check the tamper-evident audit ledger")
    checks = audit.add_subparsers(dest="audit_command", required=True, metavar="CHECK")
    verify = checks.add_parser("verify", help="check the hash chain; name the first broken row")
    verify.set_defaults(handler=lazy("cmd_audit_verify"))
    export = checks.add_parser(
        "verify-export", help="whether FILE is exactly an export Runwatch recorded, and whose"
    )
    export.add_argument("file", metavar="FILE", help="a CSV or JSON export")
    export.set_defaults(handler=lazy("cmd_audit_verify_export"))


def add_alert_commands(subcommands: Any) -> None:
    """Add `alerts` and its subcommands to the `runwatch` parser."""
    alerts = subcommands.add_parser("alerts", help="alert rules, test alerts and deliveries")
    actions = alerts.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add a rule (admins)")
    add.add_argument(
        "--kind", required=True, choices=[str(k) for k in AlertKind if k != AlertKind.TEST]
    )
    add.add_argument("--channel", required=True, choices=[str(c) for c in Channel])
    add.add_argument("--target", default="", help="webhook URL or e-mail address (not for app)")
    add.add_argument("--job", default=None, help="the job it watches (default: every job)")
    add.add_argument(
        "--limit",
        type=float,
        default=None,
        help="slow: seconds (default: the job's p90); no_success: hours (24); stuck: seconds "
        "(half the orphan timeout); queue_wait: minutes (10)",
    )
    remove = actions.add_parser("remove", help="remove a rule (admins)")
    remove.add_argument("rule_id", metavar="RULE_ID", type=int)
    test = actions.add_parser("test", help="send a test alert now; print each attempt")
    test.add_argument("channel", choices=[str(c) for c in Channel])
    test.add_argument("--target", default="", help="webhook URL or e-mail address")
    actions.add_parser("list", help="the rules")
    for name, what in (
        ("deliveries", "the newest delivery attempts"),
        ("recent", "the newest alerts"),
    ):
        shown = actions.add_parser(name, help=what)
        shown.add_argument("--limit", type=int, default=50)
    for name in ("add", "list", "remove", "test", "deliveries", "recent"):
        actions.choices[name].set_defaults(handler=lazy(f"cmd_{name}", "etl.cli_alerts"))


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; exit codes: 0 ok, 1 run failed, 2 bad usage or input, 3 job already active,
    4 refused: the role may not (RUNWATCH_TOKEN) or the token is unknown or revoked."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit:  # argparse's usage errors (2) and --help (0), also from main([...])
        return exit.code if isinstance(exit.code, int) else 2
    from etl.cli_commands import execute

    return execute(args)


if __name__ == "__main__":
    sys.exit(main())
