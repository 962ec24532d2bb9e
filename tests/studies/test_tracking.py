"""A trial's MLflow run on a real `mlflow server`: the trial side (MlflowTrialRecorder) logs one run per
attempt, a retry points back to the attempt it replaces; the driver side (RunEnds, a Tune callback) ends
each run with the status Tune decided, also a run no epoch reported (found by its trial key)."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from ray.tune.experiment import Trial

from studies.mlflow import MlflowTrialRecorder, RunEnds
from studies.trial_run import split_config
from workers import TrialResult

EPOCHS = 3


@pytest.fixture
def setup(mlflow_server, request):
    client = MlflowClient(mlflow_server.url)
    exp = client.create_experiment(f"tracking-{request.node.name}")
    parent = client.create_run(exp).info.run_id
    config = {"mlflow_uri": mlflow_server.url, "mlflow_experiment_id": exp, "mlflow_parent_runs": {"relu": parent},
              "label": "relu", "kind": "trial", "trial_key": "a0-t0", "epochs": EPOCHS, "lr": 0.01, "l2": 0.0}
    return client, exp, config


def records(n):
    return [{"epoch": e, "train_loss": 1.0 / e, "val_acc": 0.1 * e, "diverged": False} for e in range(1, n + 1)]


def started(config, previous=None, history=None) -> MlflowTrialRecorder:
    cfg, run = split_config(config)
    rec = MlflowTrialRecorder(run)
    rec.start(cfg, previous, history)
    return rec


def attempt(config, previous=None, history=None, epochs=()):
    rec = started(config, previous, history)
    for r in epochs:
        rec.epoch(r)
    rec.end(TrialResult("completed", EPOCHS, (history or []) + list(epochs)))
    return rec


def tune_trial(config, last_result, trial_id="t0"):
    t = Trial("fn", config=dict(config), stub=True, trial_id=trial_id)
    t.run_metadata.last_result = last_result
    return t


def runs(client, exp):
    return client.search_runs([exp], "tags.`actstudy.kind` = 'trial'")


def test_an_attempt_is_one_run_the_driver_ends(setup, mlflow_server):
    client, exp, config = setup
    rec = attempt(config, epochs=records(EPOCHS))
    (run,) = runs(client, exp)
    assert run.info.run_id == rec.run_id and run.info.status == "RUNNING"  # the trial does not end it
    assert [m.step for m in client.get_metric_history(rec.run_id, "val_acc")] == [1, 2, 3]
    ends = RunEnds(mlflow_server.url, EPOCHS)
    trial = tune_trial(config, {"epoch": EPOCHS, "val_acc": 0.3, **rec.metrics()})
    ends.on_trial_result(0, [trial], trial, trial.last_result)
    ends.on_trial_complete(0, [trial], trial)
    run = client.get_run(rec.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["actstudy.status"] == "completed"


@pytest.mark.parametrize("last, status, tag", [({"epoch": 1}, "KILLED", "pruned"),
                                               ({"epoch": 2, "diverged": True}, "FAILED", "diverged")])
def test_the_driver_ends_a_run_no_epoch_reported_by_its_key(setup, mlflow_server, last, status, tag):
    """MLflow was away when the trial started: its reports carried no run id, its run came later."""
    client, exp, config = setup
    rec = attempt(config, epochs=records(2))
    ends = RunEnds(mlflow_server.url, EPOCHS)
    trial = tune_trial(config, last)
    ends.on_trial_complete(0, [trial], trial)
    run = client.get_run(rec.run_id)
    assert (run.info.status, run.data.tags["actstudy.status"]) == (status, tag)
    assert ends.pending == []


def test_a_trial_that_failed_before_its_run_holds_nothing_up(setup, mlflow_server):
    _, _, config = setup
    ends = RunEnds(mlflow_server.url, EPOCHS)
    trial = tune_trial({**config, "trial_key": "a0-t9"}, {})
    ends.on_trial_error(0, [trial], trial)
    assert ends.pending == []


def test_a_retry_from_a_checkpoint_replaces_the_interrupted_run(setup):
    client, exp, config = setup
    first = started(config)
    first.epoch(records(1)[0])
    first.flush()  # then the node died
    second = attempt(config, previous=first.state(), history=records(1), epochs=records(EPOCHS)[1:])
    by_id = {r.info.run_id: r for r in runs(client, exp)}
    assert by_id[first.run_id].info.status == "FAILED"
    assert by_id[first.run_id].data.tags["actstudy.retried_as"] == second.run_id
    assert by_id[second.run_id].data.tags["actstudy.retry_of"] == first.run_id
    assert [m.step for m in client.get_metric_history(second.run_id, "val_acc")] == [1, 2, 3]


def test_a_retry_after_a_driver_died_finds_the_lost_attempt_by_key(setup):
    """No checkpoint, so no run id handed over: the retry finds the earlier attempt by its trial key."""
    client, exp, config = setup
    first = started(config)
    first.flush()
    second = attempt(config, epochs=records(EPOCHS))
    old = client.get_run(first.run_id)
    assert old.info.status == "FAILED" and old.data.tags["actstudy.retried_as"] == second.run_id


def test_a_populations_members_each_have_their_run_ended_as_they_end(setup):
    """Members record to runs of their own; a member the population's report says was pruned is ended there (KILLED),
    the others when Tune says the population completed; a retry of the population skips the members that ended."""
    from studies.mlflow import ended_members
    from studies.trial_run import member_runs, split_population

    client, exp, config = setup
    shared = {k: v for k, v in config.items() if k not in ("trial_key", "lr", "l2")}
    population = {**shared, "members": [{"optuna_trial": i, "trial_key": f"a0-t{i}", "lr": 0.01 * (i + 1), "l2": 0.0} for i in range(3)]}
    cfgs, runs = split_population(population)
    recorders = [MlflowTrialRecorder(run) for run in runs]
    for cfg, rec in zip(cfgs, recorders, strict=True):
        rec.start(cfg, None, None)
        rec.epoch(records(1)[0])
    ends = RunEnds(config["mlflow_uri"], EPOCHS)
    trial = Trial("fn", config=population, stub=True, trial_id="pop0")
    first = {"epoch": 1, "val_acc": 0.3, "members": {
        "a0-t0": {"epoch": 1, "val_acc": 0.1, "status": "pruned", "mlflow_run_id": recorders[0].run_id},
        **{f"a0-t{i}": {"epoch": 1, "val_acc": 0.3, "status": "running", "mlflow_run_id": recorders[i].run_id} for i in (1, 2)}}}
    trial.run_metadata.last_result = first
    ends.on_trial_result(0, [trial], trial, first)
    assert client.get_run(recorders[0].run_id).info.status == "KILLED"
    assert client.get_run(recorders[1].run_id).info.status == "RUNNING"
    assert ended_members(runs) == {"a0-t0": {1: 0.1}}  # what a retry would not train again, with its values by epoch
    last = {"epoch": EPOCHS, "val_acc": 0.5, "members": {
        **first["members"], "a0-t1": {"epoch": EPOCHS, "val_acc": 0.5, "status": "completed", "mlflow_run_id": recorders[1].run_id},
        "a0-t2": {"epoch": 2, "val_acc": float("nan"), "status": "diverged", "mlflow_run_id": recorders[2].run_id}}}
    trial.run_metadata.last_result = last
    ends.on_trial_complete(0, [trial], trial)
    statuses = [(client.get_run(r.run_id).info.status, client.get_run(r.run_id).data.tags["actstudy.status"]) for r in recorders]
    assert statuses == [("KILLED", "pruned"), ("FINISHED", "completed"), ("FAILED", "diverged")]
    assert [r.trial_key for r in member_runs(population)] == ["a0-t0", "a0-t1", "a0-t2"]
    assert set(ended_members(runs)) == {"a0-t0", "a0-t1", "a0-t2"}
