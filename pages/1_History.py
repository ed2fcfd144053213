"""Runwatch — History: filter, sort and page through past runs, inspect one, export the set."""

import streamlit as st

from db.models import MAX_ID
from db.queries import RunFilters
from ui import app, auth, export, filters, history

st.set_page_config(page_title="History · Runwatch", page_icon="⏱", layout="wide")
auth.signed_in()
st.title("History")
app.worker_banner()

with app.database_guard():
    engine = app.engine()
    jobs = app.job_names(engine)
    filters.restore_from_url(jobs)
    filters.filter_bar(jobs)
    filters.save_to_url(filters.current_view())  # first, so the link is right before the grid loads
    view, problem = filters.without_reversed_range(filters.current_view())
    if problem:
        st.warning(problem)
    found, page = history.load_page(engine, view)
    st.session_state.history_page = page
    selected = None
    if not found.total:
        history.empty_state(filtered=view.filters() != RunFilters())
    else:
        selected = history.runs_table(found.runs)
        history.pager(found.total, view.page_size)
        export.download_buttons(engine, view.filters(), view.sort, found.total)
    st.divider()
    st.subheader("Run details")
    if selected is not None and selected != st.session_state.get("history_selected"):
        st.session_state.history_run = selected
    st.session_state.history_selected = selected
    st.number_input(
        "Run number",
        min_value=1,
        max_value=MAX_ID,
        step=1,
        value=None,
        key="history_run",
        placeholder="Select a row above or type a run number",
    )
    view = filters.current_view()
    filters.save_to_url(view)  # again when the page was clamped or a row was picked
    if view.run_id:
        history.run_details(engine, int(view.run_id))
