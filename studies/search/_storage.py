"""Where the search lives: Optuna storage for a study, and the retry policy for calls on it.

A journal file in the study's folder for `actstudy run`; beside the service's records database (SQLite or
PostgreSQL) for the service. Optuna's tables share names with the records' (`studies`), so they live apart:
a sibling SQLite file (`records.db` → `records-optuna.db`), or their own schema on PostgreSQL.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import optuna
import sqlalchemy
import sqlalchemy.exc
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from sqlalchemy.schema import CreateSchema
from tenacity import Retrying, before_sleep_log, retry_if_exception_type, stop_after_attempt, wait_exponential

log = logging.getLogger(__name__)
OPTUNA_SCHEMA = "actstudy_optuna"  # Optuna's tables on PostgreSQL ("studies" is ours too)

# A database that restarts, or a proxy that drops connections, fails the statement in flight: Optuna's
# RDBStorage raises StorageInternalError (a failed commit) or SQLAlchemy's OperationalError. A new
# connection from the pool serves the next attempt (pool_pre_ping discards the dead ones).
TRANSIENT_STORAGE_ERRORS = (optuna.exceptions.StorageInternalError, sqlalchemy.exc.OperationalError,
                            sqlalchemy.exc.InterfaceError)
STORAGE_ATTEMPTS = 6  # 0.25 + 0.5 + 1 + 2 + 4 s of waiting in all

T = TypeVar("T")


def open_storage(location: str | Path) -> BaseStorage:
    """Optuna storage for a study: a journal file (a path), or an SQLAlchemy URL of the records database."""
    location = str(location)
    if "://" not in location:
        Path(location).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(location))
    # On a new database Optuna creates its tables and writes its schema version (and PostgreSQL gets Optuna's schema):
    # two drivers starting together (two studies submitted at once) race there, and the loser gets "already exists"
    # or a duplicate row. Trying again finds them and goes on.
    for attempt in Retrying(stop=stop_after_attempt(STORAGE_ATTEMPTS), wait=wait_exponential(multiplier=0.25, max=4),
                            retry=retry_if_exception_type((sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError,
                                                           sqlalchemy.exc.ProgrammingError)),
                            reraise=True, before_sleep=before_sleep_log(log, logging.WARNING)):
        with attempt:
            return _rdb_storage(location)
    raise AssertionError("unreachable: Retrying re-raises the last error")


def _rdb_storage(location: str) -> RDBStorage:
    if location.startswith("sqlite:///"):
        path = Path(location.removeprefix("sqlite:///"))
        return RDBStorage(f"sqlite:///{path.with_name(path.stem + '-optuna.db')}", engine_kwargs={"connect_args": {"timeout": 30}})
    engine = sqlalchemy.create_engine(location)
    try:
        with engine.begin() as conn:
            conn.execute(CreateSchema(OPTUNA_SCHEMA, if_not_exists=True))
    finally:
        engine.dispose()
    return RDBStorage(location, engine_kwargs={"connect_args": {"options": f"-c search_path={OPTUNA_SCHEMA}"}, "pool_pre_ping": True})


def on_storage(action: Callable[[bool], T]) -> T:
    """`action(retrying)` until it gets through a transient storage error, at most STORAGE_ATTEMPTS times;
    `retrying` tells the action whether an earlier attempt may have gone through. The last error is re-raised."""
    for attempt in Retrying(stop=stop_after_attempt(STORAGE_ATTEMPTS), wait=wait_exponential(multiplier=0.25, max=4),
                            retry=retry_if_exception_type(TRANSIENT_STORAGE_ERRORS), reraise=True,
                            before_sleep=before_sleep_log(log, logging.WARNING)):
        with attempt:
            return action(attempt.retry_state.attempt_number > 1)
    raise AssertionError("unreachable: Retrying re-raises the last error")
