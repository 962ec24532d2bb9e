"""A local Ray head on its own ports, marked so that every process it starts can be found and stopped."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from studies.local._ports import free_port
from studies.local._services import child_env, executable, wait_http

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
                   num_cpus: int | None = None, niceness: int = 0, timeout: float = 120) -> RayHead:
    """A local Ray head on its own ports (Redis may hold 6379, Ray's default), with token auth. `niceness`: the
    CPU priority of every process of the head (the drivers and trials it starts inherit it), below an API that
    shares the machine."""
    port = free_port(port or 6390)
    # One folder per head: a process may start several (a test session's head, a multi-node cluster's),
    # and stopping one must not stop the others.
    temp_dir = Path("/tmp") / f"ray-actstudy-{os.getpid()}-{port}"
    dashboard_port = free_port(dashboard_port or 8265)
    cmd = [executable("ray"), "start", "--head", f"--port={port}", f"--dashboard-port={dashboard_port}",
           "--dashboard-host=127.0.0.1", "--include-dashboard=true", f"--temp-dir={temp_dir}",
           "--disable-usage-stats", "--node-ip-address=127.0.0.1",
           # Ray's fixed defaults (agent 52365, client server 10001) would collide with any other head on
           # the machine, and a head whose job agent cannot bind takes no job submissions at all.
           f"--dashboard-agent-listen-port={free_port()}", f"--ray-client-server-port={free_port()}"]
    if num_cpus is not None:  # 0 is meaningful: a head that only coordinates
        cmd.append(f"--num-cpus={num_cpus}")
    if niceness:
        cmd = ["nice", "-n", str(niceness), *cmd]
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
