"""Kill the study driver under the service: `actstudy serve` (API only, SQLite records, reconciler every
second) as a subprocess, on the session's Ray head and MLflow server. A study submitted over HTTP runs as a
Ray job (`python -m studies.driver <id>`); once a trial has finished, that driver process is SIGKILLed.
The reconciler sees the Ray job FAILED and relaunches the driver (attempt 2), which resumes the study from
its saved Tune state: the study succeeds, no finished trial runs again and none is lost, and the status
the API reports stays right throughout (running → running, attempt 2 → succeeded with full progress).

    .venv/bin/python -m pytest tests/faults/test_driver_loss.py -q -p no:cacheprovider -s   # ~3 min on 2 cores
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.utils.runs import ServeProcess, StudyRunsView, wait_for

pytestmark = pytest.mark.slow

EPOCHS = 6
SPEC = {
    "name": "driverloss",
    "dataset": {"name": "mnist1d"},
    "model": {"name": "mlp", "hidden": [512, 512]},  # a few seconds a trial
    "activations": ["relu", "telu"],
    "search": {"trials_per_activation": 3, "pruner": "none", "sampler": "random"},
    "training": {"epochs": EPOCHS, "batch_size": 32},
    "confirm": {"seeds": 1},
}
BUDGET = 6


@pytest.fixture
def api(tmp_path, ray_head, mlflow_server):
    serve = ServeProcess(tmp_path, db_url=f"sqlite:///{tmp_path / 'records.db'}", mlflow_uri=mlflow_server.url, ray_head=ray_head)
    serve.start()
    yield serve
    serve.stop()


def test_a_killed_driver_is_relaunched_and_resumes(api, mlflow_server):
    study_id = api.submit(SPEC)
    view = StudyRunsView(mlflow_server.url, f"driverloss-{study_id}")
    wait_for(lambda: api.study(study_id)["status"] == "running" and view.runs("trial", "FINISHED"), 300,
             "a running study with a finished trial", proc=api.process, log=api.log)
    finished_before = {r.data.tags["actstudy.trial_key"] for r in view.runs("trial", "FINISHED")}
    pids = subprocess.run(["pgrep", "-f", f"studies.driver {study_id}"], capture_output=True, text=True).stdout.split()
    assert pids, "no driver process found\n" + api.driver_log(study_id, 1)
    killed_at = time.time()
    for pid in pids:
        os.kill(int(pid), signal.SIGKILL)

    # While the driver is down and relaunched, the API keeps saying `running` (never failed, never done).
    def relaunched():
        s = api.study(study_id)
        assert s["status"] == "running", (s["status"], s.get("error"), api.driver_log(study_id, 1))
        return s if s["attempts"] == 2 else None

    s = wait_for(relaunched, 120, "the driver relaunched (attempt 2)", proc=api.process, log=api.log)
    relaunched_after = time.time() - killed_at
    assert s["ray_job_id"] == f"actstudy-{study_id}-2"
    assert api.jobs().get_job_status(f"actstudy-{study_id}-1") == "FAILED"

    def ended():
        s = api.study(study_id)
        return s if s["status"] in ("succeeded", "failed", "cancelled") else None

    s = wait_for(ended, 480, "the end of the study", proc=api.process, log=api.log, every=1)
    done_after = time.time() - killed_at
    assert s["status"] == "succeeded", (s, api.driver_log(study_id, 2))
    assert s["attempts"] == 2 and s["error"] is None
    for phase, per in (("search", 3), ("confirm", 1)):
        acts = s["progress"]["phases"][phase]["activations"]
        assert all(a["done"] == a["total"] == per for a in acts.values()), acts
    assert "resuming study" in api.jobs().get_job_logs(f"actstudy-{study_id}-2")  # it resumed, not started over

    figures = view.no_loss_report(BUDGET)
    finished = view.runs("trial", "FINISHED")
    assert finished_before <= {r.data.tags["actstudy.trial_key"] for r in finished}  # kept, not run again
    for run in finished:
        steps = [m.step for m in view.client.get_metric_history(run.info.run_id, "val_acc")]
        assert sorted(steps) == list(range(1, EPOCHS + 1)), (run.data.tags["actstudy.trial_key"], steps)
    assert set(api.results(study_id)["ranking"]) == {"relu", "telu"}
    figures.update(fault="study driver SIGKILLed", finished_before_kill=len(finished_before),
                   relaunched_after_s=round(relaunched_after, 1), study_done_after_s=round(done_after, 1))
    print("FIGURES", json.dumps(figures))
