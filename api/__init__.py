"""The HTTP API and its Server-Sent Events feed (FastAPI + uvicorn): adapters over etl.commands and db.queries."""
