"""The FastAPI app: assembles routers, errors, limits and the reconciler. `uvicorn service.main:app`."""

from __future__ import annotations

import asyncio
import logging
import re
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.api.routes import activations, health, studies
from service.jobs import JobLauncher, reconcile_all
from service.settings import Settings, get_settings
from studies.records import RecordStore, migrate

log = logging.getLogger(__name__)


async def _reconciler(app: FastAPI) -> None:
    s: Settings = app.state.settings
    while True:
        try:
            await asyncio.to_thread(reconcile_all, app.state.store, app.state.jobs, s.max_driver_attempts)
        except Exception as exc:  # noqa: BLE001 — keep reconciling
            log.warning("reconcile: %s", exc)
        await asyncio.sleep(s.reconcile_interval_s)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        migrate(settings.db_url)
        task = asyncio.create_task(_reconciler(app)) if settings.reconcile_interval_s > 0 else None
        yield
        if task:
            task.cancel()

    app = FastAPI(title="actstudy", version="0.1.0", lifespan=lifespan,
                  description="Compare activation functions, each tuned fairly: submit studies, follow them, read results. "
                              "Study routes need `Authorization: Bearer <token>` (`actstudy token create --owner NAME`); "
                              f"request bodies over {settings.max_body_bytes} bytes answer 413.")
    app.state.settings = settings
    app.state.store = RecordStore(settings.db_url)
    app.state.jobs = JobLauncher(settings)
    app.dependency_overrides[get_settings] = lambda: settings

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        declared = request.headers.get("content-length")
        limit = settings.max_body_bytes
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return JSONResponse({"detail": f"request body over {limit} bytes"}, status_code=413)
        if request.method in ("POST", "PUT", "PATCH") and declared is None:
            # Chunked: count what actually arrives, and stop reading at the limit rather than buffer it all.
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    return JSONResponse({"detail": f"request body over {limit} bytes"}, status_code=413)
            request._body = bytes(body)  # replayed to the route by Starlette's middleware wrapper
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type", "")} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        response = await http_exception_handler(request, exc)
        if exc.status_code == 405:  # Starlette names only the first matching route's methods, not all the path's
            allowed = _allowed_methods(app, request.url.path)
            if allowed:
                response.headers["Allow"] = ", ".join(allowed)
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    for router in (studies.router, activations.router):
        app.include_router(router, prefix="/api/v1")
    app.include_router(health.router)
    return app


def _allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods the OpenAPI document lists for `path` (HEAD with GET), for a 405's Allow header."""
    for template, operations in app.openapi()["paths"].items():
        pattern = "".join("[^/]+" if part.startswith("{") else re.escape(part) for part in re.split(r"(\{[^/]+\})", template))
        if re.fullmatch(pattern, path):
            methods = {m.upper() for m in operations}
            return sorted(methods | ({"HEAD"} if "GET" in methods else set()))
    return []
