"""The errors Runwatch's reads and writes raise; their messages are meant for the user."""

from __future__ import annotations


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


class RunLost(RunwatchError):
    """The run is no longer this writer's: it was failed (e.g. as an orphan), ended or re-claimed."""

    def __init__(self, run_id: int | None) -> None:
        self.run_id = run_id
        super().__init__(f"Run #{run_id} is no longer held by this worker; its write was refused.")
