"""The tamper-evident audit ledger and export verification (both backends), through commands and the CLI."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from db.engine import WRITE_OPTION, make_engine
from db.migrate import alembic_config, upgrade
from db.models import utcnow
from db.queries import Breach, RunFilters, list_audit, read_session
from etl import commands
from etl.cli import main
from etl.commands import Caller, Source
from reports.ledger import ledger_message, verify_ledger

ADMIN = Caller("admin", Source.CLI)


def add_jobs(engine: sa.Engine, names: list[str]) -> None:
    """One audited config_change per name."""
    for name in names:
        commands.add_job(engine, ADMIN, name=name, kind="demo", params={"total": 10})


def sql(engine: sa.Engine, statement: str, **values: object) -> None:
    """Run one statement directly on the database, as someone bypassing Runwatch would."""
    with engine.execution_options(**{WRITE_OPTION: True}).begin() as connection:
        connection.execute(sa.text(statement), values)


@pytest.fixture
def ledger(engine: sa.Engine) -> list[int]:
    """Five audit rows written through the command layer; their ids, oldest first."""
    add_jobs(engine, [f"job{i}" for i in range(5)])
    with read_session(engine) as session:
        return sorted(e.id for e in list_audit(session=session) if e.id is not None)


def test_ledger_intact_after_commands(engine: sa.Engine, ledger: list[int]) -> None:
    report = verify_ledger(engine)
    assert (report.intact, report.broken_id, report.breach) == (5, None, None)
    assert ledger_message(report).startswith("intact: 5 events")


def test_ledger_empty_is_intact(engine: sa.Engine) -> None:
    assert ledger_message(verify_ledger(engine)).startswith("intact: 0 events")


def test_ledger_names_a_row_edited_in_sql(engine: sa.Engine, ledger: list[int]) -> None:
    sql(engine, "UPDATE audit_event SET actor = 'mallory' WHERE id = :id", id=ledger[2])
    report = verify_ledger(engine)
    assert (report.broken_id, report.breach, report.intact) == (ledger[2], Breach.CHANGED, 2)
    assert f"broken at audit row #{ledger[2]}: it was changed" in ledger_message(report)


def test_ledger_names_a_row_whose_details_were_edited(engine: sa.Engine, ledger: list[int]) -> None:
    sql(engine, "UPDATE audit_event SET details = '{}' WHERE id = :id", id=ledger[0])
    report = verify_ledger(engine)
    assert (report.broken_id, report.breach) == (ledger[0], Breach.CHANGED)


def test_ledger_names_the_row_after_a_deleted_one(engine: sa.Engine, ledger: list[int]) -> None:
    sql(engine, "DELETE FROM audit_event WHERE id = :id", id=ledger[1])
    report = verify_ledger(engine)
    assert (report.broken_id, report.breach, report.intact) == (ledger[2], Breach.DELETED, 1)
    assert "a row before it was deleted" in ledger_message(report)


def test_ledger_names_the_first_row_deleted_from_the_start(
    engine: sa.Engine, ledger: list[int]
) -> None:
    sql(engine, "DELETE FROM audit_event WHERE id = :id", id=ledger[0])
    report = verify_ledger(engine)
    assert (report.broken_id, report.breach, report.intact) == (ledger[1], Breach.DELETED, 0)


def _insert(engine: sa.Engine, row_id: int) -> None:
    sql(
        engine,
        "INSERT INTO audit_event (id, ts, actor, action, target, details) "
        "VALUES (:id, :ts, 'mallory', 'trigger', 'run:1', '{}')",
        id=row_id,
        ts=utcnow().replace(tzinfo=None),
    )


def test_ledger_names_a_row_inserted_before_the_first(engine: sa.Engine, ledger: list[int]) -> None:
    _insert(engine, 0)
    report = verify_ledger(engine)
    assert (report.broken_id, report.breach, report.intact) == (0, Breach.INSERTED, 0)
    assert "it was inserted outside Runwatch" in ledger_message(report)


def test_ledger_names_a_row_inserted_at_the_end(engine: sa.Engine, ledger: list[int]) -> None:
    _insert(engine, ledger[-1] + 1)
    report = verify_ledger(engine)
    assert (report.broken_id, report.breach, report.intact) == (ledger[-1] + 1, Breach.INSERTED, 5)


def test_ledger_keeps_chaining_after_an_append_on_a_broken_chain(
    engine: sa.Engine, ledger: list[int]
) -> None:
    sql(engine, "UPDATE audit_event SET target = 'x' WHERE id = :id", id=ledger[4])
    add_jobs(engine, ["later"])
    assert verify_ledger(engine).broken_id == ledger[4]


@pytest.mark.postgres_only
def test_eight_concurrent_writers_keep_one_chain(engine: sa.Engine) -> None:
    start = threading.Barrier(8)

    def writer(n: int) -> None:
        start.wait()
        add_jobs(engine, [f"w{n}-{i}" for i in range(10)])

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report = verify_ledger(engine)
    assert (report.intact, report.breach) == (80, None)


# ---------------------------------------------------------------- migration


def test_migration_chains_the_rows_already_there(database_url: str) -> None:
    engine = make_engine(database_url)
    config = alembic_config()
    with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0004")
        table = sa.table(
            "audit_event",
            *(sa.column(n) for n in ("ts", "actor", "action", "target")),
            sa.column("details", sa.JSON),
        )
        rows = [
            {"ts": utcnow().replace(tzinfo=None), "actor": f"a{i}", "action": "trigger"}
            for i in range(3)
        ]
        conn.execute(sa.insert(table), [r | {"target": "run:1", "details": {"n": 1}} for r in rows])
    upgrade(engine)
    assert ledger_message(verify_ledger(engine)).startswith("intact: 3 events")
    add_jobs(engine, ["after"])
    assert verify_ledger(engine).intact == 4
    engine.dispose()


# ---------------------------------------------------------------- the CLI


def test_cli_audit_verify_exit_codes(
    engine: sa.Engine, ledger: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "verify"]) == 0
    assert capsys.readouterr().out.startswith("intact: 5 events")
    sql(engine, "UPDATE audit_event SET action = 'cancel' WHERE id = :id", id=ledger[1])
    assert main(["audit", "verify"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"broken at audit row #{ledger[1]}" in err


def _export(engine: sa.Engine, tmp_path: Path, fmt: commands.Format = "csv") -> Path:
    caller = Caller("analyst", Source.APP)
    data = b"".join(commands.export(engine, caller, fmt, RunFilters(jobs=("demo",))))
    path = tmp_path / f"export.{fmt}"
    path.write_bytes(data)
    return path


def test_verify_export_matches_the_exact_bytes(
    engine: sa.Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for fmt in ("csv", "json"):
        path = _export(engine, tmp_path, fmt)  # type: ignore[arg-type]
        assert main(["audit", "verify-export", str(path)]) == 0
        out = capsys.readouterr().out
        assert out.count("\n") == 1 and out.startswith("matches export (audit row #")
        assert f"{fmt.upper()} of runs, 0 rows, made by analyst via app" in out
        assert "filters: jobs=demo" in out


def test_verify_export_refuses_one_changed_byte(
    engine: sa.Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _export(engine, tmp_path)
    data = bytearray(path.read_bytes())
    data[3] ^= 0x01
    path.write_bytes(bytes(data))
    assert main(["audit", "verify-export", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("no match: no recorded export has SHA-256")


def test_verify_export_bad_input_exits_2(
    engine: sa.Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "verify-export", str(tmp_path / "missing.csv")]) == 2
    assert main(["audit", "verify-export", str(tmp_path)]) == 2
    assert main(["audit", "verify-export"]) == 2
    err = capsys.readouterr().err
    assert "Cannot read" in err and "Traceback" not in err
