"""Races and crashes: concurrent starts of one job, and a run whose process is killed mid-way."""

from __future__ import annotations

import signal
import threading
import time

import pytest
import sqlalchemy as sa

from db.models import RunStatus
from db.queries import get_run, read_session
from db.settings import Settings
from etl.cli import main
from etl.worker import Worker
from tests.test_etl_cli import _wait_for_offset, cli_process, runs, subject_loads

ATTEMPTS = 10


def test_concurrent_starts_in_threads_create_exactly_one_run(
    engine: sa.Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    barrier = threading.Barrier(ATTEMPTS)
    codes: list[int] = []

    def attempt() -> None:
        barrier.wait()
        codes.append(main(["run", "demo", "--detach"]))

    threads = [threading.Thread(target=attempt) for _ in range(ATTEMPTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert sorted(codes) == [0] + [3] * (ATTEMPTS - 1)
    [run] = runs(engine)
    assert run.status == RunStatus.PENDING
    assert capsys.readouterr().err.count(f"already has an active run (#{run.id})") == ATTEMPTS - 1


def test_concurrent_starts_in_processes_create_exactly_one_run(engine: sa.Engine) -> None:
    processes = [cli_process("run", "demo", "--detach") for _ in range(ATTEMPTS)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in processes]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0] + [3] * (ATTEMPTS - 1), [err for _, _, err in results]
    [run] = runs(engine)
    [out] = [out for code, out, _ in results if code == 0]
    assert out.strip() == str(run.id).encode()
    assert all(b"Traceback" not in err for _, _, err in results)


def test_killed_run_is_detected_as_orphan_and_resumed_exactly_once(
    engine: sa.Engine, settings: Settings
) -> None:
    total = 6000
    params = ["-p", f"total={total}", "-p", "batch_size=50", "-p", "delay_ms=30"]
    process = cli_process("run", "demo", *params)
    run = _wait_for_offset(engine, process, 500)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    worker = Worker(engine, settings)
    assert settings.orphan_timeout_s <= 5
    deadline = time.monotonic() + 120
    while run.id not in worker.sweep_orphans():
        assert time.monotonic() < deadline, "the killed run was never marked an orphan"
        time.sleep(0.2)
    with read_session(engine) as session:
        orphan = get_run(session=session, run_id=run.id)
    assert orphan.status == RunStatus.FAILED and orphan.error_type == "interrupted"
    assert 500 <= orphan.offset < total
    resume = cli_process("resume", str(run.id))
    out, err = resume.communicate(timeout=300)
    assert resume.returncode == 0, err
    resumed = runs(engine)[-1]
    assert resumed.resumed_from == run.id and resumed.status == RunStatus.FINISHED
    assert resumed.offset == total
    assert subject_loads(engine) == dict.fromkeys(range(total), 1)
