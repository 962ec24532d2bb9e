"""`actstudy serve`: the API, plus on embedded defaults a local Ray head and an `mlflow server`.

With ACTSTUDY_RAY_JOBS_URL (or RAY_API_SERVER_ADDRESS), MLFLOW_TRACKING_URI and ACTSTUDY_DATABASE_URL
all set, only the API starts. Everything started here is stopped on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import signal
from pathlib import Path

import uvicorn

from service.auth import admin_token_in
from service.main import create_app
from service.settings import Settings
from studies.local import free_port, start_mlflow, start_ray_head

log = logging.getLogger("actstudy.serve")


def serve(host: str = "127.0.0.1", port: int = 8000, data_dir: str | None = None, echo=print) -> int:
    if not Settings().admin_token and not is_loopback(host):
        echo(f"actstudy serve: refusing to listen on {host} without ACTSTUDY_ADMIN_TOKEN: set it to a secret "
             "(or listen on 127.0.0.1)")
        return 2
    if data_dir:
        os.environ["ACTSTUDY_DATA_DIR"] = str(Path(data_dir).resolve())
    settings = Settings()
    settings.data_dir = Path(settings.data_dir).resolve()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not settings.admin_token:
        settings.admin_token, path, made = admin_token_in(settings.data_dir)
        if made:
            echo(f"admin token      made and kept in {path} (readable by you only; ACTSTUDY_ADMIN_TOKEN overrides it)")
    started = []
    # SIGTERM before uvicorn owns the signals still stops what was started.
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # raises KeyboardInterrupt, as Ctrl-C does
    try:
        if not settings.mlflow_uri:
            echo("starting mlflow server (SQLite, local artifacts) ...")
            mlflow = start_mlflow(settings.data_dir)
            started.append(mlflow)
            settings.mlflow_uri = mlflow.url
        if not settings.ray_jobs_url:
            echo("starting a local Ray head ...")
            token = settings.ray_auth_token or secrets.token_hex(32)
            head = start_ray_head(settings.data_dir, auth_token=token)
            started.append(head)
            settings.ray_jobs_url, settings.ray_auth_token = head.dashboard_url, token
        app = create_app(settings)
        port = free_port(port) if port else free_port()
        echo(f"actstudy API     http://{host}:{port}/docs")
        echo(f"MLflow UI        {settings.mlflow_public_url or settings.mlflow_uri}")
        echo(f"Ray dashboard    {settings.ray_jobs_url}")
        echo(f"database         {_redact(settings.db_url)}")
        echo("stop with Ctrl-C (or SIGTERM)")
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)
        uvicorn.Server(config).run()
    except KeyboardInterrupt:
        pass
    finally:
        for service in reversed(started):
            echo(f"stopping {type(service).__name__.lower()} ...")
            service.stop()
    return 0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: it may resolve to anything
        return False


def _redact(url: str) -> str:
    """A database URL without its password."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
