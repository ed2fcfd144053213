"""`runwatch add-job`: admins configure jobs from the command line, checked by the job's kind."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from db.queries import get_job, list_audit, read_session
from etl.cli import main


def test_add_job_stores_checked_defaults_and_audits_it(
    engine: sa.Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["add-job", "nightly", "--kind", "demo", "-p", "total=500", "--schedule", "0 2 * * *"]
    assert main(argv) == 0
    assert "Job nightly (demo) added." in capsys.readouterr().out
    with read_session(engine) as session:
        job = get_job(session=session, name="nightly")
        audit = list_audit(session=session, action="config_change")
    assert (job.kind, job.schedule, job.enabled, job.title) == (
        "demo",
        "0 2 * * *",
        True,
        "nightly",
    )
    assert job.params == {"total": 500, "batch_size": 500, "delay_ms": 0, "seed": 42}
    assert audit[0].target == "job:nightly" and audit[0].details["replaced"] is False


def test_a_configured_job_runs(engine: sa.Engine) -> None:
    assert main(["add-job", "small", "--kind", "demo", "-p", "total=300"]) == 0
    assert main(["run", "small"]) == 0


def test_add_job_refuses_to_overwrite_unless_asked(
    engine: sa.Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["add-job", "nightly", "--kind", "demo"]) == 0
    assert main(["add-job", "nightly", "--kind", "demo", "-p", "total=7"]) == 2
    assert "exists already; add --replace" in capsys.readouterr().err
    assert main(["add-job", "nightly", "--kind", "demo", "-p", "total=7", "--replace"]) == 0
    with read_session(engine) as session:
        assert get_job(session=session, name="nightly").params["total"] == 7


def test_jobs_lists_each_jobs_parameters_with_type_default_and_required(
    engine: sa.Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["jobs"]) == 0
    out = capsys.readouterr().out
    assert "    path (text, required): a CSV file or a glob" in out
    assert "    total (whole number, default 10000): subjects to generate and load" in out


def test_add_job_with_a_schedule_in_a_time_zone_and_pause_it(
    engine: sa.Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["add-job", "nightly", "--kind", "demo", "--schedule", "0 2 * * *"]
    assert main([*argv, "--timezone", "Europe/Berlin", "--catchup", "all"]) == 0
    with read_session(engine) as session:
        job = get_job(session=session, name="nightly")
    assert (job.timezone, job.catchup, job.paused) == ("Europe/Berlin", "all", False)
    assert job.next_run_at is not None and job.next_run_at.hour in (0, 1)  # 02:00 in Berlin
    capsys.readouterr()
    assert main(["pause", "nightly"]) == 0
    assert main(["jobs"]) == 0
    assert "0 2 * * * (Europe/Berlin" in (listing := capsys.readouterr().out)
    assert "(paused)" in listing
    assert main(["run", "nightly", "--detach"]) == 2
    assert "Job 'nightly' is paused" in capsys.readouterr().err
    assert main(["unpause", "nightly"]) == 0
    assert "Job nightly resumed; next scheduled run" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--schedule", "61 * * * *"], "is not a cron expression of five fields"),
        (["--schedule", "* * * * *", "--timezone", "Nowhere/City"], "Time zone 'Nowhere/City'"),
    ],
)
def test_add_job_refuses_a_bad_schedule_with_a_message(
    engine: sa.Engine, capsys: pytest.CaptureFixture[str], option: list[str], message: str
) -> None:
    assert main(["add-job", "bad", "--kind", "demo", *option]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
