"""The embedded stack has one owner at a time: the `actstudy serve` holding its data dir's lock.

`actstudy serve` on embedded defaults starts an `mlflow server` and a Ray head. Both outlive a serve process
that is killed (SIGKILL, an OOM kill, a reboot of the API's container only), so what was started is recorded
in `<data dir>/stack.json` (owner-only: it holds the Ray head's token). The next serve on that data dir
**adopts** a recorded stack that still answers (the same MLflow server, so studies' links keep working; the
same Ray head, so running drivers go on), or **stops** what is left of it before starting its own: never two
MLflow servers on one database. A second serve on a data dir whose lock is held refuses to start, naming the
process that holds it. `stop_recorded` (used by `make stop`) stops a recorded stack whatever became of its serve.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import psutil

from studies.local import RayHead, mlflow_db, start_mlflow, start_ray_head, stop_process_group
from workers.files import written_whole

log = logging.getLogger(__name__)
LOCK_FILE = "serve.lock"
STACK_FILE = "stack.json"
HEALTH_TIMEOUT_S = 3.0


class StackLocked(RuntimeError):
    """Another `actstudy serve` holds this data dir."""


@contextlib.contextmanager
def owner_lock(data_dir: Path) -> Iterator[None]:
    """Hold `<data dir>/serve.lock` (an exclusive flock, released by the kernel however the holder dies)."""
    path = Path(data_dir) / LOCK_FILE
    with path.open("a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise StackLocked(f"another actstudy serve (pid {holder}) holds {data_dir}: stop it first "
                              f"(kill {holder}, or `make stop`), or give this one another --data-dir") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            f.truncate(0)
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass
class StackRecord:
    """What a serve started: the MLflow server (its process group) and the Ray head, and who started them."""

    serve_pid: int
    mlflow_pid: int | None = None
    mlflow_url: str | None = None
    mlflow_db: str | None = None  # the database it serves: how a recorded pid is recognised as ours still
    ray_address: str | None = None
    ray_dashboard_url: str | None = None
    ray_temp_dir: str | None = None
    ray_auth_token: str | None = None

    @property
    def ray_head(self) -> RayHead | None:
        if not self.ray_temp_dir:
            return None
        return RayHead(self.ray_address or "", self.ray_dashboard_url or "", Path(self.ray_temp_dir))

    def mlflow_process(self) -> psutil.Process | None:
        """The recorded MLflow server, if it is still running (and still the one serving our database)."""
        if not self.mlflow_pid:
            return None
        try:
            proc = psutil.Process(self.mlflow_pid)
            return proc if self.mlflow_db and any(self.mlflow_db in arg for arg in proc.cmdline()) else None
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None

    def save(self, data_dir: Path) -> None:
        with written_whole(Path(data_dir) / STACK_FILE) as f:  # mode 600: the Ray token
            f.write(json.dumps(asdict(self), indent=2).encode())

    @classmethod
    def load(cls, data_dir: Path) -> StackRecord | None:
        path = Path(data_dir) / STACK_FILE
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None


def _answers(url: str | None) -> bool:
    if not url:
        return False
    try:
        return httpx.get(url, timeout=HEALTH_TIMEOUT_S).status_code == 200
    except httpx.HTTPError:
        return False


def mlflow_healthy(record: StackRecord) -> bool:
    return record.mlflow_process() is not None and _answers(f"{record.mlflow_url}/health")


def ray_healthy(record: StackRecord) -> bool:
    head = record.ray_head
    return head is not None and bool(head.processes()) and _answers(f"{record.ray_dashboard_url}/api/gcs_healthz")


def stop_mlflow(record: StackRecord) -> None:
    """Stop the recorded MLflow server (its process group: its workers too), if it is still ours and running."""
    proc = record.mlflow_process()
    if proc is not None:
        stop_process_group(proc)


def stop_recorded(data_dir: Path, echo=print) -> bool:
    """Stop whatever `stack.json` records (MLflow, then the Ray head) and forget it; False when nothing is recorded."""
    record = StackRecord.load(data_dir)
    if record is None:
        return False
    if record.mlflow_process() is not None:
        echo(f"stopping the mlflow server (pid {record.mlflow_pid}) ...")
        stop_mlflow(record)
    head = record.ray_head
    if head is not None and head.processes():
        echo(f"stopping the Ray head ({record.ray_temp_dir}) ...")
        head.stop()
    (Path(data_dir) / STACK_FILE).unlink(missing_ok=True)
    return True


@dataclass
class LocalStack:
    """The embedded stack of one serve: what it adopted or started, recorded as it goes; `stop` ends it all."""

    data_dir: Path
    record: StackRecord
    mlflow_port: int | None = None  # a previous server's: stored links name it
    ray_niceness: int = 0  # of a Ray head started here (see start_ray_head)
    mlflow_niceness: int = 0  # of an MLflow server started here

    @classmethod
    def take_over(cls, data_dir: Path, echo=print, *, ray_niceness: int = 0, mlflow_niceness: int = 0) -> LocalStack:
        """Adopt the healthy parts of the stack a previous serve of this data dir left, stop the rest."""
        previous = StackRecord.load(data_dir)
        record = StackRecord(serve_pid=os.getpid())
        if previous is not None:
            if mlflow_healthy(previous):
                echo(f"adopting the mlflow server a previous serve started: {previous.mlflow_url} (pid {previous.mlflow_pid})")
                record.mlflow_pid, record.mlflow_url, record.mlflow_db = previous.mlflow_pid, previous.mlflow_url, previous.mlflow_db
            else:
                stop_mlflow(previous)
            if ray_healthy(previous):
                echo(f"adopting the Ray head a previous serve started: {previous.ray_dashboard_url}")
                record.ray_address, record.ray_dashboard_url = previous.ray_address, previous.ray_dashboard_url
                record.ray_temp_dir, record.ray_auth_token = previous.ray_temp_dir, previous.ray_auth_token
            elif previous.ray_head is not None and previous.ray_head.processes():
                echo(f"stopping what is left of a previous Ray head ({previous.ray_temp_dir}) ...")
                previous.ray_head.stop()
        stack = cls(Path(data_dir), record, _port(previous.mlflow_url if previous else None), ray_niceness, mlflow_niceness)
        record.save(data_dir)
        return stack

    def mlflow(self, echo=print) -> str:
        """The MLflow server's URL: the adopted one, or one started now (on the port a previous one had, so that
        stored links keep working)."""
        if self.record.mlflow_url:
            return self.record.mlflow_url
        echo("starting mlflow server (SQLite, local artifacts) ...")
        service = start_mlflow(self.data_dir, port=self.mlflow_port, niceness=self.mlflow_niceness)
        self.record.mlflow_pid, self.record.mlflow_url = service.process.pid, service.url
        self.record.mlflow_db = str(mlflow_db(self.data_dir))
        self.record.save(self.data_dir)
        return service.url

    def ray(self, auth_token: str, echo=print) -> tuple[str, str]:
        """The Ray head's Jobs API URL and its token: the adopted head's, or a head started now."""
        if self.record.ray_dashboard_url:
            return self.record.ray_dashboard_url, self.record.ray_auth_token or auth_token
        echo("starting a local Ray head ...")
        head = start_ray_head(self.data_dir, auth_token=auth_token, niceness=self.ray_niceness)
        self.record.ray_address, self.record.ray_dashboard_url = head.address, head.dashboard_url
        self.record.ray_temp_dir, self.record.ray_auth_token = str(head.temp_dir), auth_token
        self.record.save(self.data_dir)
        return head.dashboard_url, auth_token

    def stop(self, echo=print) -> None:
        stop_recorded(self.data_dir, echo)


def _port(url: str | None) -> int | None:
    try:
        return httpx.URL(url).port if url else None
    except httpx.InvalidURL:
        return None
