"""Property: whatever schemathesis sends to any documented operation, the API never answers 5xx."""

from __future__ import annotations

from typing import Any

import hypothesis
import requests
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from db.queries import write_session
from tests.factories import make_run

EXAMPLES_PER_OPERATION = 25  # per mode and backend: bounded so the run stays well under a minute


def test_no_operation_answers_a_server_error(api_url: str, engine: sa.Engine) -> None:
    seed_runs(engine)
    schema = schemathesis.openapi.from_url(f"{api_url}/openapi.json")
    endless = event_streams(requests.get(f"{api_url}/openapi.json", timeout=30).json())
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [op for op in operations if (op.method.upper(), op.path) not in endless]
    assert len(operations) >= 10
    with requests.Session() as http:
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                exercise(operation, mode, api_url, http)


def event_streams(openapi: dict[str, Any]) -> set[tuple[str, str]]:
    """The operations answering with an endless SSE stream (the live feed has its own tests)."""
    return {
        (method.upper(), path)
        for path, methods in openapi["paths"].items()
        for method, spec in methods.items()
        if "text/event-stream" in spec.get("responses", {}).get("200", {}).get("content", {})
    }


def seed_runs(engine: sa.Engine) -> None:
    """Runs of every status, so generated run ids also reach existing runs (ids 1 to 10)."""
    statuses = ["finished", "failed", "cancelled", "failed", "finished"]
    with write_session(engine) as session:
        for i, status in enumerate(statuses * 2):
            job = "demo" if i % 2 else "csv_import"
            make_run(session, job=job, status=status, error_message=f"=error {i}")
        make_run(session, job="demo", status="running", ended_at=None)


def exercise(operation: Any, mode: GenerationMode, base_url: str, http: requests.Session) -> None:
    """Send generated requests of one mode to one operation; every answer must be below 500."""
    checks = [not_a_server_error]
    if mode is GenerationMode.POSITIVE:
        checks += [response_schema_conformance, status_code_conformance]

    @hypothesis.settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def send(case: Any) -> None:
        response = case.call(base_url=base_url, session=http, timeout=60)
        case.validate_response(response, checks=checks)

    try:
        send()
    except hypothesis.errors.Unsatisfiable:
        # an operation without parameters has no invalid request to generate
        assert mode is GenerationMode.NEGATIVE
