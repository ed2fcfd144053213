"""The HTTP API: status, trigger, history, run details, exports and health (FastAPI)."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from db.engine import get_engine
from db.models import RunStatus
from db.queries import RunFilters, count_runs, read_session
from db.settings import Settings, get_settings
from etl.worker import BackgroundWorker


def create_app(engine: sa.Engine | None = None, settings: Settings | None = None) -> FastAPI:
    """The API application on `engine` (default: the configured database)."""
    settings = settings or get_settings()
    engine = engine or get_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker = app.state.worker
        if worker is not None:
            worker.start()
        yield
        if worker is not None:
            worker.stop()

    app = FastAPI(title="Runwatch API", lifespan=lifespan)
    app.state.engine, app.state.settings = engine, settings
    app.state.worker = None
    app.add_api_route("/health", health, methods=["GET"])
    if importlib.util.find_spec("etl.feed") is not None:
        app.include_router(importlib.import_module("etl.feed").router)
    return app


def health(request: Request) -> JSONResponse:
    """Whether the database answers, the worker lives, and how many runs wait."""
    engine: sa.Engine = request.app.state.engine
    try:
        with read_session(engine) as session:
            pending = count_runs(session=session, filters=RunFilters(statuses=(RunStatus.PENDING,)))
    except sa.exc.SQLAlchemyError:
        return JSONResponse({"status": "unavailable", "database": False}, status_code=503)
    worker: BackgroundWorker | None = request.app.state.worker
    alive = None if worker is None else worker.alive
    return JSONResponse({"status": "ok", "database": True, "worker": alive, "pending": pending})


def serve(host: str, port: int) -> None:
    """Serve the API with uvicorn until interrupted (`runwatch serve-api`)."""
    import uvicorn

    uvicorn.run(create_app(), host=host, port=port, log_level="info")
