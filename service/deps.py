"""Dependencies as named types: settings, the record store, the job launcher, the caller."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.jobs import JobLauncher
from service.settings import Settings, get_settings
from studies.records import RecordStore

SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_store(request: Request) -> RecordStore:
    return request.app.state.store


def get_jobs(request: Request) -> JobLauncher:
    return request.app.state.jobs


StoreDep = Annotated[RecordStore, Depends(get_store)]
JobsDep = Annotated[JobLauncher, Depends(get_jobs)]

_bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True)
class Caller:
    owner: str
    admin: bool = False

    def may_see(self, owner: str) -> bool:
        return self.admin or owner == self.owner


def current_caller(
    settings: SettingsDep, store: StoreDep, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Caller:
    if creds is None or not creds.credentials:
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    # Bytes, not str: compare_digest refuses non-ASCII strings, and a header may carry any latin-1 byte.
    if hmac.compare_digest(creds.credentials.encode(), settings.admin_token.encode()):
        return Caller("admin", admin=True)
    owner = store.owner_of(creds.credentials)
    if owner is None:
        raise HTTPException(401, "invalid bearer token", headers={"WWW-Authenticate": "Bearer"})
    return Caller(owner)


CurrentCaller = Annotated[Caller, Depends(current_caller)]
