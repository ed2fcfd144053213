"""Alert channels: a signed JSON webhook and an e-mail over SMTP, each attempt stored, with retries.

Deliveries run on this process's delivery threads (`Dispatcher`), never on a run's path: a channel
that is down costs those threads their timeouts and retries, and the runs nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
import ssl
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import urlsplit

import sqlalchemy as sa

from db.models import Alert, AlertDelivery, Channel, utcnow
from db.queries import BadParams, record_delivery, renew_claim, write_session
from db.settings import Settings

log = logging.getLogger(__name__)
SIGNATURE = "X-Runwatch-Signature"  # sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">
TIMESTAMP = "X-Runwatch-Timestamp"  # Unix seconds when the attempt was signed
_EMAIL_SAFE = str.maketrans({"\r": " ", "\n": " "})


@dataclass(frozen=True)
class Outcome:
    """How one attempt went, and whether another might go better."""

    ok: bool
    status_code: int | None = None
    error: str | None = None
    retry: bool = False


def check_target(channel: str, target: str) -> str:
    """The channel's target, checked: an http(s) URL, one e-mail address, or nothing for app."""
    if channel not in set(Channel) or channel == Channel.APP and target:
        raise BadParams(
            f"Channel {channel!r} is unknown or takes no target; use webhook, email or app."
        )
    target = target.strip()
    if channel == Channel.WEBHOOK:
        parts = urlsplit(target)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadParams(f"A webhook target must be an http(s) URL, not {target!r}.")
    if channel == Channel.EMAIL and (
        target.count("@") != 1 or any(c.isspace() or c in ",;<>" for c in target)
    ):
        raise BadParams(
            f"An e-mail target must be one address like ops@example.com, not {target!r}."
        )
    return target


def payload(alert: Alert) -> bytes:
    """The webhook's JSON body."""
    body = {
        "id": alert.id,
        "kind": alert.kind,
        "job": alert.job,
        "run_id": alert.run_id,
        "message": alert.message,
        "rule_id": alert.rule_id,
        "event": alert.dedup_key,
        "created_at": alert.created_at.isoformat(),
    }
    return json.dumps(body, sort_keys=True).encode("utf-8")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value: HMAC-SHA256 of "<timestamp>.<body>" under the secret."""
    signed = timestamp.encode("ascii") + b"." + body
    return "sha256=" + hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def post_webhook(alert: Alert, settings: Settings) -> Outcome:
    """One signed POST; a 2xx is delivered, a 5xx, a 429 or no answer may be retried."""
    import httpx  # here: only a webhook needs it, and with it click, rich and pygments (~5 MB)

    body = payload(alert)
    timestamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", TIMESTAMP: timestamp}
    if secret := settings.webhook_secret.get_secret_value():
        headers[SIGNATURE] = sign(secret, timestamp, body)
    try:
        answer = httpx.post(
            alert.target, content=body, headers=headers, timeout=settings.alert_timeout_s
        )
    except httpx.HTTPError as error:
        return Outcome(False, error=f"{type(error).__name__}: {error}", retry=True)
    if answer.is_success:
        return Outcome(True, answer.status_code)
    retry = answer.status_code >= 500 or answer.status_code == 429
    return Outcome(False, answer.status_code, f"HTTP {answer.status_code}", retry)


def email_message(alert: Alert, settings: Settings) -> EmailMessage:
    """The e-mail of an alert: its message as the subject and the body, with what it is about."""
    message = EmailMessage()
    message["Subject"] = f"[Runwatch] {alert.kind}: {alert.message}".translate(_EMAIL_SAFE)[:200]
    message["From"] = settings.smtp_from
    message["To"] = alert.target
    about = [
        f"Job: {alert.job}" if alert.job else "",
        f"Run: #{alert.run_id}" if alert.run_id else "",
    ]
    lines = [alert.message, "", *filter(None, about), f"Alert #{alert.id} ({alert.dedup_key})"]
    message.set_content("\n".join(lines) + "\n")
    return message


def send_email(alert: Alert, settings: Settings) -> Outcome:
    """One SMTP session (STARTTLS unless turned off, login when a user is set); 5xx refusals are final."""
    if not settings.smtp_host:
        return Outcome(False, error="RUNWATCH_SMTP_HOST is not set")
    try:
        with smtplib.SMTP(
            settings.smtp_host, settings.smtp_port, timeout=settings.alert_timeout_s
        ) as smtp:
            if settings.smtp_starttls:
                smtp.starttls(
                    context=ssl.create_default_context(cafile=settings.smtp_ca_file or None)
                )
            if settings.smtp_user:
                smtp.login(settings.smtp_user, settings.smtp_password.get_secret_value())
            smtp.send_message(email_message(alert, settings))
    except smtplib.SMTPResponseException as error:
        final = 500 <= error.smtp_code < 600
        text = (
            error.smtp_error.decode("utf-8", "replace")
            if isinstance(error.smtp_error, bytes)
            else str(error.smtp_error)
        )
        return Outcome(False, error.smtp_code, f"SMTP {error.smtp_code}: {text}", not final)
    except (smtplib.SMTPException, OSError, ssl.SSLError) as error:
        return Outcome(False, error=f"{type(error).__name__}: {error}", retry=True)
    return Outcome(True, 250)


SENDERS: dict[str, Callable[[Alert, Settings], Outcome]] = {
    Channel.WEBHOOK: post_webhook,
    Channel.EMAIL: send_email,
}


def deliver(
    engine: sa.Engine,
    settings: Settings,
    alert: Alert,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> list[AlertDelivery]:
    """Send `alert` through its channel: up to 1 + `alert_retries` attempts with doubling waits,
    each stored in alert_delivery; the alert ends `sent` or `failed`. The app channel sends nothing."""
    send = SENDERS.get(alert.channel)
    if send is None:
        return []
    attempts: list[AlertDelivery] = []
    wait = settings.alert_backoff_s
    for attempt in range(1, settings.alert_retries + 2):
        started = time.perf_counter()
        outcome = send(alert, settings)
        last = outcome.ok or not outcome.retry or attempt > settings.alert_retries
        attempts.append(_store(engine, alert, attempt, outcome, started, last))
        if last:
            return attempts
        sleep(wait)
        wait *= 2
    return attempts


def _store(
    engine: sa.Engine, alert: Alert, attempt: int, outcome: Outcome, started: float, last: bool
) -> AlertDelivery:
    """Store one attempt (and, on the last, the alert's status); a database that is down loses it."""
    assert alert.id is not None
    delivery = AlertDelivery(
        alert_id=alert.id,
        channel=alert.channel,
        target=alert.target,
        attempt=attempt,
        ok=outcome.ok,
        status_code=outcome.status_code,
        error=outcome.error,
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
    )
    status = ("sent" if outcome.ok else "failed") if last else None
    try:
        with write_session(engine) as session:
            record_delivery(session=session, delivery=delivery, status=status)
    except sa.exc.SQLAlchemyError as error:
        log.warning("alert #%s: attempt %d not stored: %s", alert.id, attempt, error)
    return delivery


class Dispatcher:
    """This process's delivery threads: alerts queued here are delivered one per thread at a time."""

    def __init__(self, engine: sa.Engine, settings: Settings, threads: int = 2) -> None:
        self.engine, self.settings = engine, settings
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="runwatch-alerts")

    def submit(self, alert: Alert) -> Future[list[AlertDelivery]]:
        """Deliver `alert` in the background."""
        return self.pool.submit(self._deliver, alert)

    def _deliver(self, alert: Alert) -> list[AlertDelivery]:
        try:
            if not self._still_ours(alert):
                return []
            return deliver(self.engine, self.settings, alert)
        except Exception:  # a delivery thread never dies of one alert
            log.exception("alert #%s could not be delivered", alert.id)
            return []

    def _still_ours(self, alert: Alert) -> bool:
        """Renew this worker's claim on `alert` as its delivery begins. An alert that waited here
        past its lease may have been taken over by another worker, which then delivers it."""
        with write_session(self.engine) as session:
            if renew_claim(session=session, alert=alert, now=utcnow()):
                return True
        log.info("alert #%s: taken over by another worker before its delivery began", alert.id)
        return False

    def close(self) -> None:
        """Finish the deliveries under way and queued (each bounded by its timeouts), then stop."""
        self.pool.shutdown(wait=True)
