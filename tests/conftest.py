"""Session-wide real services: an `mlflow server`, a Ray head (token auth), a fresh PostgreSQL database.

They start on first use only, so a run of the fast unit tests starts none of them.
"""

from __future__ import annotations

import os
import secrets
import uuid

import pytest

from studies.local import free_port, start_mlflow, start_ray_head

# Ray reads its auth settings once per process, before any test imports it: the session's head
# token is fixed here, at collection, and every test process and subprocess is its client.
RAY_TOKEN = os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
os.environ["RAY_AUTH_MODE"] = "token"

POSTGRES_ADMIN_URL = os.environ.get("ACTSTUDY_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


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
    """A new, empty PostgreSQL database for this session (dropped at the end). Never skipped."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"actstudy_test_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"PostgreSQL at {POSTGRES_ADMIN_URL} is needed for these tests and is not reachable: {exc}")
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
