"""History's Download CSV / Download JSON buttons: the whole filtered set via reports.export."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
import streamlit as st

from db.queries import RunFilters, RunSort
from reports.export import FORMATS, MEDIA_TYPES, Format, stream_export

SOURCE = "app"


def export_file(
    engine: sa.Engine, fmt: Format, filters: RunFilters, sort: RunSort, actor: str
) -> Callable[[], bytes]:
    """A callable producing the export's bytes; it runs (and is audited) only when called."""

    def produce() -> bytes:
        chunks = stream_export(
            engine=engine, fmt=fmt, filters=filters, sort=sort, actor=actor, source=SOURCE
        )
        return b"".join(chunks)

    return produce


def file_name(fmt: Format, now: datetime | None = None) -> str:
    """The download's file name, stamped with the UTC time the button was drawn."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"runwatch-runs-{stamp}.{fmt}"


def download_buttons(
    engine: sa.Engine, filters: RunFilters, sort: RunSort, actor: str, total: int
) -> None:
    """Download CSV and Download JSON of every run the filters select, in the current sort.

    Streamlit 1.67 accepts a callable as `data` and calls it on click (in another thread),
    so an export is only produced and recorded in the audit log when someone downloads it.
    """
    columns = st.columns(len(FORMATS))
    for column, fmt in zip(columns, FORMATS, strict=True):
        column.download_button(
            f"Download {fmt.upper()}",
            data=export_file(engine, fmt, filters, sort, actor),
            file_name=file_name(fmt),
            mime=MEDIA_TYPES[fmt],
            key=f"history_download_{fmt}",
            on_click="ignore",
            help=f"All {total:,} runs of the filtered set in the current order, not just this page.",
            width="stretch",
        )
