"""Whole studies on a real Ray head with a real `mlflow server`: the MLflow layout (contract) and
divergence handling. Killing the driver is tests/faults/test_driver_kill.py."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from studies import report
from studies.mlflow.layout import sanitize
from studies.runner import run_study
from studies.spec import parse_spec

pytestmark = pytest.mark.slow


def children(client, exp_id, parent_id, kind=None):
    filt = f"tags.`mlflow.parentRunId` = '{parent_id}'"
    if kind:
        filt += f" AND tags.`actstudy.kind` = '{kind}'"
    return client.search_runs([exp_id], filt, max_results=1000)


def artifacts(client, run_id, path=None):
    return {a.path for a in client.list_artifacts(run_id, path)}


def test_study_layout_in_mlflow(ray_head, mlflow_server, tmp_path):
    spec = parse_spec({
        "name": "layout", "activations": ["relu", {"name": "pwlu", "stats_steps": 5}, "lslu"],
        "search": {"trials_per_activation": 2, "pruner": "none", "sampler": "random"},
        "training": {"epochs": 2, "batch_size": 256}, "confirm": {"seeds": 2},
    })
    results = run_study(spec, study_id="layout1", storage_dir=tmp_path, mlflow_uri=mlflow_server.url, ray_address=ray_head.address)
    assert sorted(results.ranking) == sorted(spec.labels)
    assert results.best_activation == results.ranking[0]

    c = MlflowClient(mlflow_server.url)
    exp = c.get_experiment_by_name("layout-layout1")
    parent = c.get_run(results.mlflow.parent_run_id)
    assert parent.info.experiment_id == exp.experiment_id and parent.info.status == "FINISHED"
    assert parent.data.tags["best_activation"] == results.best_activation
    assert {"results.json", "ranking.md", "ranking.csv", "spec.json", "plots"} <= artifacts(c, parent.info.run_id)
    plots = artifacts(c, parent.info.run_id, "plots")
    assert {"plots/test_acc_ci.png", "plots/best_val_curves.png"} == plots
    # MLflow's UI opens the experiment on its training runs, and the parent's Overview gives the answer.
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    note = parent.data.tags["mlflow.note.content"]
    assert f"{results.best_activation} ranks first" in note and report.verdict(results) in note
    assert report.ranking_markdown(results) in note and "get-artifact?path=plots/test_acc_ci.png" in note
    assert "```yaml" in note and "trials_per_activation: 2" in note
    for label, a in results.activations.items():
        key = sanitize(label)
        assert parent.data.metrics[f"test_acc_mean/{key}"] == pytest.approx(a.test_acc.mean)
        assert parent.data.metrics[f"test_acc_ci95_low/{key}"] == pytest.approx(a.test_acc.ci95[0])
        assert parent.data.metrics[f"best_val_acc/{key}"] == pytest.approx(a.best_val_acc)
    assert f"p_holm/{sanitize(results.baseline)}" not in parent.data.metrics  # no test against itself

    acts = children(c, exp.experiment_id, parent.info.run_id)
    assert {r.data.tags["activation"] for r in acts} == set(spec.labels)
    for act in acts:
        label = act.data.tags["activation"]
        assert act.info.status == "FINISHED"
        best = results.activations[label].best_params
        params = act.data.params
        assert float(params["best_lr"]) == pytest.approx(best.lr) and float(params["best_l2"]) == pytest.approx(best.l2)
        assert params["activation"] == spec.activation(label).name
        assert act.data.metrics["test_acc_mean"] == pytest.approx(results.activations[label].test_acc.mean)
        per_seed = c.get_metric_history(act.info.run_id, "test_acc")
        assert sorted(m.step for m in per_seed) == results.seeds
        assert sorted(m.value for m in per_seed) == sorted(results.activations[label].test_acc.values)
        assert "plots/optuna_history.png" in artifacts(c, act.info.run_id, "plots")
        trials = children(c, exp.experiment_id, act.info.run_id, "trial")
        confirms = children(c, exp.experiment_id, act.info.run_id, "confirm")
        assert len(trials) == 2 and len(confirms) == 2
        for run in trials + confirms:
            assert run.info.status == "FINISHED"
            assert [m.step for m in c.get_metric_history(run.info.run_id, "val_acc")] == [1, 2]
            assert {"train_loss", "val_loss", "lr", "epoch_time"} <= set(run.data.metrics)
        assert all("test_acc" in r.data.metrics for r in confirms)
        assert {int(r.data.params["seed"]) for r in confirms} == set(results.seeds)

        run = trials[0]
        if label.startswith("pwlu"):
            keys = set(run.data.metrics)
            assert {"pwlu.net.2.left_bound", "pwlu.net.2.right_bound", "pwlu.net.2.left_slope", "pwlu.net.2.right_slope",
                    "pwlu.net.4.left_bound"} <= keys
            assert {"evolution/net.2.json", "evolution/net.2.png", "evolution/net.4.json"} <= artifacts(c, run.info.run_id, "evolution")
            assert params["activation.segments"] == "16" and params["activation.stats_steps"] == "5"
            history = c.load_dict(f"runs:/{run.info.run_id}/evolution/net.2.json") if hasattr(c, "load_dict") else None
            if history is not None:
                assert [h["epoch"] for h in history["history"]] == [1, 2]
        if label == "lslu":
            assert {"lslu.net.2.theta_0", "lslu.net.2.omega_2", "lslu.net.4.theta_1"} <= set(run.data.metrics)
            assert "evolution/net.2.png" in artifacts(c, run.info.run_id, "evolution")
        if label != "relu":  # the best trial's evolution, on the activation run
            best_run = act.data.tags["actstudy.best_trial_run"]
            assert c.get_run(best_run).data.tags["actstudy.trial_key"] in {t.data.tags["actstudy.trial_key"] for t in trials}
            assert {"evolution/net.2.png", "evolution/net.2.json"} <= artifacts(c, act.info.run_id, "evolution")


def test_diverged_trials_are_kept_and_failed(ray_head, mlflow_server, tmp_path):
    spec = parse_spec({
        "name": "diverge", "activations": ["relu"],
        "search": {"trials_per_activation": 2, "pruner": "none", "lr": {"low": 1e6, "high": 1e7}},
        "training": {"epochs": 3, "optimizer": "sgd"}, "confirm": {"seeds": 1},
    })
    with pytest.raises(RuntimeError, match="no activation finished"):
        run_study(spec, study_id="div1", storage_dir=tmp_path, mlflow_uri=mlflow_server.url, ray_address=ray_head.address)
    c = MlflowClient(mlflow_server.url)
    exp = c.get_experiment_by_name("diverge-div1")
    trials = c.search_runs([exp.experiment_id], "tags.`actstudy.kind` = 'trial'")
    assert len(trials) == 2
    for run in trials:
        assert run.info.status == "FAILED"
        assert run.data.tags["actstudy.status"] == "diverged"
        assert "non-finite loss at epoch" in run.data.tags["actstudy.failure"]
    parent = c.search_runs([exp.experiment_id], "tags.`actstudy.role` = 'study'")[0]
    assert parent.info.status == "FAILED" and "no activation finished" in parent.data.tags["actstudy.failure"]


@pytest.mark.parametrize("resources, says", [
    ({"cpus_per_trial": 64}, "resources.cpus_per_trial: 64 per trial, but the largest node of the cluster has"),
    ({"gpus_per_trial": 1}, "resources.gpus_per_trial: 1 per trial, but the largest node of the cluster has 0"),
], ids=["cpus", "gpus"])
def test_a_study_no_node_can_place_fails_at_once_saying_why(resources, says, ray_head, mlflow_server, tmp_path):
    """Instead of sitting `running` with no progress forever (and holding its owner's quota slot)."""
    from studies.execution import UnplaceableTrials

    spec = parse_spec({"name": "toolarge", "activations": ["relu"], "resources": resources,
                       "search": {"trials_per_activation": 1}, "training": {"epochs": 1}, "confirm": {"seeds": 1}})
    study_id = f"big-{next(iter(resources))}"
    with pytest.raises(UnplaceableTrials, match=says):
        run_study(spec, study_id=study_id, storage_dir=tmp_path, mlflow_uri=mlflow_server.url, ray_address=ray_head.address)
    c = MlflowClient(mlflow_server.url)
    (parent,) = c.search_runs([c.get_experiment_by_name(f"toolarge-{study_id}").experiment_id], "tags.`actstudy.role` = 'study'")
    assert parent.info.status == "FAILED" and says in parent.data.tags["actstudy.failure"]
