"""`actstudy serve` on embedded defaults survives its own crash (docs/reliability.md, "The server killed").

- SIGKILL of the serve process mid-study, then a restart on the same data dir: the new serve adopts the MLflow
  server and the Ray head the old one started (one of each, counted by process), the study's driver never
  stops, the study succeeds with every run FINISHED once, and its MLflow links still answer.
- The same with the Ray head gone too: the job the new head does not know is a dead driver, relaunched
  (attempt 2) from the study's stores, with the results the uninterrupted study had; with its attempts spent
  it fails saying why, and frees its owner's quota slot.
- Cancel at three moments (the first trial running, mid-search, confirmation): every MLflow run of the study
  ended within 30 s, then the study `cancelled` and its quota slot free.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from mlflow.tracking import MlflowClient

from service.stack import StackRecord
from studies.local import free_port
from tests.utils.factories import SMALL_SPEC, spec
from tests.utils.serve import ROOT, ServeProcess, auth, processes_of, trials_done

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

# Two activations, three trials each of four epochs, two seeds: a minute or so, with moments to catch.
SPEC = spec(SMALL_SPEC, name="crash", activations=["relu", "telu"], search={"trials_per_activation": 3, "pruner": "none"},
            training={"epochs": 4, "batch_size": 64})


def _serve(tmp_path: Path, name: str, **env: str) -> ServeProcess:
    data_dir = tmp_path / name
    environment = {**{k: v for k, v in os.environ.items() if not k.startswith(("ACTSTUDY_", "MLFLOW_", "RAY_"))},
                   "ACTSTUDY_ADMIN_TOKEN": f"admin-{os.urandom(16).hex()}", "ACTSTUDY_DATA_DIR": str(data_dir),
                   "ACTSTUDY_RECONCILE_INTERVAL_S": "1", "PYTHONUNBUFFERED": "1", **env}
    return ServeProcess(env=environment, data_dir=data_dir, log=tmp_path / f"{name}.log", port=free_port())


def _runs(mlflow_url: str, experiment_id: str) -> list:
    return MlflowClient(mlflow_url).search_runs([experiment_id], max_results=1000)


def _experiment_of(serve: ServeProcess, study: dict) -> tuple[str, str]:
    """The study's MLflow server and experiment (found by the layout's name while the study runs)."""
    record = StackRecord.load(serve.data_dir)
    exp = MlflowClient(record.mlflow_url).get_experiment_by_name(f"{study['name']}-{study['id']}")
    assert exp is not None
    return record.mlflow_url, exp.experiment_id


def _finished_once(mlflow_url: str, experiment_id: str) -> None:
    runs = _runs(mlflow_url, experiment_id)
    assert not [r.info.run_id for r in runs if r.info.status == "RUNNING"]
    finished: dict[tuple[str, str], int] = {}
    for r in runs:
        kind, key = r.data.tags.get("actstudy.kind"), r.data.tags.get("actstudy.trial_key")
        if kind and r.info.status == "FINISHED":
            finished[(kind, key)] = finished.get((kind, key), 0) + 1
    assert len([k for k in finished if k[0] == "trial"]) == 6 and len([k for k in finished if k[0] == "confirm"]) == 4
    assert set(finished.values()) == {1}, finished


def _kill_ray_head(serve: ServeProcess) -> None:
    head = StackRecord.load(serve.data_dir).ray_head
    for proc in head.processes():
        with contextlib.suppress(psutil.NoSuchProcess):  # killing the head's first processes ends others on their own
            proc.kill()
    deadline = time.monotonic() + 30
    while head.processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not head.processes()


def _running(study: dict) -> bool:
    return study["status"] == "running" and trials_done(study) >= 1


def test_a_killed_serve_is_adopted_or_replaced_and_its_studies_finish(tmp_path):
    serve = _serve(tmp_path, "a")
    serve.start()
    try:
        # One owner at a time: a second serve on the same data dir refuses, naming the holder.
        second = subprocess.run([sys.executable, "-m", "service.cli", "serve", "--port", str(free_port()), "--data-dir",
                                 str(serve.data_dir)], cwd=ROOT, env=serve.env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and f"another actstudy serve (pid {serve.process.pid}) holds" in second.stdout + second.stderr
        assert len(processes_of(serve.data_dir)["mlflow"]) == 1 and len(processes_of(serve.data_dir)["ray"]) == 1
        headers = auth(serve.mint("alice"))
        # 1. serve killed: its stack is adopted, the driver goes on.
        first = serve.http.post("/api/v1/studies", json=SPEC, headers=headers).json()
        serve.wait_for(first["id"], headers, _running, 300, "running with a trial done")
        serve.kill()
        left = processes_of(serve.data_dir)
        assert len(left["mlflow"]) == 1 and len(left["ray"]) == 1  # orphans, until a serve takes them over
        serve.start()
        assert "adopting the mlflow server" in serve.log.read_text() and "adopting the Ray head" in serve.log.read_text()
        logged = (serve.data_dir / "logs" / "serve.log").read_text()  # what the terminal showed, in the data dir too
        assert "adopting the mlflow server" in logged and "actstudy API" in logged
        running = processes_of(serve.data_dir)
        assert [p.pid for p in running["mlflow"]] == [p.pid for p in left["mlflow"]]
        assert [p.pid for p in running["ray"]] == [p.pid for p in left["ray"]]
        done = serve.wait_for(first["id"], headers, lambda s: s["status"] == "succeeded", 600, "succeeded")
        assert done["attempts"] == 1
        mlflow_url, experiment_id = _experiment_of(serve, done)
        _finished_once(mlflow_url, experiment_id)
        results = serve.http.get(f"/api/v1/studies/{first['id']}/results", headers=headers).json()
        parent_url = results["mlflow"]["parent_run_url"]
        assert parent_url.startswith(mlflow_url) and httpx.get(f"{mlflow_url}/health", timeout=10).status_code == 200

        # 2. serve and the Ray head killed: the job the new head does not know is relaunched, and resumes.
        second = serve.http.post("/api/v1/studies", json=SPEC, headers=headers).json()
        serve.wait_for(second["id"], headers, _running, 300, "running with a trial done")
        serve.kill()
        _kill_ray_head(serve)
        serve.start()
        assert len(processes_of(serve.data_dir)["mlflow"]) == 1 and len(processes_of(serve.data_dir)["ray"]) == 1
        relaunched = serve.wait_for(second["id"], headers, lambda s: s["attempts"] == 2, 60, "relaunched within a minute")
        assert relaunched["status"] in ("queued", "running")
        again = serve.wait_for(second["id"], headers, lambda s: s["status"] == "succeeded", 600, "succeeded")
        assert again["attempts"] == 2
        _finished_once(*_experiment_of(serve, again))
        resumed = serve.http.get(f"/api/v1/studies/{second['id']}/results", headers=headers).json()
        assert resumed["ranking"] == results["ranking"]
        for label, a in results["activations"].items():
            assert resumed["activations"][label]["best_params"] == a["best_params"]
            assert resumed["activations"][label]["test_acc"]["values"] == a["test_acc"]["values"]
    finally:
        assert serve.stop() == 0
    assert processes_of(serve.data_dir) == {"mlflow": [], "ray": []}  # a stop ends everything the stack started


def test_a_study_whose_attempts_are_spent_fails_saying_why_and_frees_its_slot(tmp_path):
    serve = _serve(tmp_path, "b", ACTSTUDY_MAX_DRIVER_ATTEMPTS="1", ACTSTUDY_MAX_ACTIVE_STUDIES_PER_OWNER="1")
    serve.start()
    try:
        headers = auth(serve.mint("bob"))
        study = serve.http.post("/api/v1/studies", json=SPEC, headers=headers).json()
        serve.wait_for(study["id"], headers, _running, 300, "running with a trial done")
        assert serve.http.post("/api/v1/studies", json=SPEC, headers=headers).status_code == 429  # the one slot is taken
        serve.kill()
        _kill_ray_head(serve)
        serve.start()
        failed = serve.wait_for(study["id"], headers, lambda s: s["status"] == "failed", 60, "failed")
        assert "no longer exists" in failed["error"] and "1 attempt" in failed["error"], failed["error"]
        assert serve.http.post("/api/v1/studies", json=SPEC, headers=headers).status_code == 201  # the slot is free
    finally:
        assert serve.stop() == 0


MOMENTS = {
    "first trial running": lambda s: s["status"] == "running" and any(
        a["running"] for p in (s.get("progress") or {}).get("phases", {}).values() for a in p["activations"].values()),
    "mid-search": lambda s: trials_done(s, "search") >= 3,
    "confirmation": lambda s: ((s.get("progress") or {}).get("phase")) == "confirm",
}


def test_cancel_ends_every_run_at_any_moment(tmp_path):
    serve = _serve(tmp_path, "c")
    serve.start()
    try:
        headers = auth(serve.mint("carol"))
        for moment, reached in MOMENTS.items():
            study = serve.http.post("/api/v1/studies", json=SPEC, headers=headers).json()
            serve.wait_for(study["id"], headers, reached, 300, moment)
            r = serve.http.post(f"/api/v1/studies/{study['id']}/cancel", headers=headers)
            assert r.status_code == 200 and r.json()["status"] in ("cancelling", "cancelled"), r.text
            cancelled_at = time.monotonic()
            done = serve.wait_for(study["id"], headers, lambda s: s["status"] == "cancelled", 30, f"cancelled ({moment})")
            assert time.monotonic() - cancelled_at <= 30 and done["error"] == "cancelled by carol"
            mlflow_url, experiment_id = _experiment_of(serve, done)
            open_runs = [r.info.run_id for r in _runs(mlflow_url, experiment_id) if r.info.status == "RUNNING"]
            assert not open_runs, (moment, open_runs)
            active = serve.http.get("/api/v1/studies?status=cancelling", headers=headers).json()["count"]
            assert active == 0
    finally:
        assert serve.stop() == 0
