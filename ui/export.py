"""History's Download CSV / Download JSON buttons: the whole filtered set, exported and audited by etl.commands."""

from __future__ import annotations

import sqlalchemy as sa
import streamlit as st

from db.queries import RunFilters, RunSort
from reports.export import FORMATS, MEDIA_TYPES, file_name
from ui import actions


def download_buttons(engine: sa.Engine, filters: RunFilters, sort: RunSort, total: int) -> None:
    """Download CSV and Download JSON of every run the filters select, in the current sort.

    Streamlit 1.67 accepts a callable as `data` and calls it on click (in another thread),
    so an export is only produced and recorded in the audit log when someone downloads it.
    """
    columns = st.columns(len(FORMATS))
    for column, fmt in zip(columns, FORMATS, strict=True):
        column.download_button(
            f"Download {fmt.upper()}",
            data=actions.export_file(engine, fmt, filters, sort),
            file_name=file_name(fmt),
            mime=MEDIA_TYPES[fmt],
            key=f"history_download_{fmt}",
            on_click="ignore",
            help=f"All {total:,} runs of the filtered set in the current order, not just this page.",
            width="stretch",
        )
