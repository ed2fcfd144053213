"""Moments as the CLI and the API read them: ISO text, UTC if naive, a bare `until` date includes its day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta


def is_bare_date(text: str) -> bool:
    """Whether `text` is a date without a time (2026-11-30)."""
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def as_utc(moment: datetime) -> datetime:
    """`moment` as aware UTC (naive means UTC); OverflowError at the edge of the range."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def range_end(moment: datetime, text: str) -> datetime:
    """The exclusive end of a range written as `text`: a bare date includes that whole day."""
    return moment + timedelta(days=1) if is_bare_date(text) else moment


def parse_moment(text: str, *, day_end: bool = False) -> datetime:
    """An ISO date or datetime as aware UTC; ValueError if it is not one or out of range."""
    try:
        moment = datetime.fromisoformat(text)
        return as_utc(range_end(moment, text) if day_end else moment)
    except OverflowError as error:
        raise ValueError(f"{text!r} is outside the supported date range") from error


def reversed_range(since: datetime | None, until: datetime | None) -> str | None:
    """Why a since/until range selects nothing because it ends before it starts, or None."""
    if since and until and since > until:
        return "'until' must not be before 'since'."
    return None
