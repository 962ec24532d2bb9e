"""`actstudy serve` as a test drives it: a real subprocess, its HTTP API, its CLI, and the processes it owns."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import httpx
import psutil

from studies.local import mlflow_db

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = ("succeeded", "failed", "cancelled")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class ServeProcess:
    """One `actstudy serve` process and what it needs to be started again (on the same data dir and port)."""

    env: dict[str, str]
    data_dir: Path
    log: Path
    port: int
    ray_head: object | None = None  # the session's head when the API is given one; None on embedded defaults
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @cached_property
    def http(self) -> httpx.Client:
        """A client with a patient timeout: the machine may be busy training."""
        return httpx.Client(base_url=self.url, timeout=60)

    @property
    def admin(self) -> dict[str, str]:
        return auth(self.env["ACTSTUDY_ADMIN_TOKEN"])

    def start(self, timeout: float = 240) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--data-dir", str(self.data_dir)],
            cwd=ROOT, env=self.env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"actstudy serve exited {self.process.returncode}:\n{self.log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"the API was not ready within {timeout} s:\n{self.log.read_text()[-3000:]}")

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, as a supervisor would; returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            raise AssertionError(f"actstudy serve ignored SIGTERM for {timeout} s") from None

    def kill(self) -> None:
        """SIGKILL the serve process alone (not what it started), as an OOM killer would."""
        self.process.kill()
        self.process.wait(10)

    def cli(self, *args: str, token: str | None = None) -> subprocess.CompletedProcess:
        env = {**self.env, "ACTSTUDY_URL": self.url, **({"ACTSTUDY_TOKEN": token} if token else {})}
        return subprocess.run([sys.executable, "-m", "service.cli", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)

    def mint(self, owner: str) -> str:
        done = self.cli("token", "create", "--owner", owner)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def study(self, study_id: str, headers: dict) -> dict:
        r = self.http.get(f"/api/v1/studies/{study_id}", headers=headers)
        assert r.status_code == 200, r.text
        return r.json()

    def wait_for(self, study_id: str, headers: dict, until, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        study = self.study(study_id, headers)
        while not until(study):
            if study["status"] in TERMINAL or time.monotonic() > deadline:
                raise AssertionError(f"study {study_id} never reached {what}; it is {study['status']} "
                                     f"(error: {study.get('error')})\nserve log:\n{self.log.read_text()[-3000:]}")
            time.sleep(1)
            study = self.study(study_id, headers)
        return study


def trials_done(study: dict, phase: str | None = None) -> int:
    phases = (study.get("progress") or {}).get("phases", {})
    return sum(a["done"] for name, p in phases.items() if phase in (None, name) for a in p["activations"].values())


def processes_of(data_dir: Path) -> dict[str, list[psutil.Process]]:
    """The MLflow servers serving `data_dir`'s database and the Ray heads (GCS servers) started for it."""
    db = str(mlflow_db(data_dir))
    found: dict[str, list[psutil.Process]] = {"mlflow": [], "ray": []}
    for proc in psutil.process_iter():
        try:
            cmd = proc.cmdline()
            if any(db in arg for arg in cmd) and "server" in cmd and proc.name() != "uvicorn" and not any("uvicorn" in a for a in cmd):
                found["mlflow"].append(proc)
            elif proc.name() == "gcs_server" and proc.environ().get("ACTSTUDY_DATA_DIR") == str(Path(data_dir).resolve()):
                found["ray"].append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found
