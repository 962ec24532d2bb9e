"""Helpers for the real-process study tests (tests/e2e, tests/faults): `actstudy run` as a subprocess,
bounded waits, and what a study left in MLflow (its trial runs, retries, losses)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[2]


def write_spec(folder: Path, spec: dict) -> Path:
    path = Path(folder) / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def start_study(spec_path: Path, *, ray_address: str, mlflow_uri: str, study_id: str, data_dir: Path, log: Path,
                resume: bool = False, env: dict | None = None, extra: list[str] | None = None) -> subprocess.Popen:
    """`actstudy run` in its own process group (so it, and only it, can be killed), output to `log`."""
    cmd = [sys.executable, "-m", "service.cli", "run", str(spec_path), "--ray-address", ray_address,
           "--mlflow-uri", mlflow_uri, "--study-id", study_id, "--data-dir", str(data_dir)]
    if resume:
        cmd.append("--resume")
    cmd += extra or []
    env = {**os.environ, "COLUMNS": "120", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)


def kill_group(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)


def tail(path: Path, n: int = 4000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else f"({path} missing)"


def wait_for(predicate, timeout: float, what: str, *, proc: subprocess.Popen | None = None, log: Path | None = None,
             every: float = 0.5):
    """Poll `predicate` until it returns something truthy (returned); fail if `proc` ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the study process exited ({proc.returncode}) before {what}\n{tail(log) if log else ''}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:.0f} s\n{tail(log) if log else ''}")
        time.sleep(every)


class StudyRunsView:
    """The runs of one study's MLflow experiment, read on demand."""

    def __init__(self, mlflow_uri: str, experiment: str) -> None:
        self.client = MlflowClient(mlflow_uri)
        self.experiment = experiment

    def runs(self, kind: str | None = "trial", status: str | None = None) -> list:
        try:
            exp = self.client.get_experiment_by_name(self.experiment)
        except Exception:  # noqa: BLE001 — the server may be away (outage tests)
            return []
        if exp is None:
            return []
        clauses = []
        if kind:
            clauses.append(f"tags.`actstudy.kind` = '{kind}'")
        if status:
            clauses.append(f"attributes.status = '{status}'")
        return self.client.search_runs([exp.experiment_id], " AND ".join(clauses), max_results=5000)

    def no_loss_report(self, budget: int, kind: str = "trial") -> dict:
        """Check nothing was lost or run twice: every trial of the budget FINISHED exactly once, every FAILED
        attempt points to its FINISHED retry (and back), nothing is left RUNNING. Returns the figures."""
        runs = self.runs(kind)
        by_id = {r.info.run_id: r for r in runs}
        finished = [r for r in runs if r.info.status == "FINISHED"]
        counts = Counter(r.data.tags.get("actstudy.trial_key") for r in finished)
        summary = sorted((r.data.tags.get("actstudy.trial_key"), r.info.status, r.data.tags.get("actstudy.retried_as", "")[:8])
                         for r in runs)
        assert len(counts) == budget, (f"{len(counts)} distinct finished trials, budget {budget}", summary)
        assert all(n == 1 for n in counts.values()), ("a finished trial ran again", counts, summary)
        failed = [r for r in runs if r.info.status == "FAILED" and r.data.tags.get("actstudy.status") != "diverged"]
        for r in failed:
            retry_id = r.data.tags.get("actstudy.retried_as")
            assert retry_id, ("a failed attempt does not point to its retry", r.info.run_id, r.data.tags, summary)
            retry = by_id.get(retry_id)
            assert retry is not None, ("retried_as names no run of this study", retry_id)
            # The chain of attempts ends in a FINISHED run of the same trial.
            while retry.info.status != "FINISHED" and retry.data.tags.get("actstudy.retried_as"):
                retry = by_id[retry.data.tags["actstudy.retried_as"]]
            assert retry.info.status == "FINISHED", ("a retry chain does not end finished", summary)
            assert retry.data.tags.get("actstudy.trial_key") == r.data.tags.get("actstudy.trial_key")
            assert r.info.run_id in by_id[retry_id].data.tags.get("actstudy.retry_of", "").split(","), \
                ("the retry does not name the failed attempt", by_id[retry_id].data.tags)
        running = [r.info.run_id for r in self.runs(kind=None, status="RUNNING")]
        assert running == [], ("runs left RUNNING", running)
        return {"trials": budget, "finished_runs": len(finished), "failed_attempts": len(failed),
                "retried_trials": len({r.data.tags.get("actstudy.trial_key") for r in failed})}


class ServeProcess:
    """`actstudy serve` (API only: every service given in `env`) as a subprocess, and its admin's view."""

    def __init__(self, tmp: Path, *, db_url: str, mlflow_uri: str, ray_head, reconcile_s: float = 1) -> None:
        import secrets

        from studies.local import free_port

        self.admin_token = secrets.token_hex(16)
        self.port = free_port()
        self.log = Path(tmp) / "serve.log"
        self.ray_head = ray_head
        self.env = {**os.environ, "ACTSTUDY_DATABASE_URL": db_url, "MLFLOW_TRACKING_URI": mlflow_uri,
                    "ACTSTUDY_RAY_JOBS_URL": ray_head.dashboard_url, "ACTSTUDY_RAY_AUTH_TOKEN": ray_head.token,
                    "ACTSTUDY_ADMIN_TOKEN": self.admin_token, "ACTSTUDY_DATA_DIR": str(Path(tmp) / "data"),
                    "ACTSTUDY_RECONCILE_INTERVAL_S": str(reconcile_s), "PYTHONUNBUFFERED": "1"}
        self.process: subprocess.Popen | None = None
        self.study_ids: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def start(self, timeout: float = 120) -> None:
        import httpx

        self.process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT, env=self.env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)

        def healthy():
            try:
                return httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout, "an answering API", proc=self.process, log=self.log)

    def submit(self, spec: dict) -> str:
        import httpx

        r = httpx.post(f"{self.url}/api/v1/studies", json=spec, headers=self.headers, timeout=60)
        assert r.status_code == 201, r.text
        self.study_ids.append(r.json()["id"])
        return r.json()["id"]

    def study(self, study_id: str) -> dict:
        import httpx

        r = httpx.get(f"{self.url}/api/v1/studies/{study_id}", headers=self.headers, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    def results(self, study_id: str) -> dict:
        import httpx

        r = httpx.get(f"{self.url}/api/v1/studies/{study_id}/results", headers=self.headers, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    def jobs(self):
        from ray.job_submission import JobSubmissionClient

        return JobSubmissionClient(self.ray_head.dashboard_url, headers={"Authorization": f"Bearer {self.ray_head.token}"})

    def driver_log(self, study_id: str, attempt: int) -> str:
        try:
            return self.jobs().get_job_logs(f"actstudy-{study_id}-{attempt}")[-4000:]
        except Exception as exc:  # noqa: BLE001 — a diagnostic only
            return f"(no driver log: {exc})"

    def stop(self) -> None:
        """Stop the studies' Ray jobs (a failed test must not leave a driver on the shared head), then the API."""
        for study_id in self.study_ids:
            for attempt in (1, 2, 3):
                try:
                    self.jobs().stop_job(f"actstudy-{study_id}-{attempt}")
                except Exception:  # noqa: BLE001 — no such job, or already ended
                    pass
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            kill_group(self.process)
