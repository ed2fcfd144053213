"""The `runwatch` CLI, in-process through `main([...])` and as a real `python -m etl` process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import select

from db.models import DemoSubject, Run, RunEvent, RunStatus
from db.queries import (
    RunFilters,
    RunSort,
    count_runs,
    create_run,
    get_run,
    list_audit,
    list_events,
    list_jobs,
    read_session,
    write_session,
)
from db.settings import Settings
from etl.cli import main, parse_moment, parse_param, parse_until
from etl.seed import seed_history
from reports.export import stream_export
from tests.factories import make_run

ROOT = Path(__file__).resolve().parent.parent
RUN_RECORD_FIELDS = [
    "id",
    "job",
    "status",
    "trigger",
    "triggered_by",
    "start_date",
    "end_date",
    "duration",
    "total_records",
    "offset",
    "records_loaded",
    "records_rejected",
    "counters",
    "current_step",
    "error_type",
    "error_message",
    "created_at",
    "resumed_from",
]


def cli_process(*args: str) -> subprocess.Popen[bytes]:
    """Start `python -m etl ARGS` with this test's RUNWATCH_* environment."""
    return subprocess.Popen(
        [sys.executable, "-m", "etl", *args],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def exited(process: subprocess.Popen[bytes], timeout: float = 60) -> int:
    """The exit code of a stopping `runwatch worker`; one still running after `timeout` prints
    every thread's stack (SIGUSR1) into the failure, then is killed."""
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGUSR1)
        time.sleep(1)
        process.kill()
        stderr = process.communicate()[1].decode(errors="replace")
        raise AssertionError(
            f"still running {timeout:g} s after SIGTERM:\n{stderr[-8000:]}"
        ) from None


def cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    """Run `python -m etl ARGS` to its end."""
    process = cli_process(*args)
    out, err = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def runs(engine: sa.Engine) -> list[Run]:
    with read_session(engine) as session:
        return list(session.exec(select(Run).order_by(Run.id)).all())


def subject_loads(engine: sa.Engine) -> dict[int, int]:
    with read_session(engine) as session:
        return {s.id: s.loads for s in session.exec(select(DemoSubject)).all()}


# ---------------------------------------------------------------- argument parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("total=500", ("total", 500)),
        ("ratio=0.5", ("ratio", 0.5)),
        ("verbose=true", ("verbose", True)),
        ("name=catalogue", ("name", "catalogue")),
        ('code="42"', ("code", "42")),
        ("path=data/a=b.csv", ("path", "data/a=b.csv")),
        ('key=["id", "day"]', ("key", ["id", "day"])),
        ("empty=", ("empty", "")),
    ],
)
def test_param_values_parse_as_json_else_text(text: str, expected: tuple[str, object]) -> None:
    assert parse_param(text) == expected


def test_dates_are_utc_when_naive_and_a_bare_until_date_includes_the_day() -> None:
    assert parse_moment("2026-03-01") == datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_moment("2026-03-01T10:30") == datetime(2026, 3, 1, 10, 30, tzinfo=UTC)
    assert parse_moment("2026-03-01T10:30+02:00") == datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
    assert parse_until("2026-03-01") == datetime(2026, 3, 2, tzinfo=UTC)
    assert parse_until("2026-03-01T12:00") == datetime(2026, 3, 1, 12, tzinfo=UTC)


# ---------------------------------------------------------------- run, cancel, resume, worker


def test_run_executes_here_and_exits_0(
    engine: sa.Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", "demo", "-p", "total=500", "-p", "batch_size=100", "-p", "delay_ms=0"])
    err = capsys.readouterr().err
    assert code == 0
    [run] = runs(engine)
    assert run.status == RunStatus.FINISHED and run.offset == 500
    assert run.params["total"] == 500 and run.worker_id and ":cli:" in run.worker_id
    assert "500/500" in err and "100.0%" in err and f"Run #{run.id} finished" in err
    assert len(subject_loads(engine)) == 500


def test_failed_run_exits_1_with_its_error(
    engine: sa.Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", "demo", "-p", "total=300", "-p", "batch_size=50", "-p", "fail_at=120"])
    assert code == 1
    assert "Demo failure provoked at record 120" in capsys.readouterr().err
    [run] = runs(engine)
    assert run.status == RunStatus.FAILED and run.offset == 100


def test_detach_enqueues_a_pending_run_and_prints_its_id(
    engine: sa.Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "demo", "--detach", "-p", "total=100"]) == 0
    [run] = runs(engine)
    assert capsys.readouterr().out.strip() == str(run.id)
    assert run.status == RunStatus.PENDING and run.worker_id is None
    with read_session(engine) as session:
        [audit] = list_audit(session=session, action="trigger")
    assert audit.target == f"run:{run.id}" and audit.details["params"] == {"total": 100}


def test_job_with_an_active_run_exits_3(
    engine: sa.Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    with write_session(engine) as session:
        active = create_run(session=session, job="demo")
    assert main(["run", "demo", "--detach"]) == 3
    assert f"already has an active run (#{active.id})" in capsys.readouterr().err
    assert len(runs(engine)) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "nope"], "No job named 'nope'"),
        (["run", "demo", "-p", "nokey"], "expected key=value"),
        (["run", "demo", "-p", "bogus=1"], "Unknown demo parameter(s): bogus"),
        (["run", "demo", "-p", "total=many"], "'total' must be a whole number"),
        (["run", "demo", "-p", "total=99999999999999999999999"], "must be at most 2,147,483,647"),
        (["run", "demo", "--detach", "-p", "total=10.5"], "'total' must be a whole number"),
        (["run", "demo", "-p", "delay_ms=99999999999"], "'delay_ms' must be at most"),
        (["runs", "--since", "last tuesday"], "expected an ISO date or datetime"),
        (["runs", "--until", "2026-13-01"], "expected an ISO date or datetime"),
        (["runs", "--until", "9999-12-31"], "expected an ISO date or datetime"),
        (["cancel", "99999999999"], "must be at most 2,147,483,647"),
        (["seed-history", "--days", "99999999", "--runs-per-day", "5"], "must be at most 3,650"),
        (["runs", "--status", "done"], "invalid choice: 'done'"),
        (["runs", "--format", "xml"], "invalid choice: 'xml'"),
        (["cancel", "999"], "No run #999"),
        (["cancel", "abc"], "expected a whole number"),
        (["resume", "999"], "No run #999"),
        (["seed-history", "--days", "0", "--runs-per-day", "5"], "must be at least 1"),
        ([], "required: COMMAND"),
        (["add-job", "Bad!", "--kind", "demo"], "must be 1-100 lower-case letters"),
        (["add-job", "x", "--kind", "nope"], "Unknown job kind 'nope'"),
        (["add-job", "x", "--kind", "demo", "-p", "total=abc"], "'total' must be a whole number"),
        (["add-job", "x", "--kind", "demo", "-p", "colour=red"], "Unknown demo parameter"),
        (["add-job", "x"], "--kind"),
    ],
)
def test_bad_input_exits_2_with_a_message_and_no_traceback(
    engine: sa.Engine, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    if argv[:1] == ["run"] and any("=" in arg for arg in argv):  # a refused parameter: one line
        assert err.count("\n") == 1
    with read_session(engine) as session:
        assert count_runs(session=session) == 0  # refused before any run was created
        assert [job.name for job in list_jobs(session=session)] == ["csv_import", "demo"]


def test_cancel_a_pending_run_then_again_is_refused(
    engine: sa.Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["run", "demo", "--detach"])
    [run] = runs(engine)
    assert main(["cancel", str(run.id)]) == 0
    assert f"Run #{run.id} cancelled." in capsys.readouterr().out
    assert runs(engine)[0].status == RunStatus.CANCELLED
    assert main(["cancel", str(run.id)]) == 2
    assert "only an active run can be cancelled" in capsys.readouterr().err


def test_resume_completes_a_failed_run_from_its_checkpoint(engine: sa.Engine) -> None:
    assert main(["run", "demo", "-p", "total=400", "-p", "batch_size=50", "-p", "fail_at=230"]) == 1
    failed = runs(engine)[0]
    assert main(["resume", str(failed.id)]) == 0
    resumed = runs(engine)[1]
    assert resumed.resumed_from == failed.id and resumed.status == RunStatus.FINISHED
    assert resumed.trigger == "retry" and resumed.offset == 400
    assert subject_loads(engine) == dict.fromkeys(range(400), 1)


def test_resume_restart_starts_again_from_zero(engine: sa.Engine) -> None:
    main(["run", "demo", "-p", "total=200", "-p", "batch_size=50", "-p", "fail_at=120"])
    failed = runs(engine)[0]
    assert main(["resume", str(failed.id), "--restart"]) == 0
    restarted = runs(engine)[1]
    with read_session(engine) as session:
        messages = [e.message for e in list_events(session=session, run_id=restarted.id)]
    assert any(m.startswith("Extracting from offset 0 of 200") for m in messages)
    loads = subject_loads(engine)
    assert {loads[i] for i in range(100)} == {2} and {loads[i] for i in range(100, 200)} == {1}


def test_worker_once_executes_the_pending_run(
    engine: sa.Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["worker", "--once"]) == 0
    assert "No pending run." in capsys.readouterr().err
    main(["run", "demo", "--detach", "-p", "total=150", "-p", "batch_size=50"])
    assert main(["worker", "--once"]) == 0
    assert runs(engine)[0].status == RunStatus.FINISHED
    main(["run", "demo", "--detach", "-p", "total=150", "-p", "fail_at=10"])
    assert main(["worker", "--once"]) == 1


# ---------------------------------------------------------------- runs: table, CSV, JSON


def _history(engine: sa.Engine) -> None:
    start = datetime(2026, 3, 1, 9, tzinfo=UTC)
    with write_session(engine) as session:
        for day in range(4):
            created = start + timedelta(days=day)
            make_run(session, created_at=created, started_at=created)
        make_run(
            session,
            created_at=start + timedelta(hours=3),
            status="failed",
            error_type="JobError",
            error_message="=cmd|' /C calc'!A0",
            job="csv_import",
        )


def test_runs_json_lists_exactly_the_run_record_fields(engine: sa.Engine, tmp_path: Path) -> None:
    _history(engine)
    target = tmp_path / "runs.json"
    assert main(["runs", "--format", "json", "-o", str(target)]) == 0
    records = json.loads(target.read_bytes())
    assert len(records) == 5
    assert all(list(record) == RUN_RECORD_FIELDS for record in records)
    assert records[0]["created_at"] == "2026-03-04T09:00:00.000000+00:00"  # newest first


def test_runs_csv_is_byte_identical_to_stream_export(engine: sa.Engine, tmp_path: Path) -> None:
    _history(engine)
    target = tmp_path / "runs.csv"
    argv = ["runs", "--format", "csv", "--job", "demo", "--since", "2026-03-02", "--asc"]
    assert main([*argv, "-o", str(target)]) == 0
    filters = RunFilters(jobs=("demo",), since=datetime(2026, 3, 2, tzinfo=UTC))
    expected = b"".join(
        stream_export(engine=engine, fmt="csv", filters=filters, sort=RunSort(descending=False))
    )
    assert target.read_bytes() == expected
    assert expected.count(b"\n") == 1 + 3
    with read_session(engine) as session:
        audits = list_audit(session=session, action="export")
    [from_cli] = [a for a in audits if a.details["source"] == "cli"]
    assert from_cli.details["rows"] == 3 and from_cli.details["format"] == "csv"


def test_runs_since_and_until_select_by_creation_time(engine: sa.Engine, tmp_path: Path) -> None:
    _history(engine)
    target = tmp_path / "runs.json"
    argv = ["runs", "--format", "json", "-o", str(target)]
    main([*argv, "--since", "2026-03-02", "--until", "2026-03-03"])
    assert [r["created_at"][:10] for r in json.loads(target.read_bytes())] == [
        "2026-03-03",
        "2026-03-02",
    ]
    main([*argv, "--since", "2026-03-01T13:00+02:00", "--until", "2026-03-01T13:00"])
    assert [r["job"] for r in json.loads(target.read_bytes())] == ["csv_import"]


def test_runs_table_shows_runs_and_says_when_cut(
    engine: sa.Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    _history(engine)
    assert main(["runs", "--limit", "2", "--status", "finished"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["ID", "JOB", "STATUS", "TRIGGER"]
    assert len(out) == 4 and "2 of 4 runs shown" in out[-1]
    assert main(["runs", "--limit", "0", "--status", "failed"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and "csv_import" in out[1] and "JobError" in out[1]


def test_unwritable_output_file_exits_2(
    engine: sa.Engine, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["runs", "--format", "csv", "-o", str(tmp_path / "no" / "such.csv")]) == 2
    assert "Cannot write" in capsys.readouterr().err


# ---------------------------------------------------------------- seed-history


def test_seed_history_inserts_terminal_runs_and_their_events(
    engine: sa.Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["seed-history", "--days", "3", "--runs-per-day", "200", "--events-per-run", "8"]
    assert main([*argv, "--seed", "5"]) == 0
    assert "Seeded 600 runs and 4,800 events" in capsys.readouterr().out
    with read_session(engine) as session:
        seeded = list(session.exec(select(Run)).all())
        events = session.exec(select(sa.func.count()).select_from(RunEvent)).one()
        first = list_events(session=session, run_id=seeded[0].id)
        levels = {e.level for e in list_events(session=session, limit=2000)}
    statuses = [r.status for r in seeded]
    assert set(statuses) == {"finished", "failed", "cancelled"}
    assert 0.75 < statuses.count("finished") / 600 < 0.95
    assert {r.job for r in seeded} >= {"demo", "csv_import"} and events == 4800
    assert all(r.error_message for r in seeded if r.status == "failed")
    assert all(r.ended_at and r.ended_at > r.started_at > r.created_at for r in seeded)
    assert [first[0].kind, first[-1].kind] == ["status", "status"] and len(first) == 8
    assert levels >= {"DEBUG", "INFO", "WARNING", "ERROR"}


def test_seed_history_is_deterministic_and_leaves_ids_for_new_runs(engine: sa.Engine) -> None:
    end = datetime(2026, 2, 1, tzinfo=UTC)
    for _ in range(2):
        seed_history(engine, days=2, runs_per_day=40, events_per_run=4, seed=9, end=end)
    rows = runs(engine)
    first, second = rows[:80], rows[80:]

    def shape(run: Run) -> tuple[object, ...]:
        return (run.job, run.status, run.created_at, run.offset, run.error_message)

    assert [shape(r) for r in first] == [shape(r) for r in second]
    assert max(r.ended_at for r in rows if r.ended_at) < end
    with write_session(engine) as session:
        fresh = create_run(session=session, job="demo")  # the id sequence moved past the seed
    assert fresh.id == 161


# ---------------------------------------------------------------- a real process


def test_process_exit_codes_and_messages(engine: sa.Engine) -> None:
    finished = cli("run", "demo", "-p", "total=200", "-p", "batch_size=50")
    assert finished.returncode == 0, finished.stderr
    assert b"finished" in finished.stderr
    failed = cli("run", "demo", "-p", "total=200", "-p", "batch_size=50", "-p", "fail_at=60")
    assert failed.returncode == 1 and b"Demo failure provoked" in failed.stderr
    detached = cli("run", "demo", "--detach")
    assert detached.returncode == 0 and detached.stdout.strip().isdigit()
    active = cli("run", "demo", "--detach")
    assert active.returncode == 3 and b"already has an active run" in active.stderr
    for argv in (["run", "nope"], ["runs", "--since", "soon"], ["cancel", "999"], ["bogus"]):
        bad = cli(*argv)
        assert bad.returncode == 2 and bad.stderr and b"Traceback" not in bad.stderr, argv


def test_process_csv_and_json_on_stdout_equal_stream_export(engine: sa.Engine) -> None:
    _history(engine)
    for fmt in ("csv", "json"):
        output = cli("runs", "--format", fmt, "--status", "finished")
        assert output.returncode == 0, output.stderr
        filters = RunFilters(statuses=("finished",))
        assert output.stdout == b"".join(stream_export(engine=engine, fmt=fmt, filters=filters))


def test_ctrl_c_cancels_the_run_and_waits_for_it(engine: sa.Engine, settings: Settings) -> None:
    process = cli_process(
        "run", "demo", "-p", "total=100000", "-p", "batch_size=50", "-p", "delay_ms=20"
    )
    _wait_for_offset(engine, process, 100)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1, err
    assert b"Cancelling run" in err and b"Traceback" not in err
    [run] = runs(engine)
    assert run.status == RunStatus.CANCELLED and 100 <= run.offset < 100000


def _wait_for_offset(engine: sa.Engine, process: subprocess.Popen[bytes], offset: int) -> Run:
    """Poll until the process's run has committed `offset` records (generous for a slow machine)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        with read_session(engine) as session:
            run = session.exec(select(Run).order_by(sa.desc(Run.id))).first()
            if run is not None and run.offset >= offset:
                return get_run(session=session, run_id=run.id or 0)
        time.sleep(0.05)
    raise AssertionError(f"the run never reached offset {offset}")


def test_worker_process_finishes_its_run_on_sigterm_then_stops(engine: sa.Engine) -> None:
    cli("run", "demo", "--detach", "-p", "total=1500", "-p", "batch_size=50", "-p", "delay_ms=20")
    worker = cli_process("worker")
    _wait_for_offset(engine, worker, 100)
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=300)
    assert worker.returncode == 0, err
    assert b"Stopping after the current run" in err and b"Traceback" not in err
    [run] = runs(engine)
    assert run.status == RunStatus.FINISHED and run.offset == 1500
