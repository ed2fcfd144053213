"""`runwatch alerts …`: alert rules, a test alert per channel, recent alerts and delivery attempts.

What each subcommand does; `etl.cli` builds their parser and imports this module when one runs.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

import sqlalchemy as sa

from db.models import AlertDelivery, Channel
from db.queries import list_alerts, list_deliveries, list_rules, read_session
from db.settings import get_settings
from etl import commands
from etl.alerts import describe
from etl.cli import EXIT_FAILED, EXIT_OK
from etl.notify import deliver


def cmd_add(args: argparse.Namespace, engine: sa.Engine) -> int:
    """Add a rule."""
    rule = commands.add_alert_rule(
        engine,
        args.caller,
        kind=args.kind,
        channel=args.channel,
        target=args.target,
        job=args.job,
        limit=args.limit,
    )
    print(f"Alert rule #{rule.id} added: {describe(rule)}")
    return EXIT_OK


def cmd_list(args: argparse.Namespace, engine: sa.Engine) -> int:
    """List the rules."""
    with read_session(engine) as session:
        rules = list_rules(session=session)
    for rule in rules:
        print(f"#{rule.id:<5} {describe(rule)}")
    if not rules:
        print("No alert rules. Add one: runwatch alerts add --kind failed --channel app")
    return EXIT_OK


def cmd_remove(args: argparse.Namespace, engine: sa.Engine) -> int:
    """Remove a rule."""
    rule = commands.remove_alert_rule(engine, args.caller, args.rule_id)
    print(f"Alert rule #{rule.id} removed: {describe(rule)}")
    return EXIT_OK


def cmd_test(args: argparse.Namespace, engine: sa.Engine) -> int:
    """Send a test alert now and print each attempt; 1 when no attempt got through."""
    alert = commands.test_alert(engine, args.caller, args.channel, args.target or "")
    if alert.channel == Channel.APP:
        print(f"Test alert #{alert.id} is in the app's notification list.")
        return EXIT_OK
    attempts = deliver(engine, get_settings(), alert)
    for attempt in attempts:
        print(attempt_line(attempt), file=sys.stdout if attempt.ok else sys.stderr)
    return EXIT_OK if any(a.ok for a in attempts) else EXIT_FAILED


def attempt_line(attempt: AlertDelivery) -> str:
    """One delivery attempt in one line."""
    outcome = "ok" if attempt.ok else f"FAILED: {attempt.error}"
    code = f" [{attempt.status_code}]" if attempt.status_code else ""
    return (
        f"{_utc(attempt.at)}  alert #{attempt.alert_id} attempt {attempt.attempt} "
        f"{attempt.channel} {attempt.target}{code} {attempt.duration_ms or 0:.0f} ms: {outcome}"
    )


def _utc(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S}"


def cmd_deliveries(args: argparse.Namespace, engine: sa.Engine) -> int:
    """The newest delivery attempts, newest first."""
    with read_session(engine) as session:
        for attempt in list_deliveries(session=session, limit=args.limit):
            print(attempt_line(attempt))
    return EXIT_OK


def cmd_recent(args: argparse.Namespace, engine: sa.Engine) -> int:
    """The newest alerts with their status, newest first."""
    with read_session(engine) as session:
        for alert, _ in list_alerts(session=session, limit=args.limit):
            read = "" if alert.read_at is None else " (read)"
            print(
                f"#{alert.id:<6} {_utc(alert.created_at)}  {alert.status:<7} {alert.channel:<7} {alert.message}{read}"
            )
    return EXIT_OK
