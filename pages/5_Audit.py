"""Runwatch — Audit: who did what, when and from where; verify the ledger and export files."""

import streamlit as st

from ui import app, audit, auth, export

st.set_page_config(page_title="Audit · Runwatch", page_icon="🔏", layout="wide")
auth.signed_in()
st.title("Audit")

with app.database_guard():
    engine = app.engine()
    actors = audit.known_actors(engine)
    audit.restore_from_url(actors)
    view = audit.filter_bar(actors)
    events, total = audit.load_events(engine, view.filters())
    audit.events_table(events, total)
    export.audit_download_buttons(engine, view.filters(), total)
    st.divider()
    st.subheader("Tamper evidence")
    st.caption(
        "Each audit row stores the SHA-256 of its content and of the row before it, so a row "
        "changed, deleted or inserted outside Runwatch breaks the chain."
    )
    audit.verify_button(engine)
    audit.export_check(engine)
