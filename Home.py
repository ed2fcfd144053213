"""Runwatch — Live: the jobs, their latest runs and a Run now button."""

import streamlit as st

from db.engine import get_engine
from db.migrate import init_db
from db.queries import (
    ActiveRunExists,
    create_run,
    list_jobs,
    list_runs,
    read_session,
    write_session,
)

st.set_page_config(page_title="Runwatch", page_icon="⏱", layout="wide")
st.title("Runwatch — Live")

engine = get_engine()
init_db(engine)

with read_session(engine) as session:
    jobs = list_jobs(session=session)
    page = list_runs(session=session, page_size=20)

for job in jobs:
    if st.button(f"Run now: {job.name}", key=f"home_run_{job.name}"):
        try:
            with write_session(engine) as session:
                run = create_run(session=session, job=job.name, triggered_by="app")
            st.success(f"Run #{run.id} enqueued.")
        except ActiveRunExists as error:
            st.warning(str(error))

if page.runs:
    st.dataframe(
        [
            {
                "id": r.id,
                "job": r.job,
                "status": r.status,
                "offset": r.offset,
                "total": r.total_records,
            }
            for r in page.runs
        ]
    )
else:
    st.info("No runs yet — click Run now.")
