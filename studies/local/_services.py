"""Processes of the embedded stack: a child's environment, a started service that stops cleanly, waiting for
one to answer, and the `mlflow server` on SQLite."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from studies.local._ports import free_port

# The service's own secrets: a process this module starts (and every Ray worker, which inherits the head's
# environment) never needs them.
SERVICE_SECRETS = ("ACTSTUDY_ADMIN_TOKEN", "ACTSTUDY_DATABASE_URL")


def lower_session_priority(pid: int, niceness: int) -> None:
    """The CPU share of `pid`'s session (its autogroup: Linux shares the CPU between sessions first, whatever the
    nice of their processes); nothing where there is no autogroup. Lowering one's own is always allowed."""
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(niceness))
    except OSError:
        pass


def child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in SERVICE_SECRETS}


def executable(name: str) -> str:
    """A console script of this environment (beside its Python), else the one on PATH."""
    return str(Path(sys.executable).with_name(name)) if Path(sys.executable).with_name(name).exists() else (shutil.which(name) or name)


@dataclass
class Service:
    name: str
    url: str
    process: subprocess.Popen
    log: Path

    def stop(self, timeout: float = 20) -> None:
        if self.process.poll() is not None:
            return
        with contextlib.suppress(psutil.NoSuchProcess):
            stop_process_group(psutil.Process(self.process.pid), timeout)
        self.process.poll()


def stop_process_group(leader: psutil.Process, timeout: float = 20) -> None:
    """SIGTERM the process group `leader` heads (a service started in a session of its own, with its workers),
    SIGKILL it if the leader is still there after `timeout`; waits for the leader either way."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader.pid, sig)
        try:
            leader.wait(wait)
            return
        except psutil.NoSuchProcess:
            return
        except psutil.TimeoutExpired:
            continue


def mlflow_db(data_dir: str | Path) -> Path:
    """The SQLite database of the `mlflow server` that `start_mlflow(data_dir)` starts."""
    return Path(data_dir).resolve() / "mlflow" / "mlflow.db"


class NotReady(ConnectionError):
    """A service that answered, but not yet as ready (an HTTP 5xx)."""


def wait_http(url: str, process: subprocess.Popen | None, log: Path | None, timeout: float, what: str) -> None:
    """Until `url` answers below 500 (every 0.5 s, for `timeout` s); fails at once, with the log's tail, if the
    process that should answer there exits."""

    def exited() -> None:
        if process is not None and process.poll() is not None:
            tail = log.read_text()[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} exited with code {process.returncode} before it was ready; log {log}:\n{tail}")

    def ready() -> None:
        exited()
        if httpx.get(url, timeout=2).status_code >= 500:
            raise NotReady(url)

    try:
        Retrying(stop=stop_after_delay(timeout), wait=wait_fixed(0.5), retry=retry_if_exception_type((httpx.HTTPError, NotReady)),
                 reraise=True)(ready)
    except (httpx.HTTPError, NotReady):
        raise TimeoutError(f"{what} did not answer at {url} within {timeout:.0f} s (log: {log})") from None


def start_mlflow(data_dir: str | Path, *, host: str = "127.0.0.1", port: int | None = None, niceness: int = 0,
                 timeout: float = 180) -> Service:
    """`mlflow server` on SQLite with a local artifact folder under data_dir; `niceness`: its CPU priority (`nice`
    execs it: the process keeps its pid)."""
    data_dir = Path(data_dir).resolve() / "mlflow"
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port(port or 5000)
    log = data_dir / "server.log"
    env = {**child_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job workers: 2 processes, not 8
    cmd = [
        executable("mlflow"), "server",
        "--backend-store-uri", f"sqlite:///{mlflow_db(data_dir.parent)}",
        "--artifacts-destination", str(data_dir / "artifacts"),
        "--host", host, "--port", str(port), "--workers", "1",
    ]
    if niceness:
        cmd = ["nice", "-n", str(niceness), *cmd]
    proc = subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    if niceness:
        lower_session_priority(proc.pid, niceness)
    url = f"http://{host}:{port}"
    service = Service("mlflow", url, proc, log)
    try:
        wait_http(f"{url}/health", proc, log, timeout, "mlflow server")
    except BaseException:
        service.stop()
        raise
    return service
