"""The notifications on Home and the alert rules on Jobs, run headless with AppTest."""

from __future__ import annotations

import sqlalchemy as sa

from db.queries import list_rules, read_session, unread_count
from etl import commands
from tests.pages import run_page, texts
from tests.test_etl_alerts import ADMIN
from ui import reads


def test_home_lists_alerts_with_the_unread_count_and_marks_them_read(
    engine: sa.Engine, no_worker: None
) -> None:
    commands.test_alert(engine, ADMIN, "app")
    at = run_page("Home.py")
    assert "Notifications · 1 unread" in [e.label for e in at.expander]
    assert ":material/notifications: 1 unread alert]" in texts(at)
    [table] = at.table
    [shown] = table.value.to_dict("records")
    assert (
        shown["Alert"].startswith("Test alert from Runwatch") and shown["Delivery"] == "in the app"
    )
    assert not at.toast  # the alerts there when the session first looked are not toasted
    second = commands.test_alert(engine, ADMIN, "app")
    reads.alert_feed.clear()  # the next tick's read (the cache lives RUNWATCH_CACHE_TTL_S)
    at.run()
    assert [t.value for t in at.toast] == [second.message]
    assert "Notifications · 2 unread" in [e.label for e in at.expander]
    at.button(key="home_alerts_read").click().run()
    assert not at.exception
    assert "2 alerts marked read." in texts(at)
    with read_session(engine) as session:
        assert unread_count(session=session) == 0
    assert "Notifications" in [e.label for e in at.expander]


def test_home_without_alerts_says_where_they_come_from(engine: sa.Engine, no_worker: None) -> None:
    at = run_page("Home.py")
    assert "No alerts yet. Alert rules (Jobs page" in texts(at)


def test_jobs_page_adds_and_removes_alert_rules(engine: sa.Engine, no_worker: None) -> None:
    at = run_page("pages/4_Jobs.py")
    assert "No alert rules: nothing raises alerts yet." in texts(at)
    at.selectbox(key="jobs_alert_kind").set_value("failed")
    at.selectbox(key="jobs_alert_channel").set_value("webhook")
    at.text_input(key="jobs_alert_target").set_value("http://127.0.0.1:9/hook")
    at.button[-1].click().run()  # the form's Add rule
    assert not at.exception
    assert "Alert rule #1 added: failed, job * -> webhook http://127.0.0.1:9/hook." in texts(at)
    at.text_input(key="jobs_alert_target").set_value("not a url")
    at.selectbox(key="jobs_alert_channel").set_value("webhook")
    at.button[-1].click().run()
    assert "must be an http(s) URL" in texts(at)
    at.button(key="jobs_alert_remove_1").click().run()
    assert "Alert rule #1 removed." in texts(at)
    with read_session(engine) as session:
        assert list_rules(session=session) == []
