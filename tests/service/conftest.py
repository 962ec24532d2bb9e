"""The service under test: `create_app(Settings(...))` on a real database (SQLite and PostgreSQL).

Every test that takes `api` runs twice, once per database. The PostgreSQL database is shared by the
session, so tests never assume an empty table: each one works with owners of its own (`unique_owner`).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from service.settings import Settings
from studies.records import RecordStore
from tests.utils.databases import DATABASES
from tests.utils.factories import auth, make_token


@dataclass
class Api:
    """A running app (lifespan entered: migrated), its store and the admin's headers."""

    client: TestClient
    store: RecordStore
    settings: Settings

    @property
    def admin(self) -> dict[str, str]:
        return auth(self.settings.admin_token)

    def owner(self, name: str | None = None) -> tuple[str, dict[str, str]]:
        """A fresh owner with a minted token: (owner, headers)."""
        owner, token = make_token(self.store, name)
        return owner, auth(token)


def test_settings(db_url: str, data_dir: Path, **overrides) -> Settings:
    """Settings that read nothing from the environment that matters here: every service named explicitly."""
    values = dict(
        environment="development",
        data_dir=data_dir,
        database_url=db_url,
        admin_token=f"admin-{secrets.token_hex(16)}",
        ray_jobs_url=None,
        ray_auth_token=None,
        mlflow_uri=None,
        reconcile_interval_s=0,  # tests drive the reconciler themselves
    )
    values.update(overrides)
    return Settings(**values)


test_settings.__test__ = False  # a helper, not a test


@pytest.fixture(params=DATABASES)
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'records.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def make_api(db_url, tmp_path) -> Iterator[Callable[..., Api]]:
    """`make_api(**settings)`: an app on this test's database; closed at the end of the test."""
    with ExitStack() as stack:
        yield lambda **overrides: stack.enter_context(_running(test_settings(db_url, tmp_path / "data", **overrides)))


@pytest.fixture
def api(make_api) -> Api:
    """An app without Ray or MLflow: submissions that pass validation answer 503 (or 429 first)."""
    return make_api()


@contextmanager
def _running(settings: Settings) -> Iterator[Api]:
    app = create_app(settings)
    # raise_server_exceptions=False: a bug must show as the 500 a client would get, not as a traceback.
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Api(client, app.state.store, settings)
    app.state.store.engine.dispose()


@pytest.fixture(scope="session")
def ray_jobs(ray_head):
    """The session's Ray head, once its job agent takes submissions: the head answers before its agent is up,
    and on a busy machine the agent may need longer than the SUBMIT_RETRY_S the service waits for it."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(ray_head.dashboard_url, headers={"Authorization": f"Bearer {ray_head.token}"})
    deadline = time.monotonic() + 180
    while True:
        try:
            job_id = client.submit_job(entrypoint="true", entrypoint_num_cpus=0)
            break
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise
    while client.get_job_status(job_id) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
        assert time.monotonic() < deadline, "the no-op job did not finish"
        time.sleep(0.5)
    return ray_head
