"""The `runwatch` command line: everything Runwatch does, without the web app."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import sqlalchemy as sa

from db.engine import get_engine
from db.migrate import init_db
from db.queries import RunwatchError, list_jobs, read_session
from db.settings import get_settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ACTIVE = 0, 1, 2, 3

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
            print(f"{job.name:<20} {job.kind:<12} {job.schedule or '-':<15} {job.params}{state}")
    return EXIT_OK


def cmd_serve_api(args: argparse.Namespace, engine: sa.Engine) -> int:
    """Serve the HTTP API and live feed."""
    from etl.api import serve

    serve(host=args.host, port=args.port)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="runwatch", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("init-db", help="create or migrate the database").set_defaults(
        handler=cmd_init_db
    )
    commands.add_parser("jobs", help="list the jobs").set_defaults(handler=cmd_jobs)
    serve = commands.add_parser("serve-api", help="serve the HTTP API and SSE feed")
    serve.add_argument("--host", default=settings.api_host)
    serve.add_argument("--port", type=int, default=settings.api_port)
    serve.set_defaults(handler=cmd_serve_api)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; exit codes: 0 ok, 1 run failed, 2 bad usage or input, 3 job already active."""
    args = build_parser().parse_args(argv)
    try:
        engine = get_engine()
        init_db(engine)
        handler: Command = args.handler
        return handler(args, engine)
    except RunwatchError as error:
        print(f"runwatch: {error}", file=sys.stderr)
        return EXIT_USAGE
    except sa.exc.OperationalError as error:
        print(f"runwatch: cannot reach the database: {error.orig}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
