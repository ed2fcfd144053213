"""The job interface: what the runner calls, batch by batch."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from sqlmodel import Session

from db.models import MAX_ID


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


MAX_STORED_INT = MAX_ID  # counts a run stores (total_records, offset) are INTEGER columns too
WHOLE_NUMBER = "whole number"


@dataclass(frozen=True)
class Param:
    """One parameter a job kind accepts: what the Run now dialog, Jobs page and `runwatch jobs` show."""

    name: str
    type: str  # as a person reads it: "whole number", "text", "columns"…
    default: Any = None
    required: bool = False
    help: str = ""
    minimum: int = 0  # whole numbers only
    maximum: int = MAX_STORED_INT

    def note(self) -> str:
        """`required`, `optional` or `default …`."""
        if self.required:
            return "required"
        return "optional" if self.default is None else f"default {self.default}"

    def describe(self) -> str:
        """`name` (type, default or required): help — one line."""
        return f"{self.name} ({self.type}, {self.note()}): {self.help}"


class Job:
    """Base class of every job kind. The runner commits each `load` with the new offset."""

    kind: ClassVar[str] = ""
    description: ClassVar[str] = ""
    parameters: ClassVar[tuple[Param, ...]] = ()  # what validate() accepts, for people to read
    # load() appends run events: the runner then locks the run first (db.queries.hold_run)
    appends_events: ClassVar[bool] = False

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
    params: dict[str, Any],
    name: str,
    default: int | None,
    *,
    minimum: int = 0,
    maximum: int = MAX_STORED_INT,
) -> int | None:
    """Parameter `name` as an int within [minimum, maximum], or JobError naming it."""
    value = params.get(name, default)
    if value is None or value == "":
        return default
    number = _whole_number(name, value)
    if number < minimum:
        raise JobError(f"Parameter '{name}' must be at least {minimum:,}, not {number:,}.")
    if number > maximum:
        raise JobError(f"Parameter '{name}' must be at most {maximum:,}.")
    return number


def _whole_number(name: str, value: Any) -> int:
    """`value` as an int; a fraction (10.5) or a boolean is refused rather than truncated."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int | str) and not isinstance(value, bool):
        try:
            return int(value)
        except ValueError:
            pass
    raise JobError(f"Parameter '{name}' must be a whole number, not {value!r}.")


def int_params(specs: tuple[Param, ...], params: dict[str, Any]) -> dict[str, int | None]:
    """The whole-number parameters of `specs`, each checked by int_param with its declared bounds."""
    return {
        spec.name: int_param(
            params, spec.name, spec.default, minimum=spec.minimum, maximum=spec.maximum
        )
        for spec in specs
        if spec.type == WHOLE_NUMBER
    }
