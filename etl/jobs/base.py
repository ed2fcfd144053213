"""The job interface: what the runner calls, batch by batch."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from sqlmodel import Session


class JobError(Exception):
    """A job's own, expected failure (bad parameters, bad input file); its message is for the user."""


@dataclass
class RunContext:
    """What a job may know of the run executing it."""

    run_id: int
    job: str
    resumed_from: int | None = None
    counters: dict[str, Any] = field(default_factory=dict)
    log: Callable[[str, str], None] = lambda level, message: None


@dataclass
class Batch:
    """One unit of work: the records to load and how many source records they cover."""

    records: list[Any]
    size: int  # source records this batch advances the offset by
    rejects: list[dict[str, Any]] = field(default_factory=list)


class Job:
    """Base class of every job kind. The runner commits each `load` with the new offset."""

    kind: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def __init__(self, context: RunContext, params: dict[str, Any]) -> None:
        self.context = context
        self.params = self.validate(params)

    @classmethod
    def check_params(cls, params: dict[str, Any], *, job: str = "") -> Self:
        """A job of this kind set up with `params` for a run of `job`, or JobError naming what is wrong.

        The one check of parameters that every front end goes through before a run is queued.
        """
        try:
            return cls(RunContext(run_id=0, job=job), dict(params))
        except JobError:
            raise
        except Exception as error:  # validate() is job code: whatever it raises means bad params
            raise JobError(f"The {cls.kind} job refused these parameters: {error}") from None

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        """Check and normalise the parameters before anything runs.

        Args:
            params: the run's parameters (job defaults merged with the caller's).
        Returns:
            The parameters with types coerced. Raises JobError naming a bad one.
        """
        return params

    def estimate_total(self, params: dict[str, Any]) -> int | None:
        """How many records the run will process, or None when unknown.

        Args:
            params: the validated parameters.
        Returns:
            The total, used for progress and ETA.
        """
        return None

    def extract(self, params: dict[str, Any], offset: int) -> Iterator[Batch]:
        """Yield batches of source records, starting after the first `offset` records.

        Args:
            params: the validated parameters.
            offset: records already done by this run or the run it resumes.
        Returns:
            An iterator of batches.
        """
        raise NotImplementedError

    def transform(self, batch: Batch) -> Batch:
        """Turn extracted records into rows for `load`.

        Args:
            batch: a batch from `extract`.
        Returns:
            The batch to load.
        """
        return batch

    def load(self, batch: Batch, session: Session) -> int:
        """Write the batch's rows in `session`; the runner commits them with the new offset.

        Args:
            batch: a transformed batch.
            session: the write session of this batch's transaction.
        Returns:
            How many records were loaded.
        """
        raise NotImplementedError


def int_param(
    params: dict[str, Any], name: str, default: int | None, *, minimum: int = 0
) -> int | None:
    """Parameter `name` as an int of at least `minimum`, or JobError naming it."""
    value = params.get(name, default)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise JobError(f"Parameter '{name}' must be a whole number, not {value!r}.") from None
    if number < minimum:
        raise JobError(f"Parameter '{name}' must be at least {minimum}, not {number}.")
    return number
