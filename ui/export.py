"""The Download CSV / Download JSON buttons of History and Audit: the whole filtered set, exported and
audited by etl.commands when clicked."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
import streamlit as st

from db.queries import AuditFilters, RunFilters, RunSort
from reports.export import FORMATS, MEDIA_TYPES, Format, file_name
from ui import actions


def download_buttons(engine: sa.Engine, filters: RunFilters, sort: RunSort, total: int) -> None:
    """Download CSV and Download JSON of every run the filters select, in the current sort."""
    _buttons(
        lambda fmt: actions.export_file(engine, fmt, filters, sort),
        page="history",
        what=f"All {total:,} runs of the filtered set in the current order, not just this page.",
    )


def audit_download_buttons(engine: sa.Engine, filters: AuditFilters, total: int) -> None:
    """Download CSV and Download JSON of every audit event the filters select, newest first."""
    _buttons(
        lambda fmt: actions.export_audit_file(engine, fmt, filters),
        page="audit",
        what=f"All {total:,} matching audit events with their chain hashes, not just those shown.",
    )


def _buttons(data: Callable[[Format], Callable[[], bytes]], *, page: str, what: str) -> None:
    """One download button per format, keyed by the page.

    Streamlit 1.67 accepts a callable as `data` and calls it on click (in another thread),
    so an export is only produced and recorded in the audit log when someone downloads it.
    """
    columns = st.columns(len(FORMATS))
    for column, fmt in zip(columns, FORMATS, strict=True):
        column.download_button(
            f"Download {fmt.upper()}",
            data=data(fmt),
            file_name=file_name(fmt, what="runs" if page == "history" else page),
            mime=MEDIA_TYPES[fmt],
            key=f"{page}_download_{fmt}",
            on_click="ignore",
            help=what,
            width="stretch",
        )
