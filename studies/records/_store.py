from __future__ import annotations

import json
import math
import zlib
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, func, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from studies.records._models import Study, StudyStatus

_MIGRATIONS = Path(__file__).with_name("migrations")
_LAUNCHABLE = (StudyStatus.queued.value, StudyStatus.running.value)  # a driver may (still) be launched for these
_ACTIVE = (*_LAUNCHABLE, StudyStatus.cancelling.value)  # hold a quota slot, and the reconciler follows them


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


SQLITE_POOL = 40  # AnyIO's worker threads, which serve the API's routes


def _write_ahead_log(dbapi_connection, connection_record) -> None:
    # WAL: the API's reads never wait for a driver's write (in SQLite's default journal a writer locks readers
    # out: with a dozen drivers writing progress every second, reads queued behind them — bench/load.py).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        # The API and the drivers write from different processes: wait for the lock instead of failing. A pool as
        # large as the API's worker threads, and no ping (a local file does not drop connections): connections
        # opened and closed per request under concurrent reads cost the API more than the reads (bench/load.py).
        in_memory = url in ("sqlite://", "sqlite:///:memory:")  # one connection per thread: no pool to size
        pool = {} if in_memory else {"pool_size": SQLITE_POOL, "max_overflow": SQLITE_POOL}
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, json_serializer=_json, **pool)
        if not in_memory:
            event.listen(engine, "connect", _write_ahead_log)
        return engine
    return create_engine(url, pool_pre_ping=True, json_serializer=_json)


def migrate(url: str) -> None:
    """Bring the database to the newest schema (Alembic `upgrade head`)."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, "head")


class _OverQuota(Exception):
    pass


def _with_drivers(s) -> int:
    return s.scalar(select(func.count()).select_from(Study).where(Study.ray_job_id.is_not(None), Study.status.in_(_LAUNCHABLE)))


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

    def ping(self) -> None:
        """Raise unless the database answers."""
        with self.engine.connect() as conn:
            conn.execute(text("select 1"))

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
        """Set the status (with timestamps); a terminal status is never overwritten when unless_terminal, and a
        cancelling study only becomes cancelled (a driver stopping on the cancel does not write `failed` over it)."""
        with self.session() as s:
            study = s.get(Study, study_id, with_for_update=True)
            if study is None or (unless_terminal and StudyStatus(study.status).terminal):
                return False
            if study.status == StudyStatus.cancelling.value and status not in (StudyStatus.cancelling, StudyStatus.cancelled):
                return False
            study.status = status.value
            now = datetime.now(UTC)
            if status is StudyStatus.running and study.started_at is None:
                study.started_at = now
            if status.terminal:
                study.finished_at = now
            for k, v in values.items():
                setattr(study, k, v)
            return True

    def add_within_quota(self, study: Study, limit: int) -> bool:
        """Insert `study` unless its owner already has `limit` queued or running studies: one atomic decision.

        The insert comes first and the count after it, in one transaction that holds a per-owner lock: on
        PostgreSQL an advisory lock; on SQLite the insert takes the database's write lock, so a concurrent
        submission waits and then counts this one.
        """
        try:
            with self.session() as s:
                if s.get_bind().dialect.name == "postgresql":
                    s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": zlib.crc32(f"quota:{study.owner}".encode())})
                s.add(study)
                s.flush()
                active = s.scalar(select(func.count()).select_from(Study).where(Study.owner == study.owner, Study.status.in_(_ACTIVE)))
                if active > limit:
                    raise _OverQuota  # rolls the insert back
        except _OverQuota:
            return False
        return True

    def claim_attempt(self, study_id: str, seen: int, job_id: str, *, max_drivers: int | None = None) -> bool:
        """Take driver attempt `seen + 1` (recording `job_id`) if the row still says `seen` and the study is
        active: a compare-and-set, so of several processes deciding to launch, exactly one does.

        `max_drivers`: a first attempt is also refused while that many studies already have a driver (a study
        whose driver died keeps its place). As with the quota, the claim comes first and the count after it, in
        one transaction holding a lock (PostgreSQL: an advisory lock; SQLite: the write lock), so concurrent
        claims never exceed it."""
        try:
            with self.session() as s:
                if max_drivers is not None and seen == 0 and s.get_bind().dialect.name == "postgresql":
                    s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": zlib.crc32(b"drivers")})
                taken = s.execute(update(Study).where(Study.id == study_id, Study.attempts == seen, Study.status.in_(_LAUNCHABLE))
                                  .values(attempts=seen + 1, ray_job_id=job_id))
                if taken.rowcount != 1:
                    return False
                if max_drivers is not None and seen == 0 and _with_drivers(s) > max_drivers:
                    raise _OverQuota  # rolls the claim back
                return True
        except _OverQuota:
            return False

    def drivers_running(self) -> int:
        """Studies with a driver launched that have not ended."""
        with self.sessions() as s:
            return _with_drivers(s)

    def waiting(self) -> list[Study]:
        """Queued studies with no driver yet (waiting for a driver slot), oldest first."""
        with self.sessions() as s:
            return list(s.scalars(select(Study).where(Study.status == StudyStatus.queued.value, Study.ray_job_id.is_(None))
                                  .order_by(Study.created_at, Study.id)))

    def active(self) -> list[Study]:
        with self.sessions() as s:
            return list(s.scalars(select(Study).where(Study.status.in_(_ACTIVE))))

    def page(self, *, owner: str | None, status: StudyStatus | None, limit: int, offset: int) -> tuple[list[Study], int]:
        """Studies newest first (an owner's, or everyone's when `owner` is None) and how many match in all."""
        query = select(Study)
        if owner is not None:
            query = query.where(Study.owner == owner)
        if status is not None:
            query = query.where(Study.status == status.value)
        with self.sessions() as s:
            count = s.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = s.scalars(query.order_by(Study.created_at.desc()).offset(offset).limit(limit)).all()
        return list(rows), count


__all__ = ["RecordStore", "migrate"]
