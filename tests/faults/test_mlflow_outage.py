"""Stop the MLflow server mid-study, then start it again: trials keep training, and what they could not
send while it was away (runs not yet created, epoch metrics) is buffered by MlflowTrialRecorder and
arrives once it is back. Nothing is lost: every trial and confirmation run ends FINISHED with every epoch.

The test's own `mlflow server` (SQLite + artifact folder under tmp) is stopped with SIGTERM once trial runs
exist, stays away for OUTAGE_S seconds and is started again on the same port and the same store; the
study (`actstudy run` in a subprocess, on the session's Ray head) must succeed.

    .venv/bin/python -m pytest tests/faults/test_mlflow_outage.py -q -p no:cacheprovider -s   # ~2-3 min on 2 cores
"""

from __future__ import annotations

import json
import time

import pytest

from studies.local import free_port, start_mlflow
from tests.utils.runs import StudyRunsView, kill_group, start_study, tail, wait_for, write_spec

pytestmark = pytest.mark.slow

EPOCHS = 8
OUTAGE_S = 10
SPEC = {
    "name": "outage",
    "dataset": {"name": "mnist1d"},
    "model": {"name": "mlp", "hidden": [512, 512]},  # a few seconds a trial, so trials train through the outage
    "activations": ["relu", "telu"],
    "search": {"trials_per_activation": 3, "pruner": "none", "sampler": "random"},
    "training": {"epochs": EPOCHS, "batch_size": 32},
    "confirm": {"seeds": 1},
}
BUDGET = 6


def test_an_mlflow_outage_loses_no_metric(ray_head, tmp_path):
    port = free_port()
    mlflow = start_mlflow(tmp_path / "tracking", port=port)
    log = tmp_path / "study.log"
    proc = None
    try:
        view = StudyRunsView(mlflow.url, "outage-out1")
        proc = start_study(write_spec(tmp_path, SPEC), ray_address=ray_head.address, mlflow_uri=mlflow.url,
                           study_id="out1", data_dir=tmp_path / "data", log=log)
        wait_for(lambda: view.runs("trial", "RUNNING"), 300, "a running trial", proc=proc, log=log, every=0.25)
        down_at = time.time()
        mlflow.stop()
        time.sleep(OUTAGE_S)
        assert proc.poll() is None, "the study ended while MLflow was away\n" + tail(log)
        mlflow = start_mlflow(tmp_path / "tracking", port=port)
        up_at = time.time()
        assert mlflow.url.endswith(f":{port}")  # the same address the trials were given

        assert proc.wait(420) == 0, tail(log)
        done_at = time.time()
        assert "ranking by test accuracy" in log.read_text()

        figures = view.no_loss_report(BUDGET)
        assert len(view.runs("confirm", "FINISHED")) == 2
        during = 0
        for run in view.runs("trial", "FINISHED") + view.runs("confirm", "FINISHED"):
            history = view.client.get_metric_history(run.info.run_id, "val_acc")
            assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1)), (run.data.tags, history)
            assert {"train_loss", "val_loss", "lr", "epoch_time"} <= set(run.data.metrics)
            during += sum(down_at * 1000 <= m.timestamp <= up_at * 1000 for m in history)
        # Trials trained on while the server was away, and those epochs arrived afterwards.
        assert during > 0, "no epoch was logged during the outage: it did not hit a training trial"
        figures.update(fault="mlflow server stopped", outage_s=round(up_at - down_at, 1),
                       epochs_trained_during_outage=during, study_done_after_restart_s=round(done_at - up_at, 1))
        print("FIGURES", json.dumps(figures))
    finally:
        kill_group(proc)
        mlflow.stop()
