"""Who is calling: API bearer tokens (stored as their SHA-256; the token is shown once, at creation),
the admin token from the settings, and the `CurrentCaller` dependency.

The `api_tokens` table is created by the records database's migrations (one schema history per database).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import DateTime, Integer, String, select
from sqlalchemy.orm import Mapped, mapped_column

from service.deps import SettingsDep, StoreDep
from studies.records import Base, RecordStore, utcnow


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(100), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


ADMIN_TOKEN_FILE = "admin-token"


def admin_token_in(data_dir: Path) -> tuple[str, Path, bool]:
    """The admin token kept in `data_dir` (made on first use, readable by its owner only): (token, file, made now)."""
    path = Path(data_dir) / ADMIN_TOKEN_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip(), path, False
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token, path, True


class TokenStore:
    """Owners' tokens in the records database."""

    def __init__(self, store: RecordStore) -> None:
        self.store = store

    def create(self, owner: str) -> str:
        token = secrets.token_urlsafe(32)
        with self.store.session() as s:
            s.add(ApiToken(owner=owner, token_hash=hash_token(token)))
        return token

    def owner_of(self, token: str) -> str | None:
        with self.store.sessions() as s:
            row = s.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
            return row.owner if row else None


@dataclass(frozen=True)
class Caller:
    owner: str
    admin: bool = False

    def may_see(self, owner: str) -> bool:
        return self.admin or owner == self.owner


_bearer = HTTPBearer(auto_error=False)


def current_caller(
    settings: SettingsDep, store: StoreDep, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Caller:
    if creds is None or not creds.credentials:
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    # Bytes, not str: compare_digest refuses non-ASCII strings, and a header may carry any latin-1 byte.
    if settings.admin_token and hmac.compare_digest(creds.credentials.encode(), settings.admin_token.encode()):
        return Caller("admin", admin=True)
    owner = TokenStore(store).owner_of(creds.credentials)
    if owner is None:
        raise HTTPException(401, "invalid bearer token", headers={"WWW-Authenticate": "Bearer"})
    return Caller(owner)


CurrentCaller = Annotated[Caller, Depends(current_caller)]
