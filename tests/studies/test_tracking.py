"""MlflowTrialRecorder on a real `mlflow server`: one run per attempt, a retry points back to the attempt it
replaces, and an attempt that re-enters a trial that had already ended (Tune restarted it from its last
checkpoint after a driver restore) leaves that trial's run as it was."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from studies.tracking import MlflowTrialRecorder
from workers.train import TrialConfig, TrialResult

EPOCHS = 3


@pytest.fixture
def setup(mlflow_server, request):
    client = MlflowClient(mlflow_server.url)
    exp = client.create_experiment(f"tracking-{request.node.name}")
    parent = client.create_run(exp).info.run_id
    config = {"mlflow_uri": mlflow_server.url, "mlflow_experiment_id": exp, "mlflow_parent_runs": {"relu": parent},
              "label": "relu", "kind": "trial", "epochs": EPOCHS, "lr": 0.01, "l2": 0.0}
    return client, exp, config


def records(n):
    return [{"epoch": e, "train_loss": 1.0 / e, "val_acc": 0.1 * e, "diverged": False} for e in range(1, n + 1)]


def attempt(config, previous=None, history=None, epochs=()):
    cfg = TrialConfig.from_dict(config)
    rec = MlflowTrialRecorder()
    rec.start(cfg, config, previous, history)
    for r in epochs:
        rec.epoch(r)
    rec.end(TrialResult("completed", EPOCHS, (history or []) + list(epochs)))
    return rec


def runs(client, exp):
    return client.search_runs([exp], "tags.`actstudy.kind` = 'trial'")


def test_an_attempt_is_one_finished_run_with_every_epoch(setup):
    client, exp, config = setup
    rec = attempt(config, epochs=records(EPOCHS))
    (run,) = runs(client, exp)
    assert run.info.run_id == rec.run_id and run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(rec.run_id, "val_acc")] == [1, 2, 3]


def test_a_retry_from_a_checkpoint_replaces_the_interrupted_run(setup):
    client, exp, config = setup
    cfg = TrialConfig.from_dict(config)
    first = MlflowTrialRecorder()
    first.start(cfg, config, None, None)
    first.epoch(records(1)[0])
    first.flush()  # then the node died
    second = attempt(config, previous=first.state(), history=records(1), epochs=records(EPOCHS)[1:])
    by_id = {r.info.run_id: r for r in runs(client, exp)}
    assert by_id[first.run_id].info.status == "FAILED"
    assert by_id[first.run_id].data.tags["actstudy.retried_as"] == second.run_id
    assert by_id[second.run_id].info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(second.run_id, "val_acc")] == [1, 2, 3]


def test_re_entering_a_trial_that_had_ended_keeps_its_run(setup):
    client, exp, config = setup
    first = attempt(config, epochs=records(EPOCHS))
    before = client.get_run(first.run_id)
    again = attempt(config, previous=first.state(), history=records(EPOCHS))  # nothing left to train
    assert again.run_id == first.run_id
    (run,) = runs(client, exp)  # no second run
    assert run.info.status == "FINISHED" and run.info.end_time == before.info.end_time
    assert "actstudy.retried_as" not in run.data.tags
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")] == [1, 2, 3]
