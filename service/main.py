"""The FastAPI app, assembled: settings, stores, the body limit, error handlers, routers and the
reconciler. `actstudy serve` runs it under uvicorn (service.serve)."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service import errors
from service.api.routes import activations, code, health, specs, studies
from service.jobs import JobLauncher
from service.middleware import BodyLimit
from service.reconciler import reconcile_forever
from service.settings import Settings, get_settings
from studies.records import RecordStore, migrate
from studies.spec import allow_user_code, confine_data


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        migrate(settings.db_url)
        task = None
        if settings.reconcile_interval_s > 0:
            task = asyncio.create_task(reconcile_forever(app.state.store, app.state.jobs, settings))
        yield
        if task:
            task.cancel()

    app = FastAPI(title="actstudy", version="0.1.0", lifespan=lifespan,
                  description="Compare activation functions, each tuned fairly: submit studies, follow them, read results. "
                              "Study routes need `Authorization: Bearer <token>` (`actstudy token create --owner NAME`); "
                              f"request bodies over {settings.max_body_bytes} bytes answer 413.")
    app.state.settings = settings
    # Activations and models by import path: the administrator's choice (off by default); a model from your code is
    # not built here (its code reaches the cluster with the study): its driver checks it.
    allow_user_code(settings.allow_user_code, run_here=False)
    confine_data(settings.data_roots)  # a spec's data paths: only below the operator's folders, checked before reading
    app.state.store = RecordStore(settings.db_url)
    app.state.jobs = JobLauncher(settings)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, timeout_s=settings.body_timeout_s,
                       limits={"/api/v1/code": settings.max_code_bytes})
    errors.install(app)
    for router in (studies.router, specs.router, activations.router, code.router):
        app.include_router(router, prefix="/api/v1")
    app.include_router(health.router)
    return app
