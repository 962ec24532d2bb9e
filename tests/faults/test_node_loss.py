"""Lose a worker node mid-study: a real head (no CPUs) and two worker nodes of one CPU each
(tests/utils/cluster.py); `actstudy run` drives the study as a subprocess. Once a trial has finished and
another is training on worker 1, worker 1's raylet and everything it started are SIGKILLed, as when a
machine is lost. Ray notices the node is gone, Tune retries the interrupted trial (FailureConfig
max_failures=TRIAL_RETRIES) on worker 0, and the study succeeds there alone: every trial of the budget
finished exactly once (none lost, none run again) and each interrupted MLflow run ended FAILED, pointing
to its retry (`actstudy.retried_as`), which points back (`actstudy.retry_of`).

    .venv/bin/python -m pytest tests/faults/test_node_loss.py -q -p no:cacheprovider -s   # ~3 min on 2 cores
"""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.utils.cluster import MultiNodeCluster
from tests.utils.runs import StudyRunsView, kill_group, start_study, tail, wait_for, write_spec

pytestmark = pytest.mark.slow

EPOCHS = 6
SPEC = {
    "name": "nodeloss",
    "dataset": {"name": "mnist1d"},
    "model": {"name": "mlp", "hidden": [512, 512]},
    "activations": ["relu", "telu"],
    "search": {"trials_per_activation": 4, "pruner": "none", "sampler": "random"},
    # A few seconds a trial (batches of 16: with 32 about one since trials step with the fused Adam), long
    # enough to be caught mid-flight.
    "training": {"epochs": EPOCHS, "batch_size": 16},
    "confirm": {"seeds": 1},
}
BUDGET = 8


@pytest.fixture
def cluster(tmp_path):
    c = MultiNodeCluster.start(tmp_path / "cluster", os.environ["RAY_AUTH_TOKEN"], workers=2, cpus_per_worker=1)
    yield c
    c.stop()


def test_losing_a_worker_node_loses_no_trial(cluster, mlflow_server, tmp_path):
    nodes = cluster.worker_node_ids()
    doomed = nodes[1]
    log = tmp_path / "study.log"
    view = StudyRunsView(mlflow_server.url, "nodeloss-nl1")
    proc = start_study(write_spec(tmp_path, SPEC), ray_address=cluster.head.address, mlflow_uri=mlflow_server.url,
                       study_id="nl1", data_dir=tmp_path / "data", log=log)
    try:
        def victim():
            """(a trial training on worker 1 with epochs to go, the trials finished so far), once there are both."""
            finished = {r.data.tags["actstudy.trial_key"] for r in view.runs("trial", "FINISHED")}
            if not finished:
                return None
            for run in view.runs("trial", "RUNNING"):
                if run.data.tags.get("actstudy.node_id") != doomed:
                    continue
                # Not in its last epochs (metrics arrive about once a second): the kill must land mid-training.
                if len(view.client.get_metric_history(run.info.run_id, "val_acc")) <= EPOCHS - 3:
                    return run, finished
            return None

        interrupted, finished_before = wait_for(victim, 300, "a finished trial and one training on worker 1",
                                                proc=proc, log=log, every=0.25)
        killed_at = time.time()
        cluster.kill_worker(1)

        assert proc.wait(420) == 0, tail(log)
        study_s = time.time() - killed_at
    finally:
        kill_group(proc)
    assert "ranking by test accuracy" in log.read_text()
    assert set(cluster.worker_node_ids()) == {0}  # worker 1 stayed dead: the rest ran on worker 0

    figures = view.no_loss_report(BUDGET)
    old = view.client.get_run(interrupted.info.run_id)
    assert old.info.status == "FAILED", old.info
    retry = view.client.get_run(old.data.tags["actstudy.retried_as"])
    assert retry.info.status == "FINISHED" and retry.data.tags["actstudy.node_id"] == nodes[0]
    assert retry.data.tags["actstudy.trial_key"] == interrupted.data.tags["actstudy.trial_key"]
    assert interrupted.info.run_id in retry.data.tags["actstudy.retry_of"].split(",")
    # Finished trials were kept, not run again, and every finished trial holds its whole curve.
    finished = view.runs("trial", "FINISHED")
    assert finished_before <= {r.data.tags["actstudy.trial_key"] for r in finished}
    for run in finished:
        steps = [m.step for m in view.client.get_metric_history(run.info.run_id, "val_acc")]
        assert sorted(steps) == list(range(1, EPOCHS + 1)), (run.data.tags["actstudy.trial_key"], steps)
    figures.update(fault="worker node killed", killed_trial=interrupted.data.tags["actstudy.trial_key"],
                   retry_started_after_s=round(retry.info.start_time / 1000 - killed_at, 1),
                   study_done_after_s=round(study_s, 1), finished_before_kill=len(finished_before))
    print("FIGURES", json.dumps(figures))
