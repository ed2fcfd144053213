"""Every command through every front end (CLI, API, app) gives the same outcome and the same audit row."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import select

from db.models import AuditEvent, Job, Run, RunStatus
from db.queries import (
    ActiveRunExists,
    BadParams,
    InvalidState,
    JobDisabled,
    JobPaused,
    NotFound,
    RunwatchError,
    read_session,
    write_session,
)
from db.settings import Settings
from etl import commands
from etl.cli import main
from etl.commands import REFUSALS, Caller, Source
from tests.factories import make_run
from tests.pages import run_page, texts

FRONT_ENDS = ("cli", "api", "app")
Hook = Callable[[], None]


def nothing() -> None:
    """No change between drawing the page and clicking."""


@dataclass
class Outcome:
    """What a front end answered: refused or not, and the text it showed."""

    code: int  # CLI exit code, HTTP status, or 0/1 for the app
    text: str
    error: str | None = None  # the API's error kind


class FrontEnds:
    """Drives one action through the CLI, the API or the app; `between` runs after the page is drawn."""

    def __init__(self, name: str, api_url: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.name, self.api_url, self.capsys = name, api_url, capsys

    def trigger(self, job: str, params: dict[str, object], between: Hook = nothing) -> Outcome:
        if self.name == "cli":
            between()
            pairs = [f"-p{key}={json.dumps(value)}" for key, value in params.items()]
            return self._cli(["run", job, "--detach", *pairs])
        if self.name == "api":
            between()
            return self._api("/api/etl/trigger", json={"job": job, "params": params})
        at = run_page("Home.py")
        at.button(key=f"home_run_{job}").click().run()
        if not at.warning:  # the dialog opened
            at.text_area(key=f"home_params_{job}").set_value(json.dumps(params))
            between()
            at.button(key="home_confirm").click().run()
        assert not at.exception
        return Outcome(1 if (at.warning or at.error) else 0, texts(at))

    def cancel(self, run: Run, between: Hook = nothing) -> Outcome:
        if self.name == "cli":
            between()
            return self._cli(["cancel", str(run.id)])
        if self.name == "api":
            between()
            return self._api(f"/api/etl/runs/{run.id}/cancel")
        at = run_page("Home.py")
        between()
        at.button(key=f"home_cancel_{run.job}").click().run()
        assert not at.exception
        return Outcome(1 if at.warning else 0, texts(at))

    def resume(self, run: Run, *, from_checkpoint: bool, between: Hook = nothing) -> Outcome:
        if self.name == "cli":
            between()
            restart = [] if from_checkpoint else ["--restart"]
            return self._cli(["resume", str(run.id), "--detach", *restart])
        if self.name == "api":
            between()
            query = {"restart": str(not from_checkpoint).lower()}
            return self._api(f"/api/etl/runs/{run.id}/retry", params=query)
        at = run_page("pages/1_History.py", {"run": str(run.id)})
        between()
        at.button(key="history_resume" if from_checkpoint else "history_retry").click().run()
        assert not at.exception
        return Outcome(1 if at.warning else 0, texts(at))

    def pause(self, job: str, *, paused: bool) -> Outcome:
        verb = "pause" if paused else "unpause"
        if self.name == "cli":
            return self._cli([verb, job])
        if self.name == "api":
            return self._api(f"/api/etl/jobs/{job}/{verb}")
        at = run_page("pages/4_Jobs.py")
        at.button(key=f"jobs_{'pause' if paused else 'resume'}_{job}").click().run()
        assert not at.exception
        return Outcome(1 if at.warning else 0, texts(at))

    def _cli(self, argv: list[str]) -> Outcome:
        self.capsys.readouterr()
        code = main(argv)
        printed = self.capsys.readouterr()
        return Outcome(code, printed.err + printed.out)

    def _api(self, path: str, **request: object) -> Outcome:
        response = httpx.post(self.api_url + path, timeout=30, **request)  # type: ignore[arg-type]
        body = response.json()
        if response.is_success:
            return Outcome(response.status_code, body.get("message", ""))
        return Outcome(response.status_code, body["detail"], body.get("error"))


@pytest.fixture(params=FRONT_ENDS)
def front(
    request: pytest.FixtureRequest,
    api_url: str,
    no_worker: None,
    capsys: pytest.CaptureFixture[str],
) -> FrontEnds:
    """One front end, on a database with no worker running (queued runs stay pending)."""
    return FrontEnds(request.param, api_url, capsys)


@pytest.fixture
def jobs(engine: sa.Engine) -> Iterator[None]:
    """A second demo job, `nightly`, besides the built-in ones."""
    admin = Caller("admin", Source.CLI)
    commands.add_job(engine, admin, name="nightly", kind="demo", params={"total": 100})
    with write_session(engine) as session:
        session.execute(sa.delete(AuditEvent))
    yield


def audits(engine: sa.Engine) -> list[AuditEvent]:
    with read_session(engine) as session:
        return list(session.exec(select(AuditEvent).order_by(AuditEvent.id)).all())  # type: ignore[arg-type]


def runs(engine: sa.Engine) -> list[Run]:
    with read_session(engine) as session:
        return list(session.exec(select(Run).order_by(Run.id)).all())  # type: ignore[arg-type]


def expected_actor(front: FrontEnds, settings: Settings) -> str:
    return "api:127.0.0.1" if front.name == "api" else settings.actor


def assert_one_audit(
    engine: sa.Engine,
    front: FrontEnds,
    settings: Settings,
    action: str,
    target: str,
    keys: set[str],
) -> AuditEvent:
    [audit] = audits(engine)
    assert (audit.action, audit.actor, audit.target) == (
        action,
        expected_actor(front, settings),
        target,
    )
    assert set(audit.details) == keys and audit.details["source"] == front.name
    return audit


def assert_refused(
    front: FrontEnds, outcome: Outcome, error: type[RunwatchError], text: str
) -> None:
    """Refused the way this front end reports `error`, with the command layer's message."""
    if front.name == "cli":
        assert outcome.code == REFUSALS[error].exit_code
        assert outcome.text.startswith("runwatch: ") and outcome.text.count("\n") == 1
    elif front.name == "api":
        assert outcome.code == REFUSALS[error].http_status and outcome.error == error.__name__
    else:
        assert outcome.code == 1
    assert text in outcome.text


# ---------------------------------------------------------------- trigger


def test_trigger_enqueues_one_run_and_one_audit_row(
    front: FrontEnds, engine: sa.Engine, settings: Settings, jobs: None
) -> None:
    outcome = front.trigger("nightly", {"total": 7})
    assert outcome.code in (0, 202)
    [run] = runs(engine)
    assert (run.job, run.status, run.params["total"], run.total_records) == (
        "nightly",
        "pending",
        7,
        7,
    )
    assert run.trigger == ("api" if front.name == "api" else "manual")
    audit = assert_one_audit(
        engine, front, settings, "trigger", f"run:{run.id}", {"job", "params", "source"}
    )
    assert audit.details["params"] == {"total": 7}


def disable(engine: sa.Engine, name: str) -> Hook:
    def hook() -> None:
        with write_session(engine) as session:
            job = session.get(Job, name)
            assert job is not None
            job.enabled = False

    return hook


def remove(engine: sa.Engine, name: str) -> Hook:
    def hook() -> None:
        with write_session(engine) as session:
            session.execute(sa.delete(Job).where(Job.name == name))  # type: ignore[arg-type]

    return hook


def test_a_disabled_job_refuses_runs_from_every_front_end(
    front: FrontEnds, engine: sa.Engine, jobs: None
) -> None:
    outcome = front.trigger("nightly", {}, between=disable(engine, "nightly"))
    assert_refused(front, outcome, JobDisabled, "Job 'nightly' is disabled")
    assert runs(engine) == [] and audits(engine) == []


def test_an_unknown_job_is_refused(front: FrontEnds, engine: sa.Engine, jobs: None) -> None:
    outcome = front.trigger("nightly", {}, between=remove(engine, "nightly"))
    assert_refused(front, outcome, NotFound, "nightly")
    assert runs(engine) == [] and audits(engine) == []


@pytest.mark.parametrize(
    ("params", "text"),
    [
        ({"total": "many"}, "Parameter 'total' must be a whole number"),
        ({"colour": "red"}, "Unknown demo parameter(s): colour"),
        ({"note": "a\x00b"}, "NUL character"),
    ],
)
def test_bad_parameters_are_refused_before_anything_is_queued(
    front: FrontEnds, engine: sa.Engine, jobs: None, params: dict[str, object], text: str
) -> None:
    outcome = front.trigger("nightly", params)
    assert_refused(front, outcome, BadParams, text)
    assert runs(engine) == [] and audits(engine) == []


def test_a_second_run_of_an_active_job_is_refused(
    front: FrontEnds, engine: sa.Engine, jobs: None
) -> None:
    with write_session(engine) as session:
        active = make_run(session, job="nightly", status=RunStatus.PENDING, ended_at=None)
    outcome = front.trigger("nightly", {})
    assert_refused(front, outcome, ActiveRunExists, f"#{active.id}")
    assert [r.id for r in runs(engine)] == [active.id] and audits(engine) == []


def test_a_paused_job_refuses_run_now_from_every_front_end(
    front: FrontEnds, engine: sa.Engine, jobs: None
) -> None:
    commands.pause(engine, Caller("admin", Source.CLI), "nightly")
    with write_session(engine) as session:
        session.execute(sa.delete(AuditEvent))
    outcome = front.trigger("nightly", {})
    assert_refused(front, outcome, JobPaused, "Job 'nightly' is paused: it starts no run")
    assert runs(engine) == [] and audits(engine) == []


# ---------------------------------------------------------------- pause


def test_pause_and_unpause_from_every_front_end_are_audited(
    front: FrontEnds, engine: sa.Engine, settings: Settings, jobs: None
) -> None:
    assert front.pause("nightly", paused=True).code in (0, 200)
    assert_one_audit(engine, front, settings, "pause", "job:nightly", {"active_run", "source"})
    with write_session(engine) as session:
        assert session.get(Job, "nightly").paused  # type: ignore[union-attr]
        session.execute(sa.delete(AuditEvent))
    assert front.pause("nightly", paused=False).code in (0, 200)
    assert_one_audit(engine, front, settings, "unpause", "job:nightly", {"next_run_at", "source"})
    if front.name != "app":  # the app shows Pause for a job that is not paused: no Resume to click
        outcome = front.pause("nightly", paused=False)
        assert_refused(front, outcome, InvalidState, "is not paused")


def test_pausing_leaves_the_active_run_alone(engine: sa.Engine, jobs: None) -> None:
    admin = Caller("admin", Source.CLI)
    run = commands.trigger(engine, admin, "nightly")
    commands.pause(engine, admin, "nightly")
    [left] = runs(engine)
    assert (left.id, left.status, left.cancel_requested) == (run.id, RunStatus.PENDING, False)


# ---------------------------------------------------------------- cancel


def test_cancel_of_a_pending_run_cancels_it_and_audits_it(
    front: FrontEnds, engine: sa.Engine, settings: Settings, jobs: None
) -> None:
    with write_session(engine) as session:
        pending = make_run(session, job="nightly", status=RunStatus.PENDING, ended_at=None)
    outcome = front.cancel(pending)
    assert outcome.code in (0, 200) and "cancelled" in outcome.text
    assert runs(engine)[0].status == RunStatus.CANCELLED
    assert_one_audit(
        engine, front, settings, "cancel", f"run:{pending.id}", {"job", "status", "source"}
    )


def test_cancel_of_a_finished_run_is_refused(
    front: FrontEnds, engine: sa.Engine, jobs: None
) -> None:
    with write_session(engine) as session:
        run = make_run(session, job="nightly", status=RunStatus.RUNNING, ended_at=None)

    def finish() -> None:
        with write_session(engine) as session:
            session.execute(sa.update(Run).values(status=RunStatus.FINISHED))

    outcome = front.cancel(run, between=finish)
    assert_refused(front, outcome, InvalidState, f"Run #{run.id} is finished")
    assert runs(engine)[0].status == RunStatus.FINISHED and audits(engine) == []


# ---------------------------------------------------------------- resume and retry


@pytest.mark.parametrize("from_checkpoint", [True, False])
def test_resume_and_retry_enqueue_a_new_run_and_audit_it(
    front: FrontEnds, engine: sa.Engine, settings: Settings, jobs: None, from_checkpoint: bool
) -> None:
    with write_session(engine) as session:
        failed = make_run(session, job="nightly", status=RunStatus.FAILED, offset=40)
    front.resume(failed, from_checkpoint=from_checkpoint)
    _, new = runs(engine)
    assert (new.status, new.trigger, new.resumed_from) == ("pending", "retry", failed.id)
    assert new.offset == (40 if from_checkpoint else 0)
    audit = assert_one_audit(
        engine,
        front,
        settings,
        "retry",
        f"run:{new.id}",
        {"job", "resumed_from", "from_checkpoint", "source"},
    )
    assert audit.details["from_checkpoint"] is from_checkpoint


def test_resume_of_a_run_of_a_disabled_job_is_refused(
    front: FrontEnds, engine: sa.Engine, jobs: None
) -> None:
    with write_session(engine) as session:
        failed = make_run(session, job="nightly", status=RunStatus.FAILED)
    outcome = front.resume(failed, from_checkpoint=True, between=disable(engine, "nightly"))
    assert_refused(front, outcome, JobDisabled, "Job 'nightly' is disabled")
    assert len(runs(engine)) == 1 and audits(engine) == []


def test_resume_of_a_finished_run_is_refused(
    front: FrontEnds, engine: sa.Engine, jobs: None
) -> None:
    with write_session(engine) as session:
        run = make_run(session, job="nightly", status=RunStatus.FAILED)

    def finish() -> None:
        with write_session(engine) as session:
            session.execute(sa.update(Run).values(status=RunStatus.FINISHED))

    outcome = front.resume(run, from_checkpoint=True, between=finish)
    assert_refused(front, outcome, InvalidState, "only failed or cancelled runs resume")
    assert len(runs(engine)) == 1 and audits(engine) == []


# ---------------------------------------------------------------- jobs


def test_add_job_checks_its_kind_and_audits_the_change(engine: sa.Engine) -> None:
    admin = Caller("root", Source.CLI)
    job, existed = commands.add_job(engine, admin, name="hourly", kind="demo", params={"total": 5})
    assert (job.params["total"], existed) == (5, False)
    [audit] = [a for a in audits(engine) if a.target == "job:hourly"]
    assert (audit.action, audit.actor) == ("config_change", "root")
    assert set(audit.details) == {
        *("kind", "params", "enabled", "replaced", "source"),
        *("schedule", "timezone", "catchup"),
    }
    with pytest.raises(InvalidState, match="exists already"):
        commands.add_job(engine, admin, name="hourly", kind="demo")
    with pytest.raises(BadParams, match="Unknown job kind"):
        commands.add_job(engine, admin, name="other", kind="nope")
    with pytest.raises(BadParams, match="lower-case"):
        commands.add_job(engine, admin, name="Bad Name", kind="demo")


def test_every_refusal_has_one_exit_code_and_one_http_status() -> None:
    kinds = [ActiveRunExists, JobDisabled, JobPaused, InvalidState, BadParams, NotFound]
    assert {
        (k, commands.refusal(k("x") if k is not ActiveRunExists else k("j", 1))) for k in kinds
    } == {(k, REFUSALS[k]) for k in kinds}
