"""Cron schedules in a job's time zone: checking, ticks in UTC, words, and what a due job should do.

Ticks are found on the job's local wall clock (croniter on naive local times) and read into UTC with
zoneinfo: a wall time in a DST gap gets the offset from before the gap (so it runs as many minutes
later as the gap is long), a repeated wall time runs once, at its first occurrence, and two ticks
that land on one instant run once. Ticks in UTC therefore always strictly increase.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from db.enums import Catchup as Catchup  # re-exported

_TINY = timedelta(microseconds=1)
_NONE = timedelta()
_DST_REACH = timedelta(hours=3)  # longer than any DST shift
_SEARCH = (
    1000  # croniter steps looked at for one tick (DST can repeat a few; a bad expression many)
)


class ScheduleError(ValueError):
    """A cron expression or a time zone that cannot be used; the message is for the user."""


@dataclass(frozen=True)
class Schedule:
    """A cron expression read on the wall clock of one time zone."""

    expr: str
    zone: ZoneInfo

    @classmethod
    def parse(cls, expr: str, timezone: str = "UTC") -> Schedule:
        """The schedule of `expr` in `timezone`, or ScheduleError saying what is wrong."""
        if not croniter.is_valid(expr) or len(expr.split()) != 5:
            raise ScheduleError(
                f"Schedule {expr!r} is not a cron expression of five fields "
                "(minute hour day-of-month month day-of-week), like '*/5 * * * *'."
            )
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(
                f"Time zone {timezone!r} is unknown; use an IANA name like 'Europe/Berlin' or 'UTC'."
            ) from None
        return cls(expr=expr, zone=zone)

    def _utc(self, local: datetime) -> datetime:
        return local.replace(tzinfo=self.zone).astimezone(UTC)

    def _local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.zone).replace(tzinfo=None)

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after `moment`, in UTC."""
        # Just after a DST gap, wall times inside the gap (read with the offset before it) are
        # still to come: start that much earlier on the wall clock.
        before = moment - _DST_REACH
        gap = (moment.astimezone(self.zone).utcoffset() or _NONE) - (
            before.astimezone(self.zone).utcoffset() or _NONE
        )
        steps = croniter(self.expr, self._local(moment) - max(gap, _NONE))
        for _ in range(_SEARCH):
            tick = self._utc(steps.get_next(datetime))
            if tick > moment:
                return tick
        raise ScheduleError(f"Schedule {self.expr!r} has no tick after {moment:%Y-%m-%d %H:%M}.")

    def last_at_or_before(self, moment: datetime) -> datetime | None:
        """The newest tick at or before `moment`, in UTC (None if there is none)."""
        local = moment.astimezone(self.zone)
        # In a repeated hour's second pass, wall times up to its end still read as its first pass.
        repeat = (local.replace(fold=0).utcoffset() or timedelta()) - (
            local.utcoffset() or timedelta()
        )
        start = local.replace(tzinfo=None) + repeat + timedelta(seconds=1)
        steps = croniter(self.expr, start)
        for _ in range(_SEARCH):
            tick = self._utc(steps.get_prev(datetime))
            if tick <= moment:
                return tick
        return None

    def upcoming(self, moment: datetime, count: int = 3) -> list[datetime]:
        """The next `count` ticks after `moment`, in UTC."""
        ticks: list[datetime] = []
        for _ in range(count):
            moment = self.next_after(moment)
            ticks.append(moment)
        return ticks

    def newest_since(self, latest: datetime, since: datetime, limit: int) -> list[datetime]:
        """Up to `limit` ticks from `since` to the tick `latest` (both included), newest first."""
        ticks = [latest]
        while len(ticks) < limit:
            tick = self.last_at_or_before(ticks[-1] - _TINY)
            if tick is None or tick < since:
                break
            ticks.append(tick)
        return ticks


@dataclass(frozen=True)
class Skipped:
    """Due ticks given up, from `first` to `last`, and why."""

    first: datetime
    last: datetime
    reason: str


@dataclass(frozen=True)
class TickPlan:
    """What one scheduler pass does for one due job."""

    enqueue: datetime | None  # the tick a run is enqueued for now
    skipped: Skipped | None  # the ticks recorded as skipped
    next_due: datetime  # the job's next tick still to handle


@dataclass(frozen=True)
class Policy:
    """A job's catch-up policy with the fleet-wide limits it is read with."""

    catchup: Catchup
    cap: int  # most missed ticks `all` keeps
    grace: timedelta  # a tick later than this is missed


def plan_ticks(
    schedule: Schedule, due: datetime, now: datetime, policy: Policy, *, active: bool
) -> TickPlan | None:
    """What to do with the ticks from `due` (the job's next unhandled tick) to `now`; None: nothing yet."""
    latest = schedule.last_at_or_before(now)
    if latest is None or latest < due:  # `due` is not a tick itself (a new job or a new schedule)
        return TickPlan(None, None, schedule.next_after(now))
    first = schedule.next_after(due - _TINY)
    if policy.catchup == Catchup.ALL:
        return _plan_all(schedule, first, latest, policy, active=active)
    after = schedule.next_after(latest)
    if active:
        return TickPlan(None, Skipped(first, latest, "active"), after)
    on_time = policy.catchup == Catchup.LATEST or now - latest <= policy.grace
    run = latest if on_time else None
    last_skipped = latest if run is None else schedule.last_at_or_before(latest - _TINY)
    missed = None if last_skipped is None or last_skipped < first else last_skipped
    return TickPlan(run, Skipped(first, missed, "missed") if missed else None, after)


def _plan_all(
    schedule: Schedule, first: datetime, latest: datetime, policy: Policy, *, active: bool
) -> TickPlan | None:
    """`all`: the oldest of the newest `cap` due ticks runs; older ones are skipped; a busy job waits."""
    kept = schedule.newest_since(latest, first, policy.cap + 1)
    dropped = None
    if len(kept) > policy.cap:
        dropped = Skipped(first, kept.pop(), "missed")
    oldest = kept[-1]
    if active:
        return TickPlan(None, dropped, oldest) if dropped else None
    return TickPlan(oldest, dropped, schedule.next_after(oldest))
