"""Population trials in whole studies on a real Ray head and `mlflow server`: each member is the single trial of the
same number (random sampler, no pruner), every member has its own finished MLflow run, and TPE with ASHA gives the
same configurations and the same pruning whatever the number of trials running at once. The driver kill with
populations is in tests/faults/test_driver_kill.py."""

from __future__ import annotations

import optuna
import pytest
from mlflow.tracking import MlflowClient

from studies.mlflow import layout
from studies.runner import run_study
from studies.search import open_storage
from studies.spec import parse_spec

pytestmark = pytest.mark.slow


def study(tmp_path, mlflow_server, ray_head, study_id, **search):
    spec = parse_spec({"name": "pop", "activations": ["relu", "telu"], "seed": 3,
                       "search": {"trials_per_activation": 4, **search},
                       "training": {"epochs": 3, "batch_size": 256}, "confirm": {"seeds": 1}})
    run_study(spec, study_id=study_id, storage_dir=tmp_path / study_id, mlflow_uri=mlflow_server.url, ray_address=ray_head.address)
    storage = open_storage(tmp_path / study_id / study_id / "optuna.log")
    trials = {label: optuna.load_study(study_name=f"{study_id}/{label}", storage=storage).trials for label in spec.labels}
    client = MlflowClient(mlflow_server.url)
    exp = client.get_experiment_by_name(layout.experiment_name("pop", study_id))
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    return trials, runs, client


def curves(client, runs):
    """Trial key → its per-epoch validation accuracy, from each trial's run."""
    return {r.data.tags[layout.TRIAL_KEY]: [m.value for m in sorted(client.get_metric_history(r.info.run_id, "val_acc"), key=lambda m: m.step)]
            for r in runs if r.data.tags.get(layout.KIND) == "trial"}


def test_members_are_the_single_trials_of_the_same_numbers(tmp_path, mlflow_server, ray_head):
    one, one_runs, client = study(tmp_path, mlflow_server, ray_head, "single", sampler="random", pruner="none")
    pop, pop_runs, _ = study(tmp_path, mlflow_server, ray_head, "popul", sampler="random", pruner="none", population=4)
    for label in one:
        assert [t.params for t in pop[label]] == [t.params for t in one[label]]
        assert [t.state for t in pop[label]] == [optuna.trial.TrialState.COMPLETE] * 4
    single, members = curves(client, one_runs), curves(client, pop_runs)
    assert set(members) == set(single) and len(members) == 8  # one run per member, found by its trial key
    for key, curve in members.items():
        assert len(curve) == 3 and all(abs(a - b) <= 0.005 for a, b in zip(curve, single[key], strict=True)), key
    trial_runs = [r for r in pop_runs if r.data.tags.get(layout.KIND) == "trial"]
    assert {r.info.status for r in trial_runs} == {"FINISHED"} and {r.data.tags[layout.STATUS] for r in trial_runs} == {"completed"}
    assert all(r.info.status != "RUNNING" for r in pop_runs)
    # one Tune trial trained the four members of an activation
    assert len({r.data.tags[layout.TUNE_TRIAL_ID] for r in trial_runs}) == 2


def test_tpe_populations_give_the_same_configurations_at_any_concurrency(tmp_path, mlflow_server, ray_head):
    search = {"sampler": "tpe", "pruner": "asha", "grace_epochs": 1, "population": 2}
    one, one_runs, _ = study(tmp_path, mlflow_server, ray_head, "conc1", max_concurrent_trials=1, **search)
    two, two_runs, _ = study(tmp_path, mlflow_server, ray_head, "conc2", max_concurrent_trials=2, **search)
    for label in one:
        assert [(t.params, t.state, t.user_attrs["actstudy"]) for t in one[label]] == \
               [(t.params, t.state, t.user_attrs["actstudy"]) for t in two[label]]
    assert any(t.state == optuna.trial.TrialState.PRUNED for ts in one.values() for t in ts)  # halving did prune
    for runs in (one_runs, two_runs):
        pruned = [r for r in runs if r.data.tags.get(layout.STATUS) == "pruned"]
        assert pruned and {r.info.status for r in pruned} == {"KILLED"}
        assert all(r.info.status != "RUNNING" for r in runs)
