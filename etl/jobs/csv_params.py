"""The parameters of the csv_import job: checked, normalised, explained when wrong."""

from __future__ import annotations

import codecs
import glob
import json
import os
import re
from typing import Any

from sqlmodel import SQLModel

from etl.jobs.base import WHOLE_NUMBER, JobError, Param, int_params
from etl.jobs.csv_rows import TYPES

# Records a batch holds: each batch is one transaction, whose commit on PostgreSQL waits for a WAL
# flush; 50,000 records of six short fields take about 40 MB while parsed.
BATCH_SIZE = 50_000
MAX_BATCH = 1_000_000
ON_ERROR = ("reject", "fail")
PARAMETERS = (
    Param("path", "text", required=True, help="a CSV file or a glob such as data/*.csv"),
    Param("table", "table name", required=True, help="the target table (created when missing)"),
    Param(
        "key", "columns", required=True, help="the column(s) that identify a row, e.g. id or a,b"
    ),
    Param("types", "column:type list", help=f"e.g. id:int,price:float ({', '.join(TYPES)})"),
    Param("delimiter", "one character", ",", help="field separator; tab as \\t or tab"),
    Param("encoding", "text", "utf-8", help="the files' character encoding"),
    Param("on_error", "reject | fail", "reject", help="quarantine a bad row, or fail the run"),
    Param("max_rejects", WHOLE_NUMBER, help="fail the run after this many bad rows"),
    Param(
        "batch_size",
        WHOLE_NUMBER,
        BATCH_SIZE,
        minimum=1,
        maximum=MAX_BATCH,
        help="records per batch",
    ),
)
PARAMS = {param.name for param in PARAMETERS}
TABLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def check_params(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters of a csv_import run, checked and normalised, or JobError naming a bad one."""
    unknown = set(params) - PARAMS
    if unknown:
        raise JobError(f"Unknown csv_import parameter(s): {', '.join(sorted(unknown))}.")
    return {
        "path": _required(params, "path", "a CSV file or a glob such as data/*.csv"),
        "table": _table_param(params.get("table")),
        "key": _key_param(params.get("key")),
        "types": _types_param(params.get("types")),
        "delimiter": _delimiter_param(params.get("delimiter")),
        "encoding": _encoding_param(params.get("encoding")),
        "on_error": _on_error_param(params.get("on_error")),
        **int_params(PARAMETERS, params),
    }


def _required(params: dict[str, Any], name: str, what: str) -> str:
    value = str(params.get(name) or "").strip()
    if not value:
        raise JobError(f"Parameter '{name}' is required: {what}.")
    return value


def _table_param(value: Any) -> str:
    name = _required({"table": value}, "table", "the name of the target table")
    if not TABLE_NAME.fullmatch(name):
        raise JobError(
            "Parameter 'table' must be lower-case letters, digits and underscores, starting with"
            f" a letter or underscore, at most 63 characters; not {name!r}."
        )
    own = set(SQLModel.metadata.tables) | {"alembic_version"}
    if name in own or name.startswith(("sqlite_", "pg_")):
        raise JobError(f"Table '{name}' belongs to Runwatch or the database; choose another.")
    return name


def _key_param(value: Any) -> list[str]:
    if value is None or isinstance(value, str | int):  # `-p key=1` arrives as a number
        value = str(value or "").split(",")
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise JobError("Parameter 'key' must name one or more columns, such as id or a,b.")
    key = [name.strip() for name in value if name.strip()]
    if not key:
        raise JobError("Parameter 'key' is required: the column(s) that identify a row.")
    if len(set(key)) < len(key):
        raise JobError(f"Parameter 'key' names a column twice: {', '.join(key)}.")
    return key


def _types_param(value: Any) -> dict[str, str]:
    if value in (None, "", {}):
        return {}
    if isinstance(value, str):
        value = _parse_types(value.strip())
    if not isinstance(value, dict):
        raise JobError("Parameter 'types' must map columns to types, such as id:int,price:float.")
    types = {str(k).strip(): str(v).strip().lower() for k, v in value.items()}
    wrong = {k: v for k, v in types.items() if v not in TYPES}
    if wrong:
        column, kind = next(iter(wrong.items()))
        known = ", ".join(TYPES)
        raise JobError(f"Column '{column}' has unknown type '{kind}' (known: {known}).")
    return types


def _parse_types(text: str) -> Any:
    """Types written as JSON ({"id": "int"}) or as id:int,price:float."""
    try:
        if text.startswith("{"):
            return json.loads(text)
        pairs = (part.split(":") for part in text.split(",") if part.strip())
        return {column: kind for column, kind in pairs}
    except ValueError:
        raise JobError(
            f"Parameter 'types' must look like id:int,price:float or JSON, not {text!r}."
        ) from None


def _delimiter_param(value: Any) -> str:
    text = "," if value in (None, "") else str(value)
    text = {"\\t": "\t", "tab": "\t"}.get(text.lower(), text)
    if len(text) != 1 or text in '"\r\n':
        raise JobError(f"Parameter 'delimiter' must be one character (or tab), not {text!r}.")
    return text


def _encoding_param(value: Any) -> str:
    name = str(value or "utf-8").strip()
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise JobError(f"Parameter 'encoding': unknown encoding {name!r}.") from None


def _on_error_param(value: Any) -> str:
    choice = str(value or "reject").strip().lower()
    if choice not in ON_ERROR:
        raise JobError(f"Parameter 'on_error' must be reject or fail, not {value!r}.")
    return choice


def matching_files(path: str) -> list[str]:
    """The files `path` names, sorted: the file itself, or the matches of a glob."""
    pattern = os.path.expanduser(path)
    if os.path.isfile(pattern):
        return [pattern]
    if os.path.isdir(pattern):
        glob_in = os.path.join(path, "*.csv")
        raise JobError(f"Path '{path}' is a directory; name its files, such as '{glob_in}'.")
    files = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    if not files:
        raise JobError(f"No file matches path '{path}'.")
    return files
