"""The csv_import job: real CSV files through the real runner, on SQLite and PostgreSQL."""

from __future__ import annotations

import gc
import tracemalloc
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from db.models import Run, RunStatus, UTCDateTime
from db.queries import (
    count_runs,
    create_run,
    get_run,
    read_session,
    resume_run,
    write_session,
)
from db.settings import Settings
from etl.cli import main
from etl.jobs import JobError, RunContext
from etl.jobs.csv_files import count_plain_lines
from etl.jobs.csv_import import CsvImportJob
from etl.jobs.csv_rows import CHUNK
from etl.jobs.tables import list_rejects
from etl.runner import Runner

HEADER = "id,name,score\n"


def write(folder: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to folder/name byte for byte (no newline translation)."""
    path = folder / name
    path.write_bytes(text.encode(encoding))
    return path


def run_import(engine: sa.Engine, settings: Settings, **params: Any) -> Run:
    """Run csv_import with `params` to its end, as `runwatch run` does, and return it as stored."""
    params.setdefault("table", "people")
    params.setdefault("key", "id")
    params.setdefault("types", "id:int,score:float")
    with write_session(engine) as session:
        run = create_run(session=session, job="csv_import", params=params, status="running")
    Runner(engine, settings).execute(run)
    return stored(engine, run.id)


def stored(engine: sa.Engine, run_id: int | None) -> Run:
    assert run_id is not None
    with read_session(engine) as session:
        return get_run(session=session, run_id=run_id, fresh=True)


def rows(engine: sa.Engine, table: str = "people") -> list[tuple[Any, ...]]:
    """Every row of the target table, by its first column."""
    target = sa.Table(table, sa.MetaData(), autoload_with=engine)
    with engine.connect() as connection:
        query = sa.select(target).order_by(*target.primary_key.columns)
        return [tuple(row) for row in connection.execute(query)]


def rejects(engine: sa.Engine, run_id: int | None) -> list[tuple[str, int, str, str]]:
    """The run's quarantine as (file name, line, reason, raw)."""
    assert run_id is not None
    with read_session(engine) as session:
        found = list_rejects(session=session, run_id=run_id)
    return [(Path(r.file).name, r.line, r.reason, r.raw) for r in found]


def assert_counts(run: Run, *, loaded: int, rejected: int, files: int) -> None:
    """The run's counts agree with each other and with the expected numbers."""
    extracted = loaded + rejected
    assert run.counters == {
        "extracted": extracted,
        "loaded": loaded,
        "rejected": rejected,
        "files": files,
    }
    assert (run.records_loaded, run.records_rejected) == (loaded, rejected)
    assert run.offset == run.total_records == extracted


# ---------------------------------------------------------------- loading


def test_import_loads_typed_rows(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    text = (
        "id,label,price,active,day,seen_at\n"
        "1,apple,1.5,yes,2026-01-02,2026-01-02T03:04:05+02:00\n"
        "2,,,,,\n"
    )
    path = write(tmp_path, "items.csv", text)
    types = "id:int,price:float,active:bool,day:date,seen_at:datetime"
    run = run_import(engine, settings, path=str(path), table="items", types=types)
    assert run.status == RunStatus.FINISHED, run.error_message
    assert_counts(run, loaded=2, rejected=0, files=1)
    table = sa.Table(
        "items",
        sa.MetaData(),
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("label", sa.Text),
        sa.Column("price", sa.Double),
        sa.Column("active", sa.Boolean),
        sa.Column("day", sa.Date),
        sa.Column("seen_at", UTCDateTime),
    )
    with engine.connect() as connection:
        found = [tuple(r) for r in connection.execute(sa.select(table).order_by(table.c.id))]
    seen_at = datetime(2026, 1, 2, 1, 4, 5, tzinfo=UTC)
    assert found == [
        (1, "apple", 1.5, True, date(2026, 1, 2), seen_at),
        (2, "", None, None, None, None),  # empty text stays empty; other empty values are NULL
    ]


def test_reimport_changes_nothing(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    path = write(tmp_path, "people.csv", HEADER + "1,Ada,9.5\n2,Bob,7\n3,Cy,\n")
    first = run_import(engine, settings, path=str(path))
    before = rows(engine)
    versions = _row_versions(engine)
    second = run_import(engine, settings, path=str(path))
    assert first.status == second.status == RunStatus.FINISHED
    assert_counts(second, loaded=3, rejected=0, files=1)
    assert rows(engine) == before == [(1, "Ada", 9.5), (2, "Bob", 7.0), (3, "Cy", None)]
    assert _row_versions(engine) == versions  # not even rewritten with equal values


def _row_versions(engine: sa.Engine) -> list[str]:
    """PostgreSQL's row versions (xmin), which any update changes; nothing to compare on SQLite."""
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as connection:
        return list(connection.scalars(sa.text("SELECT xmin::text FROM people ORDER BY id")))


def test_a_stored_key_met_mid_batch_is_updated_and_the_rest_loaded(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    first = write(tmp_path, "first.csv", HEADER + "3000,old,0\n")
    assert run_import(engine, settings, path=str(first)).status == RunStatus.FINISHED
    lines = "".join(f"{i},n{i},{i}\n" for i in range(1, 6001))  # key 3000 in the second chunk
    path = write(tmp_path, "people.csv", HEADER + lines)
    run = run_import(engine, settings, path=str(path), batch_size=5000)
    assert run.status == RunStatus.FINISHED, run.error_message
    assert_counts(run, loaded=6000, rejected=0, files=1)
    found = rows(engine)
    assert len(found) == 6000 and found[2999] == (3000, "n3000", 3000.0)
    assert found[0] == (1, "n1", 1.0) and found[-1] == (6000, "n6000", 6000.0)


def test_glob_imports_files_in_sorted_order_later_files_update(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    write(tmp_path, "b.csv", HEADER + "2,Bea,2\n3,Cy,3\n")
    write(tmp_path, "a.csv", HEADER + "1,Ada,1\n2,Bob,1\n")
    run = run_import(engine, settings, path=str(tmp_path / "*.csv"), batch_size=1)
    assert run.status == RunStatus.FINISHED, run.error_message
    assert_counts(run, loaded=4, rejected=0, files=2)
    assert rows(engine) == [(1, "Ada", 1.0), (2, "Bea", 2.0), (3, "Cy", 3.0)]


def test_dates_in_other_iso_forms_are_stored_as_the_same_day(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    text = "day,sales\n2026-01-01,1\n20260102,2\n2026-W01-6,3\n2026-01-02,4\n"
    path = write(tmp_path, "sales.csv", text)
    types = {"day": "date", "sales": "int"}
    run = run_import(engine, settings, path=str(path), table="sales", key="day", types=types)
    assert run.status == RunStatus.FINISHED, run.error_message
    assert_counts(run, loaded=3, rejected=1, files=1)
    assert rows(engine, "sales") == [
        (date(2026, 1, 1), 1),
        (date(2026, 1, 2), 2),
        (date(2026, 1, 3), 3),
    ]
    assert rejects(engine, run.id)[0][1:3] == (
        5,
        "duplicate key day=2026-01-02: an earlier line has it",
    )


def test_sole_whole_number_key_keys_the_table_itself(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    path = write(tmp_path, "people.csv", HEADER + "7,Ada,1\n")
    run = run_import(engine, settings, path=str(path))
    assert run.status == RunStatus.FINISHED, run.error_message
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":  # the key is the rowid: no second B-tree to write
            found = connection.execute(sa.text("SELECT rowid, id FROM people")).one()
            assert tuple(found) == (7, 7)
        else:  # keys come from the file: no sequence behind the column
            query = "SELECT column_default FROM information_schema.columns WHERE table_name = 'people' AND column_name = 'id'"
            assert connection.scalar(sa.text(query)) is None


def test_composite_key_and_tab_delimiter(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    text = "day\tshop\tsales\n2026-01-01\tx\t5\n2026-01-01\ty\t6\n2026-01-01\tx\t7\n"
    path = write(tmp_path, "sales.tsv", text)
    run = run_import(
        engine,
        settings,
        path=str(path),
        table="sales",
        key="day,shop",
        types={"day": "date", "sales": "int"},
        delimiter="tab",
    )
    assert run.status == RunStatus.FINISHED, run.error_message
    assert_counts(run, loaded=2, rejected=1, files=1)
    assert rows(engine, "sales") == [(date(2026, 1, 1), "x", 5), (date(2026, 1, 1), "y", 6)]
    assert rejects(engine, run.id)[0][1:3] == (
        4,
        "duplicate key day=2026-01-01, shop=x: an earlier line has it",
    )


# ---------------------------------------------------------------- bad rows


def test_bad_rows_are_quarantined_with_file_line_and_reason(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    text = (
        HEADER
        + "1,Ada,9.5\n"  # line 2
        + "2,Bob\n"  # line 3: too few fields
        + "3,Cy,lots\n"  # line 4: not a number
        + ',"Di\nwith a line break",1\n'  # lines 5-6: empty key
        + "1,Ada again,3\n"  # line 7: key 1 again
        + "99999999999999999999,Big,1\n"  # line 8: past 64 bits
        + "4,Eve,4,extra\n"  # line 9: too many fields
        + "5,Fay,5\n"  # line 10
    )
    path = write(tmp_path, "people.csv", text)
    run = run_import(engine, settings, path=str(path))
    assert run.status == RunStatus.FINISHED, run.error_message
    assert_counts(run, loaded=2, rejected=6, files=1)
    assert rows(engine) == [(1, "Ada", 9.5), (5, "Fay", 5.0)]
    assert rejects(engine, run.id) == [
        ("people.csv", 3, "expected 3 fields, found 2", "2,Bob"),
        ("people.csv", 4, "column 'score': 'lots' is not a valid number", "3,Cy,lots"),
        ("people.csv", 5, "key column 'id' is empty", ',"Di\nwith a line break",1'),
        ("people.csv", 7, "duplicate key id=1: an earlier line has it", "1,Ada again,3"),
        (
            "people.csv",
            8,
            "column 'id': '99999999999999999999' is not a valid whole number",
            "99999999999999999999,Big,1",
        ),
        ("people.csv", 9, "expected 3 fields, found 4", "4,Eve,4,extra"),
    ]


def test_one_bad_row_among_many_good_ones_is_the_only_one_quarantined(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    lines = [f"{i},n{i},{i}.5\n" for i in range(1, 1001)]
    lines[611] = "612,n612,oops\n"  # line 613, in the second batch of 500
    path = write(tmp_path, "people.csv", HEADER + "".join(lines))
    run = run_import(engine, settings, path=str(path), batch_size=200)
    assert run.status == RunStatus.FINISHED, run.error_message
    assert_counts(run, loaded=999, rejected=1, files=1)
    found = rows(engine)
    assert len(found) == 999 and found[0] == (1, "n1", 1.5) and found[-1] == (1000, "n1000", 1000.5)
    assert 612 not in {row[0] for row in found}
    assert rejects(engine, run.id) == [
        ("people.csv", 613, "column 'score': 'oops' is not a valid number", "612,n612,oops")
    ]


def test_bad_rows_past_the_first_chunk_keep_their_lines(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    lines = [f"{i},n{i},{i}\n" for i in range(1, 5001)]
    lines[2999] = "3000,n3000\n"  # line 3001, in the second chunk of records parsed at once
    lines[4499] = "10,again,1\n"  # line 4501, in the third: key 10 is on line 11
    path = write(tmp_path, "people.csv", HEADER + "".join(lines))
    run = run_import(engine, settings, path=str(path))
    assert run.status == RunStatus.FINISHED, run.error_message
    assert_counts(run, loaded=4998, rejected=2, files=1)
    assert rejects(engine, run.id) == [
        ("people.csv", 3001, "expected 3 fields, found 2", "3000,n3000"),
        ("people.csv", 4501, "duplicate key id=10: an earlier line has it", "10,again,1"),
    ]
    assert rows(engine)[9] == (10, "n10", 10.0)


def test_nul_characters_are_quarantined_not_fatal(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    text = HEADER + "1,Ada,1\n2,B\x00b,2\n3,Cy,3\x00\n4,Di,4\n"
    path = write(tmp_path, "people.csv", text)
    run = run_import(engine, settings, path=str(path))
    assert run.status == RunStatus.FINISHED, run.error_message
    assert_counts(run, loaded=2, rejected=2, files=1)
    assert rows(engine) == [(1, "Ada", 1.0), (4, "Di", 4.0)]
    assert rejects(engine, run.id) == [
        (
            "people.csv",
            3,
            "column 'name' holds a NUL character, which PostgreSQL cannot store",
            "2,B\ufffdb,2",
        ),
        ("people.csv", 4, "column 'score': '3\\x00' is not a valid number", "3,Cy,3\ufffd"),
    ]


def test_same_key_in_two_files_is_no_duplicate(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    write(tmp_path, "1.csv", HEADER + "1,Ada,1\n")
    write(tmp_path, "2.csv", HEADER + "1,Ada,2\n1,Ada,3\n")
    run = run_import(engine, settings, path=str(tmp_path / "*.csv"))
    assert_counts(run, loaded=2, rejected=1, files=2)
    assert rows(engine) == [(1, "Ada", 2.0)]
    assert rejects(engine, run.id)[0][:2] == ("2.csv", 3)


def test_max_rejects_fails_the_run_once_exceeded(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    path = write(tmp_path, "people.csv", HEADER + "1,A,x\n2,B,2\n3,C,y\n4,D,z\n")
    allowed = run_import(engine, settings, path=str(path), max_rejects=3)
    assert allowed.status == RunStatus.FINISHED
    assert_counts(allowed, loaded=1, rejected=3, files=1)
    failed = run_import(engine, settings, path=str(path), max_rejects=2, table="people2")
    assert failed.status == RunStatus.FAILED and failed.error_type == "JobError"
    assert failed.error_message == (
        f"More than 2 rows rejected (max_rejects); {path}, line 5:"
        " column 'score': 'z' is not a valid number."
    )
    assert failed.records_loaded == failed.offset == 0  # the batch past the limit is not committed


def test_on_error_fail_stops_at_the_first_bad_row(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    path = write(tmp_path, "people.csv", HEADER + "1,A,1\n2,B,2\n3,C\n4,D,4\n")
    run = run_import(engine, settings, path=str(path), on_error="fail", batch_size=2)
    assert run.status == RunStatus.FAILED and run.error_type == "JobError"
    assert run.error_message == f"{path}, line 4: expected 3 fields, found 2 (on_error=fail)."
    assert run.offset == run.records_loaded == 2 and run.records_rejected == 0
    assert rows(engine) == [(1, "A", 1.0), (2, "B", 2.0)]
    assert rejects(engine, run.id) == []


# ---------------------------------------------------------------- file formats


def test_bom_and_crlf(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    path = write(tmp_path, "people.csv", "\ufeffid,name,score\r\n1,Ada,1\r\n2,Bob,2\r\n")
    run = run_import(engine, settings, path=str(path))
    assert run.status == RunStatus.FINISHED, run.error_message
    assert_counts(run, loaded=2, rejected=0, files=1)
    assert rows(engine) == [(1, "Ada", 1.0), (2, "Bob", 2.0)]


def test_quoted_fields_with_commas_and_line_breaks(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    text = (
        HEADER
        + '1,"Lovelace, Ada",1\n'
        + '2,"two\r\nlines, ""quoted""",2\n'  # lines 3-4
        + "\n"  # line 5: blank, skipped
        + '3,"three\nline\nname",3\n'  # lines 6-8
        + "4,bad,four\n"  # line 9
    )
    path = write(tmp_path, "people.csv", text)
    run = run_import(engine, settings, path=str(path), batch_size=2)
    assert run.status == RunStatus.FINISHED, run.error_message
    assert_counts(run, loaded=3, rejected=1, files=1)  # total_records exact despite the breaks
    assert rows(engine) == [
        (1, "Lovelace, Ada", 1.0),
        (2, 'two\r\nlines, "quoted"', 2.0),
        (3, "three\nline\nname", 3.0),
    ]
    assert [r[1] for r in rejects(engine, run.id)] == [9]


def test_empty_file_finishes_with_no_records(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    path = write(tmp_path, "people.csv", "")
    run = run_import(engine, settings, path=str(path))
    assert run.status == RunStatus.FINISHED, run.error_message
    assert_counts(run, loaded=0, rejected=0, files=1)
    assert not sa.inspect(engine).has_table("people")


def test_header_only_file_creates_the_empty_table(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    path = write(tmp_path, "people.csv", HEADER)
    run = run_import(engine, settings, path=str(path))
    assert run.status == RunStatus.FINISHED, run.error_message
    assert_counts(run, loaded=0, rejected=0, files=1)
    assert rows(engine) == []


def test_invalid_encoding_fails_naming_file_and_line(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    text = HEADER.encode() + b"1,Ada,1\n2,Caf\xe9,2\n"
    path = tmp_path / "people.csv"
    path.write_bytes(text)
    run = run_import(engine, settings, path=str(path))
    assert run.status == RunStatus.FAILED and run.error_type == "JobError"
    assert run.error_message == (
        f"{path} is not valid utf-8: line 3 has bytes that cannot be decoded (e9)."
    )
    latin = run_import(engine, settings, path=str(path), encoding="latin-1")
    assert latin.status == RunStatus.FINISHED, latin.error_message
    assert rows(engine) == [(1, "Ada", 1.0), (2, "Café", 2.0)]


def test_missing_key_column_fails_naming_the_file(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    path = write(tmp_path, "people.csv", "name,score\nAda,1\n")
    run = run_import(engine, settings, path=str(path), types="score:float")
    assert run.status == RunStatus.FAILED and run.error_type == "JobError"
    assert run.error_message == (
        f"{path}: the header lacks the key column(s) 'id' (it has 'name', 'score')."
    )


def test_nul_character_in_a_column_name_fails_naming_the_file(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    path = write(tmp_path, "people.csv", "id,na\x00me,score\n1,Ada,1\n")
    run = run_import(engine, settings, path=str(path))
    assert run.status == RunStatus.FAILED and run.error_type == "JobError"
    assert run.error_message == f"{path}: column name(s) 'na\\x00me' hold a NUL character."


def test_path_matching_no_file_fails(engine: sa.Engine, settings: Settings, tmp_path: Path) -> None:
    run = run_import(engine, settings, path=str(tmp_path / "nothing-*.csv"))
    assert run.status == RunStatus.FAILED and run.error_type == "JobError"
    assert run.error_message == f"No file matches path '{tmp_path / 'nothing-*.csv'}'."


def test_existing_table_without_the_key_constraint_is_refused(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE people (id BIGINT, name TEXT, score FLOAT)"))
    path = write(tmp_path, "people.csv", HEADER + "1,Ada,1\n")
    run = run_import(engine, settings, path=str(path))
    assert run.status == RunStatus.FAILED
    assert "no primary key or unique constraint on (id)" in (run.error_message or "")


# ---------------------------------------------------------------- resume


def test_resume_from_a_failed_runs_offset_loads_each_record_once(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    write(tmp_path, "a.csv", HEADER + "".join(f"{i},a{i},{i}\n" for i in range(1, 6)))
    b_text = (
        HEADER
        + "11,b11,1\n"
        + '12,"b12\nspans two lines",2\n'  # lines 3-4
        + "13,b13,3\n"
        + "11,b11 again,4\n"  # line 6: key 11 again, in the part the resumed run reads
        + "{last}\n"  # line 7
    )
    b = write(tmp_path, "b.csv", b_text.format(last="15,b15"))  # too few fields
    failed = run_import(engine, settings, path=str(tmp_path / "*.csv"), max_rejects=1, batch_size=3)
    assert failed.status == RunStatus.FAILED
    assert failed.error_message == (
        f"More than 1 rows rejected (max_rejects); {b}, line 7: expected 3 fields, found 2."
    )
    # a.csv in batches of 3 and 2, then the first batch of b.csv: the checkpoint is mid-file.
    assert failed.offset == failed.records_loaded == 8
    write(tmp_path, "b.csv", b_text.format(last="15,b15,5"))  # the file is fixed
    with write_session(engine) as session:
        resumed = resume_run(session=session, run_id=failed.id)
    finished = Runner(engine, settings).execute(resumed)
    assert finished.status == RunStatus.FINISHED, finished.error_message
    run = stored(engine, finished.id)
    assert_counts(run, loaded=9, rejected=1, files=2)
    assert [r[0] for r in rows(engine)] == [1, 2, 3, 4, 5, 11, 12, 13, 15]
    assert rejects(engine, failed.id) == []
    assert rejects(engine, run.id) == [
        ("b.csv", 6, "duplicate key id=11: an earlier line has it", "11,b11 again,4")
    ]


# ---------------------------------------------------------------- command line


def test_cli_run_imports_and_a_bad_file_exits_1(
    engine: sa.Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write(tmp_path, "good.csv", HEADER + "1,Ada,1\n2,Bob,x\n")
    params = ["-p", "table=people", "-p", "key=id", "-p", "types=id:int,score:float"]
    assert main(["run", "csv_import", "-p", f"path={good}", *params]) == 0
    assert rows(engine) == [(1, "Ada", 1.0)]
    bad = write(tmp_path, "bad.csv", "name\nAda\n")
    assert main(["run", "csv_import", "-p", f"path={bad}", "-p", "types={}", *params[:4]]) == 1
    err = capsys.readouterr().err
    assert f"{bad}: the header lacks the key column(s) 'id' (it has 'name')." in err
    assert "Traceback" not in err


def test_cli_refuses_bad_parameters_before_any_run(
    engine: sa.Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["run", "csv_import", "-p", f"path={tmp_path}/none.csv", "-p", "table=t", "-p", "key=id"]
    )
    assert code == 2
    assert "No file matches path" in capsys.readouterr().err
    with read_session(engine) as session:
        assert count_runs(session=session) == 0


# ---------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"table": "people", "key": "id"}, "Parameter 'path' is required"),
        ({"path": "*.csv", "key": "id"}, "Parameter 'table' is required"),
        ({"path": "*.csv", "table": "run", "key": "id"}, "Table 'run' belongs to Runwatch"),
        ({"path": "*.csv", "table": "Bad-Name", "key": "id"}, "must be lower-case letters"),
        ({"path": "*.csv", "table": "t"}, "Parameter 'key' is required"),
        ({"path": "*.csv", "table": "t", "key": "id", "types": "id:money"}, "unknown type"),
        ({"path": "*.csv", "table": "t", "key": "id", "types": "id"}, "must look like"),
        ({"path": "*.csv", "table": "t", "key": "id", "delimiter": ";;"}, "one character"),
        ({"path": "*.csv", "table": "t", "key": "id", "encoding": "klingon"}, "unknown encoding"),
        ({"path": "*.csv", "table": "t", "key": "id", "on_error": "skip"}, "reject or fail"),
        ({"path": "*.csv", "table": "t", "key": "id", "max_rejects": -1}, "at least 0"),
        ({"path": "*.csv", "table": "t", "key": "id", "colour": "red"}, "Unknown csv_import"),
    ],
)
def test_bad_parameters_are_refused_with_a_message(
    params: dict[str, Any], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "people.csv", HEADER)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(JobError, match=message):
        CsvImportJob(RunContext(run_id=1, job="csv_import"), params)


@pytest.mark.parametrize(
    ("content", "records"),
    [
        (b"", 0),
        (b"id\n", 0),
        (b"id\n1\n2\n", 2),
        (b"id\n1\n2", 2),  # no line end after the last record
        (b"id\r\n1\r\n2\r\n", 2),
        (b"id\n1\n\n2\n", None),  # a blank line is no record: parse instead
        (b'id\n"1\n2"\n', None),  # quotes may hold line breaks: parse instead
        (b"id\r1\r2\r", None),  # lone CRs end lines too: parse instead
    ],
)
def test_record_count_by_line_ends_only_where_lines_are_records(
    content: bytes, records: int | None, tmp_path: Path
) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(content)
    assert count_plain_lines(str(path)) == records


def _live_tables() -> int:
    gc.collect()
    return sum(1 for thing in gc.get_objects() if isinstance(thing, sa.Table))


def test_fifty_imports_in_one_process_leave_no_table_metadata_behind(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    lines = "".join(f"{i},n{i},{i * 1.5}\n" for i in range(600))
    path = write(tmp_path, "many.csv", "id,name,score\n" + lines)
    counts = []
    for _ in range(50):  # every import after the first updates by key: PostgreSQL's upsert path
        run = run_import(engine, settings, path=str(path), batch_size=200)
        assert run.status == "finished"
        counts.append(_live_tables())
    assert counts[-1] <= counts[4], counts


def _peak_kb(engine: sa.Engine, settings: Settings, path: Path, batch_size: int) -> float:
    """The most memory Python held at once (tracemalloc) while csv_import imported `path`, in KB."""
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        run = run_import(engine, settings, path=str(path), batch_size=batch_size)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert run.status == RunStatus.FINISHED, run.error_message
    return (peak - start) / 1024


def test_a_batch_is_read_a_chunk_at_a_time_not_held_whole(
    engine: sa.Engine, settings: Settings, tmp_path: Path
) -> None:
    # A long-lived worker keeps the high-water mark of its runs' memory (README, "Memory over a
    # long life"): a batch of 20,000 records must cost no more than one of a chunk's size.
    lines = "".join(f"{i},name {i:07d},{i * 1.5}\n" for i in range(20_000))
    path = write(tmp_path, "many.csv", HEADER + lines)
    assert run_import(engine, settings, path=str(path)).status == RunStatus.FINISHED
    chunk = _peak_kb(engine, settings, path, batch_size=CHUNK)  # updates by key from here on
    whole = _peak_kb(engine, settings, path, batch_size=20_000)
    assert whole < 1.5 * chunk, (whole, chunk)
