"""The errors Runwatch's reads and writes raise; their messages are meant for the user."""

from __future__ import annotations

from datetime import UTC, datetime

from db.models import Role


class RunwatchError(Exception):
    """A request Runwatch refuses; the message is meant for the user."""


class ActiveRunExists(RunwatchError):
    """The job already has a pending or running run."""

    def __init__(self, job: str, run_id: int | None) -> None:
        self.job, self.run_id = job, run_id
        super().__init__(f"Job '{job}' already has an active run (#{run_id}).")


class NotFound(RunwatchError):
    """No such job or run."""


class InvalidState(RunwatchError):
    """The run is not in a status that allows the request."""


class JobDisabled(RunwatchError):
    """The job is configured but disabled: it refuses runs."""


class JobPaused(RunwatchError):
    """The job is paused: it keeps its schedule but starts no run until it is resumed."""

    def __init__(self, job: str) -> None:
        self.job = job
        super().__init__(
            f"Job '{job}' is paused: it starts no run, scheduled or by Run now, until it is "
            f"resumed (Resume on the Jobs page, or `runwatch unpause {job}`)."
        )


class BadParams(RunwatchError):
    """Parameters (or a job's configuration) the job kind or the database refuses."""


class RunLost(RunwatchError):
    """The run is no longer this writer's: it was failed (e.g. as an orphan), ended or re-claimed."""

    def __init__(self, run_id: int | None) -> None:
        self.run_id = run_id
        super().__init__(f"Run #{run_id} is no longer held by this worker; its write was refused.")


class Forbidden(RunwatchError):
    """The caller's role is below the one the action needs."""

    def __init__(self, doing: str, needs: Role, role: Role) -> None:
        self.needs, self.role = needs, role
        super().__init__(
            f"{doing} needs the {needs} role; you are signed in as {_article(role)} {role}."
        )


def _article(role: Role) -> str:
    return "an" if role[0] in "aeiou" else "a"


class Unauthenticated(RunwatchError):
    """No valid credentials: a missing, malformed, unknown or revoked token, or a failed sign-in."""


class SignInFailed(Unauthenticated):
    """A name and password that do not sign in; one message for every reason, so it tells nothing."""

    def __init__(self) -> None:
        super().__init__("The user name or the password is wrong.")


class AccountLocked(Unauthenticated):
    """Too many failed sign-ins in a row: the account refuses sign-in until `until`."""

    def __init__(self, until: datetime) -> None:
        self.until = until
        super().__init__(
            f"Too many failed sign-ins: this account is locked until {until.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC."
        )
