"""The HTTP API: status, trigger, history, run details, exports, health and metrics (FastAPI).

Every route is a thin layer over `db.queries` and `reports.export`; errors become 4xx bodies whose
`detail` is meant for the user, and an unreachable database becomes 503.
"""

from __future__ import annotations

import importlib.abc
import ipaddress
import logging
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from api.alerts import router as alerts_router
from api.feed import router as feed_router
from api.metrics import metrics_registry, router as metrics_router
from api.params import BadParameter
from api.routes import public, router
from api.status import ProcessMeter
from db.engine import get_engine
from db.models import WorkerKind
from db.queries import ActiveRunExists, RunwatchError, Unauthenticated
from db.settings import Settings, get_settings
from etl.commands import refusal
from etl.jobs import JobError
from etl.worker import BackgroundWorker


def create_app(engine: sa.Engine | None = None, settings: Settings | None = None) -> FastAPI:
    """The API application on `engine` (default: the configured database)."""
    settings = settings or get_settings()
    engine = engine or get_engine(settings.database_url)
    worker = (
        BackgroundWorker(engine, settings, kind=WorkerKind.API)
        if settings.api_worker_enabled
        else None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if worker is not None:
            worker.start()
        yield
        if worker is not None:
            worker.stop()

    app = FastAPI(title="Runwatch API", version="1", lifespan=lifespan, description=__doc__)
    app.state.engine, app.state.settings, app.state.worker = engine, settings, worker
    app.state.meter = ProcessMeter()
    app.state.metrics = metrics_registry(engine, settings)
    _add_cors(app, settings)
    _add_error_handlers(app)
    app.include_router(public)
    app.include_router(router)
    app.include_router(feed_router)
    app.include_router(metrics_router)
    app.include_router(alerts_router)
    return app


def _add_cors(app: FastAPI, settings: Settings) -> None:
    origins = [origin.strip() for origin in settings.cors_origins.split(",") if origin.strip()]
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["*"],
            expose_headers=["Content-Disposition"],
        )


def _error(
    status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    """Map Runwatch's refusals to HTTP statuses with a message for the user."""

    async def validation(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        errors = jsonable_encoder(error.errors())
        return JSONResponse(
            {"detail": errors, "message": validation_message(errors)}, status_code=422
        )

    async def bad_parameter(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, BadParameter)
        detail = [{"loc": [error.where, error.name], "msg": str(error), "type": "value_error"}]
        return JSONResponse({"detail": detail, "message": str(error)}, status_code=422)

    async def refused(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RunwatchError)
        extra = {"run_id": error.run_id} if isinstance(error, ActiveRunExists) else {}
        # RFC 9110: a 401 says which scheme would do
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, Unauthenticated) else None
        status = refusal(error).http_status
        return _error(status, str(error), headers, error=type(error).__name__, **extra)

    async def job_error(_: Request, error: Exception) -> JSONResponse:
        return _error(422, str(error))

    async def database_down(_: Request, error: Exception) -> JSONResponse:
        return _error(503, "The database cannot be reached right now; try again shortly.")

    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(BadParameter, bad_parameter)
    app.add_exception_handler(RunwatchError, refused)
    app.add_exception_handler(JobError, job_error)
    app.add_exception_handler(sa.exc.OperationalError, database_down)
    app.add_exception_handler(sa.exc.InterfaceError, database_down)


def validation_message(errors: list[dict[str, Any]]) -> str:
    """One sentence naming each invalid parameter and what is wrong with it."""
    parts = []
    for error in errors:
        if error.get("type") == "json_invalid":  # loc holds the character position, not a field
            parts.append(_bad_json(error))
            continue
        loc = [str(part) for part in error.get("loc", ())]
        # loc is e.g. ("query", "status", 0): the parameter is its second part
        where, name = (loc[0], loc[1]) if len(loc) > 1 else ("request", "".join(loc))
        where = {"query": "query parameter", "path": "path parameter", "body": "body field"}.get(
            where, where
        )
        parts.append(f"Invalid {where} '{name or 'body'}': {error.get('msg', 'invalid')}.")
    return " ".join(parts)


def _bad_json(error: dict[str, Any]) -> str:
    """The body is not JSON: say so, and where it went wrong."""
    loc = error.get("loc", ())
    position = loc[1] if len(loc) > 1 else "?"
    reason = error.get("ctx", {}).get("error", "")
    return (
        f"The request body is not valid JSON: {reason or 'decode error'} at character {position}."
    )


SHUTDOWN_GRACE_S = 3
_QUERY_TOKEN = re.compile(r"(access_token=)[^&\s]*")


def serve(host: str, port: int) -> None:
    """Serve the API with uvicorn until interrupted (`runwatch serve-api`).

    RunwatchError, before anything listens, when `host` reaches beyond this machine and the API
    has no sign-in (RUNWATCH_AUTH=none): every caller would be admin.
    """
    import uvicorn

    if get_settings().auth == "none" and not is_loopback(host):
        raise RunwatchError(
            f"Refusing to serve the API on {host} with RUNWATCH_AUTH=none: anyone who reaches it "
            "would be admin. Serve on 127.0.0.1, or set RUNWATCH_AUTH=password and give each "
            "client an API token (runwatch token create)."
        )
    _without_numpy()
    # A live feed response never ends by itself: give open streams a few seconds on shutdown,
    # then close them, so Ctrl-C or SIGTERM stops the server even with dashboards connected.
    config = uvicorn.Config(
        create_app(),
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )
    logging.getLogger("uvicorn.access").addFilter(hide_query_tokens)  # after Config set up logging
    uvicorn.Server(config).run()


class _NoNumpyForPyarrow(importlib.abc.MetaPathFinder):
    """Fails an `import numpy` that pyarrow asks for: pyarrow then runs as where numpy is not
    installed. Any other code (a job kind in the worker thread) imports numpy as usual, and once
    numpy is loaded, pyarrow finds it too."""

    def find_spec(self, name: str, *_: object) -> None:
        if (name == "numpy" or name.startswith("numpy.")) and _asked_by_pyarrow():
            raise ModuleNotFoundError("serve-api runs pyarrow without numpy", name="numpy")


def _asked_by_pyarrow() -> bool:
    """Whether one of pyarrow's modules is on the stack of the import being made."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if str(frame.f_globals.get("__name__", "")).partition(".")[0] == "pyarrow":
            return True
        frame = frame.f_back
    return False


def _without_numpy() -> None:
    """Run pyarrow in serve-api as if numpy were not installed (see README, Memory).

    An export's first import, pyarrow, imports numpy when it is there, only to offer conversions
    to and from it: 11 MB of serve-api's memory (and an OpenBLAS thread) that stay, where nothing
    in the API converts anything to numpy. pyarrow works without it, as where it is not
    installed; the Streamlit app, where pandas and charts need it, is another process. Once
    pyarrow is loaded so, it has no numpy conversions in this process: a job kind that converts
    between the two runs in `runwatch worker`.
    """
    if "numpy" not in sys.modules:
        sys.meta_path.insert(0, _NoNumpyForPyarrow())


def is_loopback(host: str) -> bool:
    """Whether `host` is an address (or the name `localhost`) only this machine reaches."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another host name: it may resolve to anything


def hide_query_tokens(record: logging.LogRecord) -> bool:
    """Blank an `?access_token=` (the live feed's) in an access log line; keeps every line."""
    if isinstance(record.args, tuple):
        record.args = tuple(
            _QUERY_TOKEN.sub(r"\1***", arg) if isinstance(arg, str) else arg for arg in record.args
        )
    return True
