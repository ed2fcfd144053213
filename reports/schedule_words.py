"""A cron expression in words, for the Jobs page and `runwatch jobs` ("every 5 minutes")."""

from __future__ import annotations

import calendar

_DAYS = {str(i): name for i, name in enumerate(calendar.day_name, start=1)} | {
    "0": "Sunday",
    "7": "Sunday",
}
_MONTHS = {str(i): calendar.month_name[i] for i in range(1, 13)}


def describe(expr: str) -> str:
    """`expr` (five cron fields, already checked) as an English phrase."""
    minute, hour, day, month, weekday = expr.split()
    when = _time_of_day(minute, hour)
    if when.startswith("at ") and (day, month, weekday) == ("*", "*", "*"):
        when = f"every day {when}"
    parts = [when]
    if day != "*":
        parts.append(f"on day {_listed(day)} of the month")
    if month != "*":
        parts.append(f"in {_listed(month, _MONTHS)}")
    if weekday != "*":
        parts.append(f"on {_listed(weekday, _DAYS)}")
    return " ".join(parts)


def _time_of_day(minute: str, hour: str) -> str:
    """The minute and hour fields in words."""
    if hour == "*":
        if minute == "*":
            return "every minute"
        if minute.startswith("*/"):
            return f"every {minute[2:]} minutes"
        return f"every hour at minute {_listed(minute)}"
    if minute.isdigit() and hour.isdigit():
        return f"at {int(hour):02d}:{int(minute):02d}"
    if hour.startswith("*/"):
        return f"every {hour[2:]} hours at minute {_listed(minute)}"
    return f"at minute {_listed(minute)} past hour {_listed(hour)}"


def _listed(field: str, names: dict[str, str] | None = None) -> str:
    """A cron field's list and ranges in words, with names for days or months."""
    names = names or {}
    words = []
    for part in field.split(","):
        start, dash, end = part.partition("-")
        if dash:
            words.append(f"{names.get(start, start)} to {names.get(end, end)}")
        else:
            words.append(names.get(part, part).replace("*/", "every "))
    return ", ".join(words[:-1]) + f" and {words[-1]}" if len(words) > 1 else words[0]
