"""Processes the embedded defaults start on one machine: an `mlflow server` on SQLite and a Ray head.

Each waits until it answers (bounded) and stops cleanly; `actstudy run` and `actstudy serve` use them.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

# The service's own secrets: a process this module starts (and every Ray worker, which inherits the head's
# environment) never needs them.
SERVICE_SECRETS = ("ACTSTUDY_ADMIN_TOKEN", "ACTSTUDY_DATABASE_URL")


def child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in SERVICE_SECRETS}


# Ports handed out below the kernel's ephemeral range (where it picks ports for outgoing connections and for
# binds to port 0) and above Ray's worker ports (10002-19999): a port chosen here and bound a moment later by the
# process it is for cannot be given to another socket by the kernel meanwhile (a raylet once failed to start
# because its node-manager port, picked from the ephemeral range, was taken in between).
PORT_FLOOR = 20000
_handed_out: set[int] = set()
_pick = random.SystemRandom()  # not the global generator, which code under test may seed


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default; elsewhere a guess


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_port(preferred: int | None = None) -> int:
    """`preferred` if nothing listens on it, else a port nothing holds, outside the kernel's ephemeral range
    and never the same one twice in this process."""
    if preferred:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", preferred)) != 0:
                return preferred
    ceiling = _ephemeral_floor()
    if ceiling - PORT_FLOOR >= 1000:
        for _ in range(1000):
            port = _pick.randrange(PORT_FLOOR, ceiling)
            if port not in _handed_out and _bindable(port):
                _handed_out.add(port)
                return port
    with socket.socket() as s:  # no room below the ephemeral range: let the kernel choose
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bin(name: str) -> str:
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
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


def wait_http(url: str, process: subprocess.Popen | None, log: Path | None, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = log.read_text()[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} exited with code {process.returncode} before it was ready; log {log}:\n{tail}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{what} did not answer at {url} within {timeout:.0f} s (log: {log})")


def start_mlflow(data_dir: str | Path, *, host: str = "127.0.0.1", port: int | None = None, timeout: float = 180) -> Service:
    """`mlflow server` on SQLite with a local artifact folder under data_dir."""
    data_dir = Path(data_dir).resolve() / "mlflow"
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port(port or 5000)
    log = data_dir / "server.log"
    env = {**child_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job workers: 2 processes, not 8
    cmd = [
        _bin("mlflow"), "server",
        "--backend-store-uri", f"sqlite:///{data_dir / 'mlflow.db'}",
        "--artifacts-destination", str(data_dir / "artifacts"),
        "--host", host, "--port", str(port), "--workers", "1",
    ]
    proc = subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://{host}:{port}"
    service = Service("mlflow", url, proc, log)
    try:
        wait_http(f"{url}/health", proc, log, timeout, "mlflow server")
    except BaseException:
        service.stop()
        raise
    return service


# Every process of a head started here carries this variable, set to the head's temp folder: Ray's agents
# and workers rename themselves (`ray::DashboardAgent`), so their command lines do not show the folder,
# but they inherit the environment, and so does everything they start (job drivers, trial workers).
HEAD_MARK = "ACTSTUDY_RAY_HEAD"


@dataclass
class RayHead:
    address: str  # host:port of the GCS
    dashboard_url: str
    temp_dir: Path

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment for a process that belongs to this head (stopped with it)."""
        return {**(child_env() if base is None else base), HEAD_MARK: str(self.temp_dir)}

    def processes(self) -> list[psutil.Process]:
        """Every live process of this head: marked by its environment or naming its temp folder (followed by
        / or a space: not a folder whose name merely begins the same way), and their descendants (the agents
        a raylet starts rename themselves over their environment too). `ray stop` would stop every Ray
        process on the machine, other heads' too."""
        pattern = re.compile(f"{re.escape(str(self.temp_dir))}([/ ]|$)")
        found: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter():
            try:
                if proc.environ().get(HEAD_MARK) == str(self.temp_dir) or pattern.search(" ".join(proc.cmdline())):
                    found[proc.pid] = proc
                    found |= {child.pid: child for child in proc.children(recursive=True)}
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        found.pop(os.getpid(), None)
        return list(found.values())

    def stop(self, timeout: float = 8) -> None:
        """SIGTERM every process of this head, SIGKILL what is left after `timeout`, until none is left."""
        deadline = time.monotonic() + timeout
        while procs := self.processes():
            sig = signal.SIGTERM if time.monotonic() < deadline else signal.SIGKILL
            for proc in procs:
                try:
                    proc.send_signal(sig)
                except psutil.NoSuchProcess:
                    pass
            psutil.wait_procs(procs, timeout=1)
            if time.monotonic() > deadline + 10:
                raise RuntimeError(f"Ray processes of {self.temp_dir} survived SIGKILL: {[p.pid for p in procs]}")


def start_ray_head(data_dir: str | Path, *, auth_token: str, port: int | None = None, dashboard_port: int | None = None,
                   num_cpus: int | None = None, timeout: float = 120) -> RayHead:
    """A local Ray head on its own ports (Redis may hold 6379, Ray's default), with token auth."""
    port = free_port(port or 6390)
    # One folder per head: a process may start several (a test session's head, a multi-node cluster's),
    # and stopping one must not stop the others.
    temp_dir = Path("/tmp") / f"ray-actstudy-{os.getpid()}-{port}"
    dashboard_port = free_port(dashboard_port or 8265)
    cmd = [_bin("ray"), "start", "--head", f"--port={port}", f"--dashboard-port={dashboard_port}",
           "--dashboard-host=127.0.0.1", "--include-dashboard=true", f"--temp-dir={temp_dir}",
           "--disable-usage-stats", "--node-ip-address=127.0.0.1",
           # Ray's fixed defaults (agent 52365, client server 10001) would collide with any other head on
           # the machine, and a head whose job agent cannot bind takes no job submissions at all.
           f"--dashboard-agent-listen-port={free_port()}", f"--ray-client-server-port={free_port()}"]
    if num_cpus is not None:  # 0 is meaningful: a head that only coordinates
        cmd.append(f"--num-cpus={num_cpus}")
    log = Path(data_dir).resolve() / "ray-start.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    head = RayHead(f"127.0.0.1:{port}", f"http://127.0.0.1:{dashboard_port}", temp_dir)
    env = head.env({**child_env(), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": auth_token})
    with log.open("ab") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, env=env)
    if proc.returncode != 0:
        head.stop()  # what it started before it failed
        raise RuntimeError(f"ray start failed (exit {proc.returncode}); log {log}:\n{log.read_text()[-2000:]}")
    wait_http(f"{head.dashboard_url}/api/gcs_healthz", None, log, timeout, "ray dashboard")
    return head
