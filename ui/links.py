"""A page's state in the URL's query parameters: reading values with warnings, and writing them back.

Shared by the pages whose filtered views can be linked (History, Audit).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta

import streamlit as st


def joined(value: str | list[str]) -> str:
    """A repeated parameter as one comma-separated value."""
    return ",".join(value) if isinstance(value, list) else value


def choices(raw: str, allowed: Sequence[str], name: str, warnings: list[str]) -> tuple[str, ...]:
    """The comma-separated values of `raw` that are allowed; a warning names the others."""
    values = tuple(dict.fromkeys(v.strip() for v in raw.split(",") if v.strip()))
    unknown = [v for v in values if v not in allowed]
    if unknown:
        warnings.append(f"Ignored unknown {name} {', '.join(map(repr, unknown))} in the link.")
    return tuple(v for v in values if v in allowed)


def day(raw: str, name: str, warnings: list[str]) -> date | None:
    """A YYYY-MM-DD day, or None with a warning."""
    try:
        return date.fromisoformat(raw)
    except ValueError:
        warnings.append(f"Ignored the {name} date {raw!r} in the link (expected YYYY-MM-DD).")
        return None


def day_bounds(first: date | None, last: date | None) -> tuple[datetime | None, datetime | None]:
    """UTC days, both ends included, as [since, until) moments."""
    since = datetime.combine(first, time(), tzinfo=UTC) if first else None
    until = datetime.combine(last + timedelta(days=1), time(), tzinfo=UTC) if last else None
    return since, until


def save(params: Mapping[str, str]) -> None:
    """Write these parameters into the URL (when they changed), so a reload or a shared link shows the same."""
    if dict(params) != st.query_params.to_dict():
        st.query_params.from_dict(params)
