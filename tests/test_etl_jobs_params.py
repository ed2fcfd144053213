"""The job parameter checks every front end goes through: what the database can store, and no truncation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from etl.jobs import JOB_KINDS, JobError
from etl.jobs.base import MAX_STORED_INT, int_param


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (99999999999999999999999, "must be at most 2,147,483,647"),
        (MAX_STORED_INT + 1, "must be at most 2,147,483,647"),
        ("9" * 5000, "must be a whole number"),
        (10.5, "must be a whole number, not 10.5"),
        ("10.5", "must be a whole number, not '10.5'"),
        (True, "must be a whole number, not True"),
        (float("inf"), "must be a whole number"),
        ([1], "must be a whole number"),
        (-1, "must be at least 0"),
    ],
)
def test_int_param_refuses_what_cannot_be_stored_or_would_be_truncated(
    value: Any, message: str
) -> None:
    with pytest.raises(JobError, match="Parameter 'total' " + message.replace("(", r"\(")):
        int_param({"total": value}, "total", 10)


@pytest.mark.parametrize(
    ("value", "expected"), [(10.0, 10), ("12", 12), (MAX_STORED_INT, MAX_STORED_INT)]
)
def test_int_param_accepts_whole_numbers_in_range(value: Any, expected: int) -> None:
    assert int_param({"total": value}, "total", 10) == expected


def test_every_kind_declares_the_parameters_its_validate_accepts() -> None:
    for kind, job_class in JOB_KINDS.items():
        names = [param.name for param in job_class.parameters]
        assert len(names) == len(set(names)), kind
        assert all(param.help for param in job_class.parameters), kind
        if kind != "remote":
            assert names, kind


def test_readme_lists_every_parameter_of_every_kind() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for kind, job_class in JOB_KINDS.items():
        for param in job_class.parameters:
            assert f"| `{kind}` | `{param.name}` |" in readme, (kind, param.name)
