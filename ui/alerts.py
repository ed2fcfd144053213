"""The app's alerts: the notifications on Home (unread count, recent alerts with their delivery,
a toast for each new one, an optional sound on failure, Mark all read) and the rules on Jobs."""

from __future__ import annotations

import io
import math
import struct
import wave
from functools import lru_cache

import streamlit as st

from db.models import Alert, AlertDelivery, AlertKind, Channel
from db.queries import AlertView, list_rules, read_session
from db.settings import get_settings
from etl import commands
from etl.alerts import describe
from ui import actions, badges, notices
from ui.app import engine
from ui.reads import AlertFeed, alert_feed

NOTE = "home_alerts_note"
RULES_NOTE = "jobs_alerts_note"
SEEN = "home_alerts_seen"  # the newest alert id this session has been shown
TOASTS_MAX = 3  # new alerts toasted one by one; more are summed up in one toast


def sidebar_count(feed: AlertFeed) -> None:
    """The unread count in the sidebar."""
    if feed.unread:
        plural = "" if feed.unread == 1 else "s"
        st.sidebar.markdown(
            f":red-badge[:material/notifications: {feed.unread} unread alert{plural}]"
        )


def sound_toggle() -> bool:
    """The session's "Sound on failure" toggle (off until switched on)."""
    return bool(st.sidebar.toggle("Sound on failure alerts", key="home_alert_sound"))


def announce(feed: AlertFeed, *, sound: bool) -> None:
    """Toast the alerts that came since this session last looked (none on its first look), and
    beep once if asked and one of them is a failure."""
    newest = max((view.alert.id or 0 for view in feed.alerts), default=0)
    seen = st.session_state.get(SEEN)
    st.session_state[SEEN] = max(newest, seen or 0)
    if seen is None:
        return
    new = [view.alert for view in feed.alerts if (view.alert.id or 0) > seen]
    for alert in new[:TOASTS_MAX]:
        st.toast(alert.message, icon=":material/notifications_active:", duration="long")
    if len(new) > TOASTS_MAX:
        st.toast(f"… and {len(new) - TOASTS_MAX} more alerts.", icon=":material/notifications:")
    if sound and any(alert.kind == AlertKind.FAILED for alert in new):
        st.sidebar.audio(beep(), format="audio/wav", autoplay=True)


@lru_cache(maxsize=1)
def beep() -> bytes:
    """A short two-tone beep as WAV bytes (generated, so no sound file ships)."""
    rate, samples = 8000, []
    for hertz in (880, 660):
        for i in range(rate // 6):
            fade = min(1.0, (rate // 6 - i) / 400)
            samples.append(int(12000 * fade * math.sin(2 * math.pi * hertz * i / rate)))
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(struct.pack(f"<{len(samples)}h", *samples))
    return out.getvalue()


def notifications(feed: AlertFeed) -> None:
    """The notifications area: unread count, the newest alerts with their delivery, Mark all read."""
    label = f"Notifications · {feed.unread} unread" if feed.unread else "Notifications"
    notices.show(NOTE)  # outside: marking all read closes the expander
    with st.expander(label, icon=":material/notifications:", expanded=bool(feed.unread)):
        if not feed.alerts:
            st.caption(
                "No alerts yet. Alert rules (Jobs page, or `runwatch alerts add`) raise them when "
                "a run fails, is slow or stuck, waits too long, or a job has not succeeded for hours."
            )
            return
        st.table([row(view) for view in feed.alerts], hide_index=True)
        newest = max(view.alert.id or 0 for view in feed.alerts)
        st.button(
            "Mark all read",
            key="home_alerts_read",
            disabled=not feed.unread,
            on_click=actions.notify,
            args=(NOTE, lambda: mark_read(newest)),
        )


def drawn(feed: AlertFeed) -> tuple[object, ...]:
    """What the notifications show of `feed`: when it differs from the last full rerun's, the
    sidebar's count, the toasts and the table are due again."""
    return (feed.unread, *(tuple(row(view).values()) for view in feed.alerts))


def row(view: AlertView) -> dict[str, object]:
    """One alert as a table row."""
    alert = view.alert
    return {
        "": "●" if alert.read_at is None else "",
        "When": badges.local_time(alert.created_at, "%m-%d %H:%M:%S"),
        "Alert": alert.message,
        "Delivery": delivery_text(alert, view.deliveries),
    }


def delivery_text(alert: Alert, attempts: list[AlertDelivery]) -> str:
    """Where the alert went and how: `in the app`, `webhook: sent (2 attempts)`, `email: failed …`."""
    if alert.channel == Channel.APP:
        return "in the app"
    tries = f"{len(attempts)} attempt{'s' if len(attempts) != 1 else ''}"
    if alert.status == "sent":
        return f"{alert.channel}: sent ({tries})"
    if alert.status == "failed":
        last = attempts[-1].error if attempts else "no attempt stored"
        return f"{alert.channel}: failed after {tries} ({last})"
    return f"{alert.channel}: sending ({tries} so far)"


def mark_read(up_to: int) -> str:
    """Mark the alerts shown read, and say how many were."""
    count = commands.mark_alerts_read(engine(), actions.caller(), up_to)
    alert_feed.clear()
    return f"{count} alert{'s' if count != 1 else ''} marked read."


# ---------------------------------------------------------------- rules (Jobs page)


def rules_section(jobs: list[str]) -> None:
    """The alert rules, a form to add one and a Remove button for each."""
    notices.show(RULES_NOTE)
    may = actions.gate("alert_rule")
    with read_session(engine()) as session:
        rules = list_rules(session=session)
    for rule in rules:
        text, button = st.columns([5, 1], vertical_alignment="center")
        text.markdown(f"`#{rule.id}` {describe(rule)}")
        button.button(
            "Remove",
            key=f"jobs_alert_remove_{rule.id}",
            disabled=may.disabled,
            help=may.help,
            on_click=actions.notify,
            args=(RULES_NOTE, lambda rule_id=rule.id: remove(rule_id)),
        )
    if not rules:
        st.caption("No alert rules: nothing raises alerts yet.")
    st.caption(settings_hint())
    with st.form("jobs_alert_form", clear_on_submit=True, border=True):
        kind, channel, job = st.columns(3)
        chosen = kind.selectbox("Alert when", commands.ALERT_KINDS, key="jobs_alert_kind")
        through = channel.selectbox("Channel", [str(c) for c in Channel], key="jobs_alert_channel")
        scope = job.selectbox("Job", ["every job", *jobs], key="jobs_alert_job")
        target = st.text_input("Target (webhook URL or e-mail address)", key="jobs_alert_target")
        limit = st.number_input(
            "Limit (slow: s, no_success: h, stuck: s, queue_wait: min; 0 = default)",
            min_value=0.0,
            key="jobs_alert_limit",
        )
        if st.form_submit_button("Add rule", disabled=may.disabled, help=may.help):
            on = None if scope == "every job" else scope
            actions.notify(RULES_NOTE, lambda: add(chosen, through, target, on, limit or None))
            st.rerun()


def add(kind: str, channel: str, target: str, job: str | None, limit: float | None) -> str:
    """Add a rule through the command layer; say which."""
    rule = commands.add_alert_rule(
        engine(), actions.caller(), kind=kind, channel=channel, target=target, job=job, limit=limit
    )
    return f"Alert rule #{rule.id} added: {describe(rule)}."


def remove(rule_id: int | None) -> str:
    """Remove a rule through the command layer."""
    rule = commands.remove_alert_rule(engine(), actions.caller(), rule_id or 0)
    return f"Alert rule #{rule.id} removed."


def settings_hint() -> str:
    """Which channels are set up on this server (webhook signing, SMTP)."""
    settings = get_settings()
    signed = "signed" if settings.webhook_secret.get_secret_value() else "not signed (no secret)"
    mail = f"via {settings.smtp_host}" if settings.smtp_host else "off (no RUNWATCH_SMTP_HOST)"
    return f"Webhooks: {signed}. E-mail: {mail}."
