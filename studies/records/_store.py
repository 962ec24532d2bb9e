from __future__ import annotations

import hashlib
import json
import math
import secrets
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from studies.records._models import ApiToken, Study, StudyStatus

_MIGRATIONS = Path(__file__).with_name("migrations")


def _finite(value):
    """NaN and ±inf (a p-value from one seed) as null: PostgreSQL's json type refuses them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json(value) -> str:
    return json.dumps(_finite(value))


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        # The API and the drivers write from different processes: wait for the lock instead of failing.
        return create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, pool_pre_ping=True,
                             json_serializer=_json)
    return create_engine(url, pool_pre_ping=True, json_serializer=_json)


def migrate(url: str) -> None:
    """Bring the database to the newest schema (Alembic `upgrade head`)."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, "head")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class RecordStore:
    """Small transactional helpers over the records; each call is its own short transaction."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self):
        with self.sessions() as s, s.begin():
            yield s

    # studies
    def get(self, study_id: str) -> Study | None:
        with self.sessions() as s:
            return s.get(Study, study_id)

    def update(self, study_id: str, **values) -> Study | None:
        with self.session() as s:
            study = s.get(Study, study_id)
            if study is None:
                return None
            for k, v in values.items():
                setattr(study, k, v)
            return study

    def mark(self, study_id: str, status: StudyStatus, *, unless_terminal: bool = True, **values) -> bool:
        """Set the status (with timestamps); a terminal status is never overwritten when unless_terminal."""
        with self.session() as s:
            study = s.get(Study, study_id, with_for_update=True)
            if study is None or (unless_terminal and StudyStatus(study.status).terminal):
                return False
            study.status = status.value
            now = datetime.now(timezone.utc)
            if status is StudyStatus.running and study.started_at is None:
                study.started_at = now
            if status.terminal:
                study.finished_at = now
            for k, v in values.items():
                setattr(study, k, v)
            return True

    def count_active(self, owner: str) -> int:
        with self.sessions() as s:
            active = [StudyStatus.queued.value, StudyStatus.running.value]
            return s.scalar(select(func.count()).select_from(Study).where(Study.owner == owner, Study.status.in_(active))) or 0

    def active(self) -> list[Study]:
        with self.sessions() as s:
            active = [StudyStatus.queued.value, StudyStatus.running.value]
            return list(s.scalars(select(Study).where(Study.status.in_(active))))

    # tokens
    def create_token(self, owner: str) -> str:
        token = secrets.token_urlsafe(32)
        with self.session() as s:
            s.add(ApiToken(owner=owner, token_hash=hash_token(token)))
        return token

    def owner_of(self, token: str) -> str | None:
        with self.sessions() as s:
            row = s.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
            return row.owner if row else None


__all__ = ["RecordStore", "Session", "hash_token", "make_engine", "migrate"]
