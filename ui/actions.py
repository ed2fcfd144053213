"""The app's actions: Run now, Cancel run, Retry / Resume and exports, each one call into etl.commands."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NamedTuple

import sqlalchemy as sa

from db.models import RunStatus
from db.queries import AuditFilters, RunFilters, RunSort, RunwatchError
from etl import commands
from etl.commands import Caller
from reports.export import Format
from ui import auth, notices
from ui.app import engine
from ui.reads import overview


def notify(key: str, action: Callable[[], str]) -> None:
    """Run `action` from a button's callback and keep what it says, or why it was refused, under
    `key` (ui.notices: until dismissed or the next action).

    Callbacks run before the page is drawn again, so the command layer decides even when the run
    changed since the page was drawn (and its button is gone from the new page).
    """
    try:
        notices.say(key, "success", action())
    except RunwatchError as error:
        notices.say(key, "warning", str(error))
    except (sa.exc.OperationalError, sa.exc.InterfaceError):
        notices.say(key, "error", "The database cannot be reached; nothing was changed.")


def caller() -> Caller:
    """Whoever is signed in to this browser session (ui.auth), re-checked as the action starts."""
    return auth.checked()


class Gate(NamedTuple):
    """How an action's button is drawn for the signed-in caller."""

    disabled: bool
    help: str | None  # the command layer's refusal while disabled


def gate(action: str, help: str | None = None) -> Gate:
    """Grey out the button of `action` (a key of etl.commands.PERMISSIONS) unless the caller may,
    saying why as the command layer would; the command layer still checks when it is clicked."""
    denied = commands.refused(auth.current(), action)
    return Gate(False, help) if denied is None else Gate(True, str(denied))


def parse_params(text: str) -> dict[str, Any]:
    """The run parameters typed in the dialog as a JSON object; ValueError says what is wrong."""
    try:
        params = json.loads(text or "{}")
    except json.JSONDecodeError as error:
        raise ValueError(
            f"The parameters are not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})."
        ) from None
    if not isinstance(params, dict):
        raise ValueError('The parameters must be a JSON object, like {"total": 1000}.')
    return params


def run_now(job: str, params: dict[str, Any]) -> int:
    """Enqueue a manual run of `job`; the command layer's refusals (RunwatchError) say why not."""
    run = commands.trigger(engine(), caller(), job, params)
    overview.clear()
    assert run.id is not None
    return run.id


def cancel(run_id: int) -> str:
    """Cancel a pending run or ask a running one to stop, and say what happened."""
    run = commands.cancel(engine(), caller(), run_id)
    overview.clear()
    if run.status == RunStatus.CANCELLED:
        return f"Run #{run_id} was cancelled before it started."
    return f"Run #{run_id} stops after its current batch."


def resume(run_id: int, *, from_checkpoint: bool) -> str:
    """Enqueue a resume (from the checkpoint) or a retry (from scratch) of a failed or cancelled run."""
    run = commands.resume(engine(), caller(), run_id, from_checkpoint=from_checkpoint)
    overview.clear()
    verb = "Resume" if from_checkpoint else "Retry"
    return f"{verb} enqueued as run #{run.id}; the worker starts it shortly."


def export_file(
    ready: sa.Engine, fmt: Format, filters: RunFilters, sort: RunSort
) -> Callable[[], bytes]:
    """A callable producing the export's bytes; it runs (and is audited) only when called.

    Streamlit calls it on click in another thread, so the engine and caller are taken now.
    """
    who = caller()
    return lambda: b"".join(commands.export(ready, who, fmt, filters, sort))


def export_audit_file(ready: sa.Engine, fmt: Format, filters: AuditFilters) -> Callable[[], bytes]:
    """A callable producing the audit trail's export; it runs (and is itself audited) only when called."""
    who = caller()
    return lambda: b"".join(commands.export_audit(ready, who, fmt, filters))
