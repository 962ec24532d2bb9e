"""Session-wide real services: an `mlflow server`, a Ray head (token auth), a fresh PostgreSQL database.

They start on first use only, so a run of the fast unit tests starts none of them.
"""

from __future__ import annotations

import os
import secrets

import pytest

from studies.local import free_port, start_mlflow, start_ray_head
from tests.utils.databases import fresh_postgres_database

# Ray reads its auth settings once per process, before any test imports it: the session's head
# token is fixed here, at collection, and every test process and subprocess is its client.
RAY_TOKEN = os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
os.environ["RAY_AUTH_MODE"] = "token"


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    service = start_mlflow(tmp_path_factory.mktemp("mlflow"), port=free_port())
    yield service
    service.stop()


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory):
    """A Ray head on its own ports; this process is set up as an authenticated client of it."""
    token = RAY_TOKEN
    # Random free ports: another head (another test run, a demo) may hold the defaults.
    head = start_ray_head(tmp_path_factory.mktemp("ray"), auth_token=token, port=free_port(), dashboard_port=free_port())
    head.token = token
    yield head
    import ray

    if ray.is_initialized():
        ray.shutdown()
    head.stop()


@pytest.fixture(scope="session")
def postgres_url():
    """A new, empty PostgreSQL database for this session, shared by its tests (which tell their rows apart by owner)."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(autouse=True)
def _spec_checks_as_by_default():
    """An app (create_app) or a CLI command sets how this process validates specs (user code, data roots, reading the
    data): each test starts from, and leaves, the defaults."""
    from studies.spec import allow_user_code, confine_data, read_data_here

    yield
    allow_user_code(False)
    confine_data(None)
    read_data_here(True)
