"""Shared Streamlit pieces of the Runwatch pages. No SQL here: data comes from db.queries and etl."""
