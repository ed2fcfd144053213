"""Alerts: rules matched once per event, delivered to a local webhook receiver and a local SMTP
server, every attempt stored, a channel that is down never blocking a run (SQLite and PostgreSQL)."""

from __future__ import annotations

import email
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from sqlmodel import col, select

from db.models import Alert, AlertDelivery, AuditEvent, EventKind, Run, RunStatus, utcnow
from db.queries import (
    alert_channel_status,
    delivery_counts,
    insert_alerts,
    list_alerts,
    read_session,
    reclaim_alerts,
    run_state_event,
    unread_count,
    write_session,
)
from db.settings import Settings
from etl import commands
from etl.alerts import AlertChecker, delivery_lease
from etl.commands import Caller, Source
from etl.notify import SIGNATURE, TIMESTAMP, Dispatcher, deliver
from etl.worker import Worker
from tests.alerting import PASSWORD, USER, closed_port_url, smtp_server, webhook_receiver
from tests.factories import make_run

pytestmark = pytest.mark.timeout(120)
ADMIN = Caller("admin", Source.CLI)
SECRET = "hook-secret"
FAILING = {"total": 10, "batch_size": 5, "fail_at": 5, "delay_ms": 0}


@pytest.fixture
def fast(settings: Settings) -> Settings:
    """The test settings with quick checks and retries and a webhook secret."""
    return settings.model_copy(
        update={
            "alert_check_s": 0.1,
            "alert_timeout_s": 2.0,
            "alert_retries": 2,
            "alert_backoff_s": 0.05,
            "webhook_secret": SecretStr(SECRET),
        }
    )


def fail_a_run(engine: sa.Engine, settings: Settings, job: str = "demo") -> Run:
    """Trigger a run of `job` that fails half-way and execute it here."""
    commands.trigger(engine, ADMIN, job, FAILING)
    run = Worker(engine, settings).run_once()
    assert run is not None and run.status == RunStatus.FAILED
    return run


def check(
    engine: sa.Engine, settings: Settings, clock: Callable[[], datetime] = utcnow
) -> list[Alert]:
    """One check by a fresh checker, its deliveries waited for."""
    checker = AlertChecker(engine, settings, clock=clock)
    raised = checker.check()
    checker.dispatcher.close()
    return raised


def alerts(engine: sa.Engine) -> list[Alert]:
    with read_session(engine) as session:
        return list(session.exec(select(Alert).order_by(col(Alert.id))).all())


def deliveries(engine: sa.Engine) -> list[AlertDelivery]:
    with read_session(engine) as session:
        return list(session.exec(select(AlertDelivery).order_by(col(AlertDelivery.id))).all())


def verified(headers: Any, body: bytes) -> bool:
    """What a receiver does: recompute the HMAC of "<timestamp>.<body>" and compare in constant time."""
    signed = headers[TIMESTAMP].encode() + b"." + body
    expected = "sha256=" + hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers[SIGNATURE])


# ---------------------------------------------------------------- webhook


def test_a_failed_run_reaches_a_signed_webhook_once(engine: sa.Engine, fast: Settings) -> None:
    with webhook_receiver() as hook:
        commands.add_alert_rule(engine, ADMIN, kind="failed", channel="webhook", target=hook.url)
        run = fail_a_run(engine, fast)
        [raised] = check(engine, fast)
        assert check(engine, fast) == []  # the same event again: nothing new
    [(headers, body)] = hook.requests
    assert verified(headers, body)
    sent = json.loads(body)
    assert (sent["kind"], sent["job"], sent["run_id"]) == ("failed", "demo", run.id)
    assert sent["message"].startswith(f"Run #{run.id} of demo failed: RuntimeError: Demo failure")
    [alert] = alerts(engine)
    assert (alert.id, alert.status, alert.dedup_key) == (
        raised.id,
        "sent",
        f"r1:failed:run:{run.id}",
    )
    [attempt] = deliveries(engine)
    assert (attempt.ok, attempt.status_code, attempt.attempt) == (True, 200, 1)


def test_a_receiver_answering_500_then_200_gets_a_second_attempt(
    engine: sa.Engine, fast: Settings
) -> None:
    with webhook_receiver(500) as hook:
        commands.add_alert_rule(engine, ADMIN, kind="failed", channel="webhook", target=hook.url)
        fail_a_run(engine, fast)
        check(engine, fast)
    assert len(hook.requests) == 2 and all(verified(h, b) for h, b in hook.requests)
    first, second = deliveries(engine)
    assert (first.attempt, first.ok, first.status_code, first.error) == (1, False, 500, "HTTP 500")
    assert (second.attempt, second.ok, second.status_code) == (2, True, 200)
    assert alerts(engine)[0].status == "sent"


def test_a_receiver_that_is_down_never_blocks_a_run(engine: sa.Engine, fast: Settings) -> None:
    down = closed_port_url()
    commands.add_alert_rule(engine, ADMIN, kind="failed", channel="webhook", target=down)
    slow_channel = fast.model_copy(update={"alert_backoff_s": 1.0})  # 1 + 2 s of waiting
    worker = Worker(engine, slow_channel)
    thread = threading.Thread(target=worker.run_forever)
    thread.start()
    try:
        failing = commands.trigger(engine, ADMIN, "demo", FAILING)
        wait_until(lambda: status_of(engine, failing.id) == RunStatus.FAILED)
        wait_until(lambda: len(alerts(engine)) == 1)  # raised: its delivery is retrying now
        started = time.monotonic()
        quick = commands.trigger(engine, ADMIN, "demo", {"total": 10, "batch_size": 5})
        wait_until(lambda: status_of(engine, quick.id) == RunStatus.FINISHED)
        assert time.monotonic() - started < 2.5  # not behind the retries' 3 s of waiting
    finally:
        worker.stop()
        thread.join(timeout=60)
    attempts = deliveries(engine)
    assert [(a.attempt, a.ok, a.target) for a in attempts] == [(n, False, down) for n in (1, 2, 3)]
    assert all("ConnectError" in (a.error or "") for a in attempts)
    assert alerts(engine)[0].status == "failed"
    with read_session(engine) as session:
        [status] = alert_channel_status(session=session)
        counts = delivery_counts(session=session)
    assert (status.channel, status.target, status.ok) == ("webhook", down, False)
    assert counts == {("webhook", False): 3}


# ---------------------------------------------------------------- a deliverer that died


def left_pending(engine: sa.Engine, url: str, claimed_ago: timedelta, run_id: int = 1) -> Alert:
    """A webhook alert whose worker raised and claimed it `claimed_ago`, then stopped for good."""
    raised = Alert(
        dedup_key=f"r1:failed:run:{run_id}",
        kind="failed",
        job="demo",
        run_id=run_id,
        channel="webhook",
        target=url,
        message=f"Run #{run_id} of demo failed",
        created_at=utcnow() - claimed_ago,
    )
    with write_session(engine) as session:
        [stored] = insert_alerts(session=session, alerts=[raised])
    assert stored.claimed_at == stored.created_at
    return stored


def test_an_alert_its_worker_left_undelivered_is_delivered_by_the_next_check_once(
    engine: sa.Engine, fast: Settings
) -> None:
    lease = delivery_lease(fast)
    with webhook_receiver() as hook:
        lost = left_pending(engine, hook.url, lease * 1.5, run_id=1)
        busy = left_pending(engine, hook.url, lease / 2, run_id=2)  # its worker may be at it
        assert check(engine, fast) == []  # nothing new raised (there is no rule)...
        check(engine, fast)  # ... and a second check finds nothing more to take over
    [(_, body)] = hook.requests
    assert json.loads(body)["run_id"] == 1
    by_id = {alert.id: alert for alert in alerts(engine)}
    assert by_id[lost.id].status == "sent" and by_id[busy.id].status == "pending"
    assert by_id[lost.id].claimed_at > lost.claimed_at
    assert [(d.alert_id, d.ok) for d in deliveries(engine)] == [(lost.id, True)]


def test_of_two_workers_taking_over_at_once_one_delivers(engine: sa.Engine, fast: Settings) -> None:
    with webhook_receiver() as hook:
        left_pending(engine, hook.url, delivery_lease(fast) * 2)
        checkers = [AlertChecker(engine, fast) for _ in range(2)]
        start, taken = threading.Barrier(2), []

        def take_over(checker: AlertChecker) -> None:
            start.wait()
            taken.extend(checker.take_over())

        threads = [threading.Thread(target=take_over, args=(c,)) for c in checkers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for checker in checkers:
            checker.dispatcher.close()
    assert len(taken) == 1 and len(hook.requests) == 1
    assert [alert.status for alert in alerts(engine)] == ["sent"]


def test_an_alert_taken_over_while_queued_is_left_to_the_worker_that_took_it(
    engine: sa.Engine, fast: Settings
) -> None:
    with webhook_receiver() as hook:
        queued = left_pending(engine, hook.url, delivery_lease(fast) * 2)
        with write_session(engine) as session:  # another worker's check, meanwhile
            [other] = reclaim_alerts(
                session=session, claimed_before=utcnow() - delivery_lease(fast), now=utcnow()
            )
        dispatcher = Dispatcher(engine, fast)
        assert dispatcher.submit(queued).result() == []  # the first worker gets to it: not its own
        dispatcher.close()
    assert hook.requests == []
    [alert] = alerts(engine)
    assert alert.status == "pending" and alert.claimed_at == other.claimed_at


# ---------------------------------------------------------------- e-mail


def test_a_failed_run_reaches_a_mailbox_over_starttls(
    engine: sa.Engine, fast: Settings, tmp_path: Path
) -> None:
    with smtp_server(tmp_path) as box:
        mail = fast.model_copy(
            update={
                "smtp_host": box.host,
                "smtp_port": box.port,
                "smtp_user": USER,
                "smtp_password": SecretStr(PASSWORD),
                "smtp_ca_file": str(box.cert),
                "smtp_from": "runwatch@example.test",
            }
        )
        commands.add_alert_rule(
            engine, ADMIN, kind="failed", channel="email", target="ops@example.test"
        )
        run = fail_a_run(engine, mail)
        check(engine, mail)
    [(sender, recipients, content, over_tls)] = box.messages
    assert (sender, recipients, over_tls) == ("runwatch@example.test", ["ops@example.test"], True)
    message = email.message_from_bytes(content)
    assert message["Subject"].startswith(f"[Runwatch] failed: Run #{run.id} of demo failed")
    assert f"Run: #{run.id}" in message.get_payload()
    [attempt] = deliveries(engine)
    assert (attempt.channel, attempt.ok) == ("email", True)


def test_an_untrusted_certificate_or_a_wrong_password_is_a_stored_failure(
    engine: sa.Engine, fast: Settings, tmp_path: Path
) -> None:
    with smtp_server(tmp_path) as box:
        base = {"smtp_host": box.host, "smtp_port": box.port, "smtp_user": USER}
        untrusted = fast.model_copy(
            update={**base, "smtp_password": SecretStr(PASSWORD), "alert_retries": 0}
        )
        wrong = fast.model_copy(
            update={**base, "smtp_password": SecretStr("nope"), "smtp_ca_file": str(box.cert)}
        )
        first = commands.test_alert(engine, ADMIN, "email", "ops@example.test")
        second = commands.test_alert(engine, ADMIN, "email", "ops@example.test")
        [refused_tls] = deliver(engine, untrusted, first)
        [refused_login] = deliver(engine, wrong, second)  # a 5xx refusal is final: no retry
    assert box.messages == []
    assert "CERTIFICATE_VERIFY_FAILED" in (refused_tls.error or "")
    assert refused_login.status_code == 535 and not refused_login.ok


# ---------------------------------------------------------------- the other kinds, each once


def test_a_big_run_at_the_usual_pace_is_not_slow_a_small_slow_one_is(
    engine: sa.Engine, fast: Settings
) -> None:
    now = utcnow()
    with write_session(engine) as session:  # the job's history: six runs at 30 ms a record
        for days in range(1, 7):
            make_run(session, started_at=now - timedelta(days=days))
    commands.add_alert_rule(engine, ADMIN, kind="slow", channel="app")
    with write_session(engine) as session:
        end = utcnow()  # both ended after the rule was made
        big = make_run(
            session, started_at=end - timedelta(seconds=300), ended_at=end, records_loaded=10_000
        )
        small = make_run(session, started_at=end - timedelta(seconds=5), ended_at=end)
        small.records_loaded = 100  # 50 ms a record
        for run in (big, small):
            run_state_event(session=session, run=run, kind=EventKind.STATUS, message="Run finished")
    found = check(engine, fast, lambda: now + timedelta(minutes=1))
    assert [(a.kind, a.run_id) for a in found] == [("slow", small.id)]
    assert "took 50.0 ms per record" in found[0].message


def test_slow_stuck_waiting_and_no_success_each_alert_once(
    engine: sa.Engine, fast: Settings
) -> None:
    now = utcnow()
    with write_session(engine) as session:  # the job's history: six 30 s runs
        for days in range(1, 7):
            make_run(session, started_at=now - timedelta(days=days))
    commands.add_job(engine, ADMIN, name="nightly", kind="demo", schedule="0 2 * * *")
    for kind, limit in (("slow", None), ("slow", 100.0), ("stuck", 30.0), ("queue_wait", 10.0)):
        commands.add_alert_rule(engine, ADMIN, kind=kind, channel="app", limit=limit)
    commands.add_alert_rule(engine, ADMIN, kind="no_success", channel="app", limit=1.0)
    with write_session(engine) as session:
        slow = make_run(session, started_at=utcnow() - timedelta(seconds=90), ended_at=utcnow())
        run_state_event(session=session, run=slow, kind=EventKind.STATUS, message="Run finished")
        quiet = dict(ended_at=None, offset=0)
        stuck = make_run(
            session, status="running", heartbeat_at=now - timedelta(seconds=45), **quiet
        )
        waiting = make_run(
            session,
            job="csv_import",
            status="pending",
            started_at=now - timedelta(minutes=15),
            **quiet,
        )
    later = lambda: now + timedelta(hours=2)  # noqa: E731 (nightly has not succeeded for 2 h)
    first = check(engine, fast, later)
    assert check(engine, fast, later) == []
    assert sorted((a.kind, a.job, a.run_id) for a in first) == [
        ("no_success", "nightly", None),
        ("queue_wait", "csv_import", waiting.id),
        (
            "slow",
            "demo",
            slow.id,
        ),  # 90 ms a record: over the p90 (54 ms, itself counted); 90 s < 100 s
        ("stuck", "demo", stuck.id),
    ]
    messages = {a.kind: a.message for a in first}
    assert (
        "took 90.0 ms per record, slower than its job's p90 of 54.0 ms (7 runs in 30 days)"
        in (messages["slow"])
    )
    assert "has waited" in messages["queue_wait"] and "no heartbeat" in messages["stuck"]
    assert (
        messages["no_success"]
        == "Job nightly has had no successful run for over 1 h (no success yet)."
    )
    assert {a.status for a in alerts(engine)} == {"app"} and deliveries(engine) == []


def test_a_rule_never_alerts_on_what_happened_before_it(engine: sa.Engine, fast: Settings) -> None:
    fail_a_run(engine, fast)
    commands.add_alert_rule(engine, ADMIN, kind="failed", channel="app")
    assert check(engine, fast) == []
    fail_a_run(engine, fast)
    assert len(check(engine, fast)) == 1


def test_a_job_rule_watches_its_job_only(engine: sa.Engine, fast: Settings) -> None:
    commands.add_job(engine, ADMIN, name="other", kind="demo")
    commands.add_alert_rule(engine, ADMIN, kind="failed", channel="app", job="other")
    fail_a_run(engine, fast, "demo")
    assert check(engine, fast) == []
    fail_a_run(engine, fast, "other")
    assert [a.job for a in check(engine, fast)] == ["other"]


# ---------------------------------------------------------------- commands


def test_rules_are_checked_and_every_change_is_audited(engine: sa.Engine) -> None:
    for bad in (
        {"kind": "exploded", "channel": "app"},
        {"kind": "failed", "channel": "pager"},
        {"kind": "failed", "channel": "webhook", "target": "ftp://example.test/"},
        {"kind": "failed", "channel": "email", "target": "ops@example.test\nBcc: x@y"},
        {"kind": "failed", "channel": "app", "limit": 5.0},
        {"kind": "slow", "channel": "app", "limit": -1.0},
    ):
        with pytest.raises(commands.BadParams):
            commands.add_alert_rule(engine, ADMIN, **bad)
    with pytest.raises(commands.NotFound):
        commands.add_alert_rule(engine, ADMIN, kind="failed", channel="app", job="nope")
    rule = commands.add_alert_rule(engine, ADMIN, kind="failed", channel="app")
    commands.remove_alert_rule(engine, ADMIN, rule.id or 0)
    with pytest.raises(commands.NotFound):
        commands.remove_alert_rule(engine, ADMIN, rule.id or 0)
    commands.test_alert(engine, ADMIN, "app")
    with read_session(engine) as session:
        assert unread_count(session=session) == 1
    assert commands.mark_alerts_read(engine, ADMIN) == 1
    with read_session(engine) as session:
        assert unread_count(session=session) == 0
        assert list_alerts(session=session)[0].alert.read_at is not None
        audit = session.exec(select(AuditEvent).order_by(col(AuditEvent.id))).all()
    assert [(a.action, a.target, a.details.get("change")) for a in audit] == [
        ("alert_rule", f"alert_rule:{rule.id}", "add"),
        ("alert_rule", f"alert_rule:{rule.id}", "remove"),
        ("alert_test", "alert:1", None),
        ("alerts_read", "alerts", None),
    ]


# ---------------------------------------------------------------- helpers


def status_of(engine: sa.Engine, run_id: int | None) -> str:
    with read_session(engine) as session:
        run = session.get(Run, run_id)
        assert run is not None
        session.refresh(run)
        return run.status


def wait_until(done: Callable[[], bool], deadline_s: float = 60) -> None:
    """Poll `done()` until it holds; fail after a generous deadline (a hang, not a timing check)."""
    deadline = time.monotonic() + deadline_s
    while not done():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.05)


def test_0013_claims_the_pending_alerts_when_they_were_raised_and_downgrades(
    database_url: str,
) -> None:
    from alembic import command

    from db.engine import WRITE_OPTION, make_engine
    from db.migrate import alembic_config

    engine = make_engine(database_url)
    config = alembic_config()
    with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0012")
        for key, status in (("r1:a", "pending"), ("r1:b", "sent")):
            conn.exec_driver_sql(
                "INSERT INTO alert (dedup_key, kind, channel, target, message, status, created_at)"
                f" VALUES ('{key}', 'failed', 'webhook', '', '', '{status}', '2026-01-01')"
            )
        command.upgrade(config, "0013")
        claims = "SELECT status, claimed_at = created_at FROM alert ORDER BY id"
        assert conn.exec_driver_sql(claims).all() == [("pending", True), ("sent", None)]
        command.downgrade(config, "0012")
        assert "claimed_at" not in {c["name"] for c in sa.inspect(conn).get_columns("alert")}
    engine.dispose()


def test_0011_starts_the_cursor_at_the_newest_event_and_downgrades(database_url: str) -> None:
    from alembic import command

    from db.engine import WRITE_OPTION, make_engine
    from db.migrate import alembic_config

    engine = make_engine(database_url)
    config = alembic_config()
    with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0010")
        make = "INSERT INTO run (job, status, trigger, triggered_by, params, counters, created_at, "
        make += '"offset", records_loaded, records_rejected, cancel_requested) VALUES '
        make += "('demo', 'failed', 'manual', '', '{}', '{}', '2026-01-01', 0, 0, 0, false)"
        conn.exec_driver_sql(make)
        for _ in range(3):
            conn.exec_driver_sql(
                "INSERT INTO run_event (run_id, ts, kind, level, message, data) "
                "VALUES (1, '2026-01-01', 'status', 'ERROR', 'Run failed', '{}')"
            )
        command.upgrade(config, "0011")
        assert conn.exec_driver_sql("SELECT name, last_id FROM alert_cursor").all() == [
            ("ended", 3)
        ]
        command.downgrade(config, "0010")
        assert not sa.inspect(conn).has_table("alert")
    engine.dispose()
