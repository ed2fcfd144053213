"""`runwatch alerts …`, and three `runwatch worker` processes sending one failure's alert once."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from db.settings import Settings, get_settings
from etl import commands
from etl.cli import main
from tests.alerting import closed_port_url, webhook_receiver
from tests.conftest import configure
from tests.test_etl_alerts import ADMIN, FAILING, alerts, deliveries, verified, wait_until
from tests.test_etl_cli import cli_process, exited

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def quick_alerts(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Alert checks every 0.2 s, two quick retries and the test webhook secret, in the environment."""
    values = {
        "ALERT_CHECK_S": "0.2",
        "ALERT_RETRIES": "2",
        "ALERT_BACKOFF_S": "0.01",
        "ALERT_TIMEOUT_S": "2",
        "WEBHOOK_SECRET": "hook-secret",
    }
    configure(monkeypatch, values)
    yield
    get_settings.cache_clear()


def test_three_worker_processes_send_a_failures_alert_once(
    engine: sa.Engine, quick_alerts: None
) -> None:
    with webhook_receiver() as hook:
        commands.add_alert_rule(engine, ADMIN, kind="failed", channel="webhook", target=hook.url)
        workers = [cli_process("worker") for _ in range(3)]
        try:
            commands.trigger(engine, ADMIN, "demo", FAILING)
            wait_until(lambda: [a.status for a in alerts(engine)] == ["sent"], deadline_s=120)
            time.sleep(1.5)  # several more checks by each of the three
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            for worker in workers:
                exited(worker)
    assert len(alerts(engine)) == 1 and len(deliveries(engine)) == 1
    [(headers, body)] = hook.requests
    assert verified(headers, body) and json.loads(body)["kind"] == "failed"


def test_rules_added_listed_and_removed_from_the_command_line(
    engine: sa.Engine, quick_alerts: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["alerts", "add", "--kind", "slow", "--channel", "app", "--job", "demo"]) == 0
    assert "Alert rule #1 added: slow (slower than the job's p90), job demo -> app" in (
        capsys.readouterr().out
    )
    assert (
        main(
            ["alerts", "add", "--kind", "queue_wait", "--channel", "email", "--target", "a@b.test"]
        )
        == 0
    )
    assert main(["alerts", "add", "--kind", "failed", "--channel", "webhook", "--target", "x"]) == 2
    assert "must be an http(s) URL" in capsys.readouterr().err
    assert main(["alerts", "list"]) == 0
    listed = capsys.readouterr().out
    assert "#1     slow" in listed and "queue_wait > 10 min, job * -> email a@b.test" in listed
    assert main(["alerts", "remove", "1"]) == 0
    assert main(["alerts", "remove", "1"]) == 2
    assert "No alert rule #1" in capsys.readouterr().err


def test_alerts_test_prints_each_attempt_and_fails_when_none_got_through(
    engine: sa.Engine, quick_alerts: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with webhook_receiver(500) as hook:
        assert main(["alerts", "test", "webhook", "--target", hook.url]) == 0
    out, err = capsys.readouterr()
    assert "attempt 1 webhook" in err and "[500]" in err and "FAILED: HTTP 500" in err
    assert "attempt 2 webhook" in out and "[200]" in out and out.rstrip().endswith(": ok")
    down = closed_port_url()
    assert main(["alerts", "test", "webhook", "--target", down]) == 1
    assert capsys.readouterr().err.count("FAILED: ConnectError") == 3
    assert main(["alerts", "test", "app"]) == 0
    assert "in the app's notification list" in capsys.readouterr().out
    assert main(["alerts", "test", "email"]) == 2  # no --target
    assert main(["alerts", "deliveries", "--limit", "2"]) == 0
    assert capsys.readouterr().out.count("ConnectError") == 2
    assert main(["alerts", "recent"]) == 0
    recent = capsys.readouterr().out.splitlines()
    assert [line.split()[3] for line in recent] == ["app", "failed", "sent"]
