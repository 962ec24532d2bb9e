"""Whole studies on a real Ray head with a real `mlflow server`: the MLflow layout (contract),
divergence handling, and resume after the driver is killed mid-study."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from mlflow.tracking import MlflowClient

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
    assert sorted(results["ranking"]) == sorted(spec.labels)
    assert results["best_activation"] == results["ranking"][0]

    c = MlflowClient(mlflow_server.url)
    exp = c.get_experiment_by_name("layout-layout1")
    parent = c.get_run(results["mlflow"]["parent_run_id"])
    assert parent.info.experiment_id == exp.experiment_id and parent.info.status == "FINISHED"
    assert parent.data.tags["best_activation"] == results["best_activation"]
    assert {"results.json", "ranking.md", "ranking.csv", "spec.json", "plots"} <= artifacts(c, parent.info.run_id)
    plots = artifacts(c, parent.info.run_id, "plots")
    assert {"plots/test_acc_ci.png", "plots/best_val_curves.png"} <= plots
    assert any(p.startswith("plots/optuna_history_") for p in plots)

    acts = children(c, exp.experiment_id, parent.info.run_id)
    assert {r.data.tags["activation"] for r in acts} == set(spec.labels)
    for act in acts:
        label = act.data.tags["activation"]
        assert act.info.status == "FINISHED" and "best_lr" in act.data.params
        assert act.data.metrics["test_acc_mean"] == pytest.approx(results["activations"][label]["test_acc"]["mean"])
        trials = children(c, exp.experiment_id, act.info.run_id, "trial")
        confirms = children(c, exp.experiment_id, act.info.run_id, "confirm")
        assert len(trials) == 2 and len(confirms) == 2
        for run in trials + confirms:
            assert run.info.status == "FINISHED"
            assert [m.step for m in c.get_metric_history(run.info.run_id, "val_acc")] == [1, 2]
            assert {"train_loss", "val_loss", "lr", "epoch_time"} <= set(run.data.metrics)
        assert all("test_acc" in r.data.metrics for r in confirms)
        assert {int(r.data.params["seed"]) for r in confirms} == set(results["seeds"])

        run = trials[0]
        if label.startswith("pwlu"):
            keys = set(run.data.metrics)
            assert {"pwlu.net.2.left_bound", "pwlu.net.2.right_bound", "pwlu.net.2.left_slope", "pwlu.net.2.right_slope",
                    "pwlu.net.4.left_bound"} <= keys
            assert {"evolution/net.2.json", "evolution/net.2.png", "evolution/net.4.json"} <= artifacts(c, run.info.run_id, "evolution")
            history = c.load_dict(f"runs:/{run.info.run_id}/evolution/net.2.json") if hasattr(c, "load_dict") else None
            if history is not None:
                assert [h["epoch"] for h in history["history"]] == [1, 2]
        if label == "lslu":
            assert {"lslu.net.2.theta_0", "lslu.net.2.omega_2", "lslu.net.4.theta_1"} <= set(run.data.metrics)
            assert "evolution/net.2.png" in artifacts(c, run.info.run_id, "evolution")


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


def lose_an_unfinished_trial(search_dir, finished_in_mlflow: set[str]) -> str:
    """Drop one trial that had not finished from Tune's newest experiment state, leaving the searcher's state
    as it is: what a driver killed while Tune's background thread copied the two to storage can leave behind
    (a trial created after the last copy). A pending trial if there is one; never one whose MLflow run had
    already finished (Tune may not have recorded that end yet, but a trial missing from a copy is a new one)."""
    path = max(search_dir.glob("experiment_state-*.json"))
    state = json.loads(path.read_text())
    trials = [(i, json.loads(trial)) for i, (trial, _meta) in enumerate(state["trial_data"])]
    candidates = [(t["status"] != "PENDING", i, t["trial_id"]) for i, t in trials
                  if t["status"] != "TERMINATED" and t["trial_id"] not in finished_in_mlflow]
    if not candidates:
        pytest.fail(f"every trial had finished when the driver was killed: {[(t['trial_id'], t['status']) for _, t in trials]}")
    _, i, trial_id = min(candidates)
    del state["trial_data"][i]
    path.write_text(json.dumps(state))
    return trial_id


@pytest.mark.parametrize("lose_a_trial", [False, True], ids=["consistent-state", "state-lost-a-trial"])
def test_resume_after_the_driver_is_killed(ray_head, mlflow_server, tmp_path, lose_a_trial):
    study_id = "res2" if lose_a_trial else "res1"  # one MLflow server for the session: one experiment each
    spec = {"name": "resume", "activations": ["relu", "telu"],
            "search": {"trials_per_activation": 4, "pruner": "none", "sampler": "random"},
            "model": {"name": "mlp", "hidden": [512, 512]},  # a few seconds a trial: time to kill mid-search
            "training": {"epochs": 3, "batch_size": 32}, "confirm": {"seeds": 1}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    cmd = [sys.executable, "-m", "service.cli", "run", str(tmp_path / "spec.yaml"), "--ray-address", ray_head.address,
           "--mlflow-uri", mlflow_server.url, "--study-id", study_id, "--data-dir", str(tmp_path)]
    env = {**os.environ, "COLUMNS": "120"}
    c = MlflowClient(mlflow_server.url)

    def finished_trials():
        exp = c.get_experiment_by_name(f"resume-{study_id}")
        if exp is None:
            return []
        return c.search_runs([exp.experiment_id], "tags.`actstudy.kind` = 'trial' AND attributes.status = 'FINISHED'")

    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while len(finished_trials()) < 3 and time.monotonic() < deadline:
        assert first.poll() is None, "the driver ended before it could be killed"
        time.sleep(0.5)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    # The trial actors live in the cluster, not in the killed process group: Ray ends them once it sees the
    # driver gone, and one may end its trial first. Read what finished once that has settled.
    done_before, deadline = None, time.monotonic() + 30
    while time.monotonic() < deadline:
        now = {r.data.tags["actstudy.trial_id"] for r in finished_trials()}
        if now == done_before:
            break
        done_before = now
        time.sleep(3)
    assert 3 <= len(done_before) < 8
    lost = lose_an_unfinished_trial(tmp_path / "studies" / study_id / "tune" / "search", done_before) if lose_a_trial else None

    second = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "ranking by test accuracy" in second.stdout

    runs = finished_trials()
    ids = [r.data.tags["actstudy.trial_id"] for r in runs]
    exp = c.get_experiment_by_name(f"resume-{study_id}")
    everything = [(r.data.tags.get("actstudy.trial_id"), r.info.status) for r in c.search_runs([exp.experiment_id], "tags.`actstudy.kind` = 'trial'")]
    assert len(set(ids)) == 8, (everything, second.stdout[-2000:])  # every trial of the budget finished once ...
    assert len(ids) == 8  # ... and no finished trial ran again
    assert done_before <= set(ids)
    assert lost not in ids  # its place in the budget went to a new trial
    if lost:
        assert f"1 lost trial(s) to run again ['{lost}']" in second.stdout + second.stderr
    exp = c.get_experiment_by_name(f"resume-{study_id}")
    stale = c.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")
    assert stale == []
