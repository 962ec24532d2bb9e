"""`actstudy serve`: the API, plus on embedded defaults a local Ray head and an `mlflow server`.

With ACTSTUDY_RAY_JOBS_URL (or RAY_API_SERVER_ADDRESS), MLFLOW_TRACKING_URI and ACTSTUDY_DATABASE_URL
all set, only the API starts. On embedded defaults the stack has one owner at a time (`service.stack`): a
serve holds its data dir's lock, adopts the MLflow server and Ray head a killed serve left (or stops what is
left of them), and stops everything it owns on Ctrl-C / SIGTERM. What the terminal shows, and every warning,
also goes to `<data dir>/logs/serve.log` (rotated).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import logging.handlers
import os
import secrets
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from service.auth import admin_token_in
from service.main import create_app
from service.settings import Settings
from service.stack import LocalStack, StackLocked, owner_lock
from studies.local import free_port

log = logging.getLogger("actstudy.serve")
LOG_FILE = Path("logs") / "serve.log"  # in the data dir
LOG_BYTES, LOG_BACKUPS = 10 * 2**20, 5
# The Ray head, its drivers and trials run below the API's CPU priority: on one machine a burst of studies
# starting must not starve the API's reads (bench/load.py).
RAY_NICENESS = 19  # the lowest: many processes at a low priority still add up (a dozen drivers and their trials)
MLFLOW_NICENESS = 10  # the drivers' and trials' writes land there: below the API, above them
# Drivers at once on embedded defaults (ACTSTUDY_MAX_RUNNING_STUDIES overrides): one per CPU, as each needs a CPU
# for its trials; a dozen starting together on a 2-core machine tripled the API's p99 (bench/README.md). More
# wait `queued`, and start as others end.
EMBEDDED_MAX_DRIVERS = max(2, os.cpu_count() or 1)


@contextlib.contextmanager
def logging_to(data_dir: Path) -> Iterator[None]:
    """The service's log records (INFO and up from actstudy's loggers, warnings from everything) into a rotated
    file in the data dir, and warnings to the terminal; undone on exit."""
    path = data_dir / LOG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.handlers.RotatingFileHandler(path, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    to_terminal = logging.StreamHandler(sys.stderr)
    to_terminal.setLevel(logging.WARNING)
    to_terminal.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root, ours = logging.getLogger(), [logging.getLogger(name) for name in ("actstudy", "service", "studies")]
    saved = (root.level, [logger.level for logger in ours])
    root.addHandler(to_file)
    root.addHandler(to_terminal)
    root.setLevel(logging.WARNING)
    for logger in ours:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(to_file)
        root.removeHandler(to_terminal)
        to_file.close()
        root.setLevel(saved[0])
        for logger, level in zip(ours, saved[1], strict=True):
            logger.setLevel(level)


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
    with logging_to(settings.data_dir):
        def say(message: str) -> None:
            echo(message)
            log.info(message)

        try:
            with owner_lock(settings.data_dir):
                return _serve(settings, host, port, say)
        except StackLocked as exc:
            say(f"actstudy serve: {exc}")
            return 2


def _serve(settings: Settings, host: str, port: int, say) -> int:
    if not settings.admin_token:
        settings.admin_token, path, made = admin_token_in(settings.data_dir)
        if made:
            say(f"admin token      made and kept in {path} (readable by you only; ACTSTUDY_ADMIN_TOKEN overrides it)")
    # SIGTERM before uvicorn owns the signals still stops what was started.
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # raises KeyboardInterrupt, as Ctrl-C does
    stack = None
    try:
        if not settings.mlflow_uri or not settings.ray_jobs_url:
            stack = LocalStack.take_over(settings.data_dir, say, ray_niceness=RAY_NICENESS, mlflow_niceness=MLFLOW_NICENESS)
        if not settings.mlflow_uri:
            settings.mlflow_uri = stack.mlflow(say)
        if not settings.ray_jobs_url:
            settings.ray_jobs_url, settings.ray_auth_token = stack.ray(settings.ray_auth_token or secrets.token_hex(32), say)
            settings.max_running_studies = settings.max_running_studies or EMBEDDED_MAX_DRIVERS
        app = create_app(settings)
        port = free_port(port) if port else free_port()
        say(f"actstudy API     http://{host}:{port}/docs")
        say(f"MLflow UI        {settings.mlflow_public_url or settings.mlflow_uri}")
        say(f"Ray dashboard    {settings.ray_jobs_url}")
        say(f"database         {_redact(settings.db_url)}")
        if settings.max_running_studies:
            say(f"drivers at once  {settings.max_running_studies} (ACTSTUDY_MAX_RUNNING_STUDIES; more wait queued)")
        say(f"log              {settings.data_dir / LOG_FILE}")
        say("stop with Ctrl-C (or SIGTERM)")
        # log_config=None: uvicorn's records go through the handlers above (the log file too).
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", log_config=None, timeout_graceful_shutdown=5)
        uvicorn.Server(config).run()
    except KeyboardInterrupt:
        pass
    finally:
        if stack is not None:
            stack.stop(say)
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
