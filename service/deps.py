"""Dependencies as named types: settings, the record store, the job launcher (the caller: service.auth)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.jobs import JobLauncher
from service.settings import Settings
from studies.records import RecordStore


def app_settings(request: Request) -> Settings:
    """The settings the app was made with (`create_app(settings)`), as the store and the launcher are: no
    dependency override, which FastAPI resolves again, signature and all, on every request."""
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(app_settings)]


def get_store(request: Request) -> RecordStore:
    return request.app.state.store


def get_jobs(request: Request) -> JobLauncher:
    return request.app.state.jobs


StoreDep = Annotated[RecordStore, Depends(get_store)]
JobsDep = Annotated[JobLauncher, Depends(get_jobs)]
