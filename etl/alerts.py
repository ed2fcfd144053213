"""Alert checks: which enabled rules match what happened, each event raised once, then delivered.

Every worker runs an `AlertChecker` in a thread beside its poll loop (a busy worker executing a
long run still checks, and its poll loop pays nothing). Each check is a few bounded, indexed reads:
the runs whose status events came after the shared cursor (failed, slow), running runs without a
recent heartbeat (stuck), pending runs waiting too long (queue_wait) and each job's last success
(no_success). A matched event becomes an `alert` row whose unique dedup key ("r<rule>:<event>")
decides which of any number of workers raised it first; that worker alone delivers it.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session

from db.models import Alert, AlertKind, AlertRule, Channel, RunStatus, utcnow
from db.queries import (
    EndedRun,
    Percentiles,
    StatsScope,
    advance_cursor,
    any_stale_claims,
    duration_percentiles,
    ended_runs,
    insert_alerts,
    known_keys,
    last_successes,
    list_rules,
    quiet_runs,
    read_session,
    reclaim_alerts,
    write_session,
)
from db.queries.stats import short_seconds
from db.settings import Settings, get_settings
from etl.notify import Dispatcher
from reports.durations import format_duration

log = logging.getLogger(__name__)
# The unit of each kind's limit, and its default when a rule sets none (slow: the job's p90).
UNITS: dict[str, str] = {
    AlertKind.SLOW: "s",
    AlertKind.NO_SUCCESS: "h",
    AlertKind.STUCK: "s",
    AlertKind.QUEUE_WAIT: "min",
}
DEFAULT_LIMITS = {AlertKind.NO_SUCCESS: 24.0, AlertKind.QUEUE_WAIT: 10.0}
P90_WINDOW = timedelta(days=30)  # the finished runs a job's p90 is taken over
P90_MIN_RUNS = 5  # fewer finished runs than this in the window: no p90 to be slower than
NO_SUCCESS_EVERY = timedelta(minutes=1)  # no_success limits are hours: looked at once a minute


def limit_of(rule: AlertRule, settings: Settings) -> float | None:
    """The rule's limit in its kind's unit (stuck defaults to half the orphan timeout)."""
    if rule.limit_value is not None:
        return rule.limit_value
    if rule.kind == AlertKind.STUCK:
        return settings.orphan_timeout_s / 2
    return DEFAULT_LIMITS.get(AlertKind(rule.kind))


def describe(rule: AlertRule) -> str:
    """A rule in one line: what, of which job, through which channel."""
    limit = limit_of(rule, get_settings())
    unit = UNITS.get(rule.kind, "") if limit is not None else ""
    what = rule.kind + (f" > {limit:g} {unit}" if limit is not None else "")
    if rule.kind == "slow" and limit is None:
        what += " (slower than the job's p90)"
    to = f" {rule.target}" if rule.target else ""
    state = "" if rule.enabled else " (disabled)"
    return f"{what}, job {rule.job or '*'} -> {rule.channel}{to}{state}"


def applies(rule: AlertRule, job: str) -> bool:
    """Whether the rule watches `job` (a rule without a job watches every job)."""
    return rule.job is None or rule.job == job


def delivery_lease(settings: Settings) -> timedelta:
    """How long a pending alert stays the delivery of the worker that claimed it: twice the longest
    a delivery can take (every attempt using its whole timeout, with the waits between them), and
    a check interval more. Past it, another worker's check takes the alert over."""
    attempts = settings.alert_retries + 1
    waits = settings.alert_backoff_s * (2**settings.alert_retries - 1)
    longest = attempts * settings.alert_timeout_s + waits
    return timedelta(seconds=2 * longest + settings.alert_check_s)


def raise_alert(
    rule: AlertRule, event: str, message: str, job: str | None, run_id: int | None
) -> Alert:
    """The alert of `rule` for `event`, not stored yet."""
    status = "app" if rule.channel == Channel.APP else "pending"
    return Alert(
        rule_id=rule.id,
        dedup_key=f"r{rule.id}:{event}",
        kind=rule.kind,
        job=job,
        run_id=run_id,
        channel=rule.channel,
        target=rule.target,
        message=message,
        status=status,
    )


class AlertChecker:
    """One worker's alert checks: `check()` raises the new alerts and hands them to delivery."""

    def __init__(
        self,
        engine: sa.Engine,
        settings: Settings,
        clock: Callable[[], datetime] = utcnow,
        dispatcher: Dispatcher | None = None,
    ) -> None:
        self.engine, self.settings, self.clock = engine, settings, clock
        self.dispatcher = dispatcher or Dispatcher(engine, settings)
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.no_success_at: datetime | None = None  # when no_success is looked at next

    def start(self) -> AlertChecker:
        """Check now and every `alert_check_s` in a daemon thread, until `stop()` (once: a second
        call while it runs does nothing)."""
        if self.thread is not None and self.thread.is_alive():
            return self
        self.stopping.clear()
        self.thread = threading.Thread(target=self._loop, name="runwatch-alert-checks", daemon=True)
        self.thread.start()
        return self

    def _loop(self) -> None:
        while True:
            try:
                self.check()
            except sa.exc.OperationalError as error:
                log.warning("alert check: database unreachable: %s", error.orig)
            except Exception:  # a check that fails is tried again at the next interval
                log.exception("alert check failed; trying again later")
            if self.stopping.wait(self.settings.alert_check_s):
                return

    def stop(self) -> None:
        """Stop checking, then finish the deliveries under way."""
        self.stopping.set()
        if self.thread is not None:
            self.thread.join()
        self.dispatcher.close()

    def check(self) -> list[Alert]:
        """Raise the alerts of every enabled rule's new events; return those this worker raised.
        Also take over the alerts whose deliverer died before finishing (see `take_over`)."""
        now = self.clock()
        unseen: list[Alert] = []
        cursor = None
        with read_session(self.engine) as session:
            left = any_stale_claims(session=session, claimed_before=self._lease_ended())
            rules = list_rules(session=session, enabled_only=True)
            if rules:
                found, cursor = self._find(session, rules, now)
                known = known_keys(session=session, keys=[alert.dedup_key for alert in found])
                unseen = [alert for alert in found if alert.dedup_key not in known]
        if left:
            self.take_over()
        if not unseen and cursor is None:
            return []
        with write_session(self.engine) as session:
            raised = insert_alerts(session=session, alerts=unseen)
            if cursor is not None:
                advance_cursor(session=session, to=cursor)
        for alert in raised:
            log.info("alert #%s raised: %s", alert.id, alert.message)
            if alert.channel != Channel.APP:
                self.dispatcher.submit(alert)
        return raised

    def _lease_ended(self) -> datetime:
        """Claims older than this have outlived any delivery (real time, whatever clock the checks
        run on: a claim's age is how long its worker has been silent)."""
        return utcnow() - delivery_lease(self.settings)

    def take_over(self) -> list[Alert]:
        """Deliver the alerts left pending longer than a delivery can take: the worker that raised
        them died or lost the database first. Each is taken by one worker only; return those."""
        with write_session(self.engine) as session:
            taken = reclaim_alerts(
                session=session, claimed_before=self._lease_ended(), now=utcnow()
            )
        for alert in taken:
            log.warning("alert #%s was left undelivered by its worker; delivering it", alert.id)
            self.dispatcher.submit(alert)
        return taken

    def _find(
        self, session: Session, rules: list[AlertRule], now: datetime
    ) -> tuple[list[Alert], int | None]:
        """Every (rule, event) match, and where to move the shared cursor (None: nowhere)."""
        kinds: dict[str, list[AlertRule]] = defaultdict(list)
        for rule in rules:
            kinds[rule.kind].append(rule)
        ended, after, upto = ended_runs(session=session)
        found = failed(kinds[AlertKind.FAILED], ended)
        found += self._slow(session, kinds[AlertKind.SLOW], ended, now)
        found += self._quiet(session, kinds[AlertKind.STUCK], RunStatus.RUNNING, now)
        found += self._quiet(session, kinds[AlertKind.QUEUE_WAIT], RunStatus.PENDING, now)
        found += self._no_success(session, kinds[AlertKind.NO_SUCCESS], now)
        return found, upto if upto > after else None

    def _slow(
        self, session: Session, rules: list[AlertRule], ended: list[EndedRun], now: datetime
    ) -> list[Alert]:
        """Finished runs over a rule's limit (seconds), or without one slower than their job's p90:
        per record when the run loaded records (a big run is not slow for being big, as on the
        Statistics page), else by its duration."""
        finished = [r for r in ended if r.status == RunStatus.FINISHED and r.duration_s is not None]
        p90s: dict[str, Percentiles | None] = {}
        found = []
        for run in finished:
            assert run.duration_s is not None
            for rule in rules:
                if not applies(rule, run.job) or not _since_rule(rule, run.ended_at):
                    continue
                if rule.limit_value is not None:
                    slow = run.duration_s > rule.limit_value
                    why = f"took {format_duration(run.duration_s)}, slower than the limit of "
                    why += format_duration(rule.limit_value)
                else:
                    if run.job not in p90s:
                        p90s[run.job] = _p90(session, run.job, now)
                    slow, why = _slower_than_p90(run, p90s[run.job])
                if slow:
                    message = f"Run #{run.run_id} of {run.job} {why}."
                    found.append(
                        raise_alert(rule, f"slow:run:{run.run_id}", message, run.job, run.run_id)
                    )
        return found

    def _quiet(
        self, session: Session, rules: list[AlertRule], status: str, now: datetime
    ) -> list[Alert]:
        """Stuck (running, no heartbeat) or waiting (pending) runs past each rule's limit."""
        if not rules:
            return []
        stuck = status == RunStatus.RUNNING
        scale = 1 if stuck else 60  # stuck limits are seconds, queue waits minutes
        limits = {rule.id: (limit_of(rule, self.settings) or 0) * scale for rule in rules}
        runs = quiet_runs(
            session=session, status=status, before=now - timedelta(seconds=min(limits.values()))
        )
        found = []
        for run in runs:
            quiet_s = (now - run.since).total_seconds()
            for rule in rules:
                if not applies(rule, run.job) or quiet_s <= limits[rule.id]:
                    continue
                if stuck:
                    message = (
                        f"Run #{run.run_id} of {run.job} has sent no heartbeat for "
                        f"{format_duration(quiet_s)} (worker {run.worker_id or 'unknown'})."
                    )
                else:
                    message = (
                        f"Run #{run.run_id} of {run.job} has waited {format_duration(quiet_s)} "
                        f"for a worker (the limit is {format_duration(limits[rule.id])})."
                    )
                found.append(
                    raise_alert(rule, f"{rule.kind}:run:{run.run_id}", message, run.job, run.run_id)
                )
        return found

    def _no_success(self, session: Session, rules: list[AlertRule], now: datetime) -> list[Alert]:
        """Jobs without a finished run for longer than each rule's hours (counted from their last
        success, or their creation): once per such stretch. A rule for every job watches the
        scheduled jobs; one for a job watches that job. Limits are hours: looked at once a minute."""
        if not rules or (self.no_success_at is not None and now < self.no_success_at):
            return []
        self.no_success_at = now + NO_SUCCESS_EVERY
        hours = {rule.id: limit_of(rule, self.settings) or 0.0 for rule in rules}
        before = now - timedelta(hours=min(hours.values()))
        found = []
        for job, scheduled, created, success in last_successes(session=session, before=before):
            since = success or created
            for rule in rules:
                if rule.job != job and (rule.job is not None or not scheduled):
                    continue
                if now - since <= timedelta(hours=hours[rule.id]):
                    continue
                last = f"last success {since:%Y-%m-%d %H:%M} UTC" if success else "no success yet"
                message = (
                    f"Job {job} has had no successful run for over {hours[rule.id]:g} h ({last})."
                )
                event = f"no_success:job:{job}:{since.isoformat()}"
                found.append(raise_alert(rule, event, message, job, None))
        return found


def failed(rules: list[AlertRule], ended: Iterable[EndedRun]) -> list[Alert]:
    """The alerts of runs that failed after their rule was made."""
    found = []
    for run in ended:
        if run.status != RunStatus.FAILED:
            continue
        for rule in rules:
            if applies(rule, run.job) and _since_rule(rule, run.ended_at):
                message = f"Run #{run.run_id} of {run.job} failed: {run.error}"
                found.append(
                    raise_alert(rule, f"failed:run:{run.run_id}", message, run.job, run.run_id)
                )
    return found


def _since_rule(rule: AlertRule, moment: datetime | None) -> bool:
    """Whether `moment` is at or after the rule was made (a rule never alerts on the past)."""
    return moment is None or moment >= rule.created_at


def _p90(session: Session, job: str, now: datetime) -> Percentiles | None:
    """The job's percentiles of finished runs over the last 30 days; None with too few runs."""
    scope = StatsScope(since=now - P90_WINDOW, until=now + timedelta(seconds=1), job=job)
    found = duration_percentiles(session=session, scope=scope).get(job)
    return found if found is not None and found.count >= P90_MIN_RUNS else None


def _slower_than_p90(run: EndedRun, p90: Percentiles | None) -> tuple[bool, str]:
    """Whether `run` was slower than its job's p90 (per record when both have one), and why."""
    assert run.duration_s is not None
    if p90 is None:
        return False, ""
    runs = f"{p90.count} runs in 30 days"
    if run.records_loaded > 0 and p90.p90_per_record_s is not None:
        pace = run.duration_s / run.records_loaded
        return pace > p90.p90_per_record_s, (
            f"took {short_seconds(pace)} per record, slower than its job's p90 of "
            f"{short_seconds(p90.p90_per_record_s)} ({runs})"
        )
    if p90.p90_s is None:
        return False, ""
    return run.duration_s > p90.p90_s, (
        f"took {format_duration(run.duration_s)}, slower than its job's p90 of "
        f"{format_duration(p90.p90_s)} ({runs})"
    )
