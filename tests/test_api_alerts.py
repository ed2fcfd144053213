"""The alert routes: rules through etl.commands (audited, refused as everywhere), alerts with attempts."""

from __future__ import annotations

import httpx
import sqlalchemy as sa

from db.queries import list_audit, read_session
from etl import commands
from etl.notify import deliver
from tests.alerting import closed_port_url
from tests.test_etl_alerts import ADMIN


def test_rules_are_added_listed_and_removed_over_http(
    engine: sa.Engine, client: httpx.Client
) -> None:
    body = {
        "kind": "no_success",
        "channel": "email",
        "target": "ops@example.test",
        "job": "demo",
        "limit": 6,
    }
    added = client.post("/api/alerts/rules", json=body)
    assert added.status_code == 201, added.text
    rule = added.json()
    assert (rule["kind"], rule["job"], rule["limit"], rule["target"]) == (
        "no_success",
        "demo",
        6,
        "ops@example.test",
    )
    assert [r["id"] for r in client.get("/api/alerts/rules").json()] == [rule["id"]]
    assert client.delete(f"/api/alerts/rules/{rule['id']}").status_code == 200
    assert client.get("/api/alerts/rules").json() == []
    missing = client.delete(f"/api/alerts/rules/{rule['id']}")
    assert (missing.status_code, missing.json()["error"]) == (404, "NotFound")
    with read_session(engine) as session:
        changes = list_audit(session=session, action="alert_rule")
    assert {(a.target, a.details["change"], a.details["source"]) for a in changes} == {
        (f"alert_rule:{rule['id']}", "add", "api"),
        (f"alert_rule:{rule['id']}", "remove", "api"),
    }


def test_a_bad_rule_is_refused_with_the_reason(client: httpx.Client) -> None:
    bad_kind = client.post("/api/alerts/rules", json={"kind": "boom", "channel": "app"})
    assert (
        bad_kind.status_code == 422 and "Alert kind 'boom' is unknown" in bad_kind.json()["detail"]
    )
    bad_url = client.post(
        "/api/alerts/rules", json={"kind": "failed", "channel": "webhook", "target": "x"}
    )
    assert bad_url.status_code == 422
    no_job = client.post(
        "/api/alerts/rules", json={"kind": "failed", "channel": "app", "job": "nope"}
    )
    assert no_job.status_code == 404


def test_alerts_come_with_their_delivery_attempts(
    engine: sa.Engine, settings, client: httpx.Client
) -> None:
    alert = commands.test_alert(engine, ADMIN, "webhook", closed_port_url())
    quick = settings.model_copy(update={"alert_retries": 1, "alert_backoff_s": 0.0})
    deliver(engine, quick, alert)
    commands.test_alert(engine, ADMIN, "app")
    page = client.get("/api/alerts").json()
    assert page["unread"] == 2
    app, hook = page["items"]
    assert (app["channel"], app["status"], app["deliveries"]) == ("app", "app", [])
    assert hook["status"] == "failed"
    assert [(d["attempt"], d["ok"]) for d in hook["deliveries"]] == [(1, False), (2, False)]
    commands.mark_alerts_read(engine, ADMIN)
    assert client.get("/api/alerts", params={"unread": True}).json() == {"unread": 0, "items": []}
