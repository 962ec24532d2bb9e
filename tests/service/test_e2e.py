"""End to end with real processes, on SQLite and on PostgreSQL: `actstudy serve` (uvicorn) as a subprocess,
the session's Ray head (token auth) and `mlflow server`. A small study (relu, telu, pwlu, lslu; two
trials each; two epochs; two confirmation seeds) goes over HTTP to `succeeded` while the API is restarted
in the middle of it; its results and MLflow runs are read back. A second study is cancelled while running.

    .venv/bin/python -m pytest tests/service/test_e2e.py -q      # ~6 min on 2 cores (each study ~1-2 min)
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from studies.local import free_port
from tests.utils.factories import SMALL_SPEC, auth, spec
from tests.utils.serve import ServeProcess

pytestmark = pytest.mark.slow

SMALL_LABELS = {"relu", "telu", "pwlu(stats_steps=10)", "lslu"}


Stack = ServeProcess  # API only here: the session's Ray head and MLflow server are given to it


def jobs_client(ray_head):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(ray_head.dashboard_url, headers={"Authorization": f"Bearer {ray_head.token}"})


@pytest.fixture
def stack(db_url, tmp_path, ray_jobs, mlflow_server) -> Stack:
    data_dir = tmp_path / "data"
    env = {
        **os.environ,
        "ACTSTUDY_DATABASE_URL": db_url,
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "ACTSTUDY_RAY_JOBS_URL": ray_jobs.dashboard_url,
        "ACTSTUDY_RAY_AUTH_TOKEN": ray_jobs.token,
        "ACTSTUDY_ADMIN_TOKEN": f"admin-{os.urandom(16).hex()}",
        "ACTSTUDY_DATA_DIR": str(data_dir),
        "ACTSTUDY_RECONCILE_INTERVAL_S": "1",
        "PYTHONUNBUFFERED": "1",
    }
    s = Stack(env=env, data_dir=data_dir, log=tmp_path / "serve.log", port=free_port(), ray_head=ray_jobs)
    s.start()
    yield s
    s.stop()
    s.http.close()


@pytest.mark.timeout(1200)  # a shared 2-core machine can be several times slower than a quiet one
def test_a_small_study_over_http_survives_an_api_restart(stack, mlflow_server, ray_head):
    # `serve` with every service given starts only the API.
    banner = stack.log.read_text()
    assert "starting mlflow" not in banner and "starting a local Ray head" not in banner
    assert f"MLflow UI        {mlflow_server.url}" in banner and f"Ray dashboard    {ray_head.dashboard_url}" in banner

    alice_token, bob_token = stack.mint("alice"), stack.mint("bob")
    alice = auth(alice_token)
    r = stack.http.post("/api/v1/studies", json=SMALL_SPEC, headers=alice)
    assert r.status_code == 201, r.text
    study_id = r.json()["id"]
    assert stack.http.get(f"/api/v1/studies/{study_id}", headers=auth(bob_token)).status_code == 404

    def trials_done(study: dict) -> int:
        phases = (study.get("progress") or {}).get("phases", {})
        return sum(a["done"] for p in phases.values() for a in p["activations"].values())

    # Mid-study: running, with some trials finished; then the API goes away and comes back.
    stack.wait_for(study_id, alice, lambda s: s["status"] == "running" and trials_done(s) >= 1, 240, "running with progress")
    assert stack.stop() == 0
    assert jobs_client(ray_head).get_job_status(f"actstudy-{study_id}-1") in ("RUNNING", "SUCCEEDED")
    stack.start()

    study = stack.wait_for(study_id, alice, lambda s: s["status"] == "succeeded", 420, "succeeded")
    assert study["attempts"] == 1  # the driver was never relaunched: the restart touched only the API
    assert study["error"] is None and study["started_at"] and study["finished_at"]
    progress = study["progress"]
    assert set(progress["phases"]) == {"search", "confirm"}
    for phase, per_trial in (("search", 2), ("confirm", 2)):
        acts = progress["phases"][phase]["activations"]
        assert set(acts) == SMALL_LABELS
        assert all(a["done"] == a["total"] == per_trial for a in acts.values()), acts

    r = stack.http.get(f"/api/v1/studies/{study_id}/results", headers=alice)
    assert r.status_code == 200, r.text
    results = r.json()
    assert set(results["ranking"]) == SMALL_LABELS and results["best_activation"] == results["ranking"][0]
    assert results["baseline"] == "relu"
    for label, a in results["activations"].items():
        t = a["test_acc"]
        assert t["n"] == 2 and len(t["values"]) == 2 and 0 < t["mean"] <= 1
        assert t["ci95"][0] <= t["mean"] <= t["ci95"][1] and t["std"] >= 0
        assert set(a["best_params"]) == {"lr", "l2"} and a["trials"]["completed"] == 2
        if label == "relu":
            assert a["vs_baseline"] is None
        else:
            assert {"mean_diff", "p_value", "p_holm", "significant", "n_pairs"} <= set(a["vs_baseline"])
    assert study["links"]["mlflow"] == results["mlflow"]["parent_run_url"]

    # The CLI reads the same thing.
    cli = stack.cli("results", study_id, "--json", token=alice_token)
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["ranking"] == results["ranking"]

    _check_mlflow(mlflow_server.url, study_id, results)

    # No secret reached the API's log or the driver's.
    logs = stack.log.read_text() + jobs_client(ray_head).get_job_logs(f"actstudy-{study_id}-1")
    for secret in (ray_head.token, stack.env["ACTSTUDY_ADMIN_TOKEN"], alice_token, bob_token):
        assert secret not in logs


def _check_mlflow(uri: str, study_id: str, results: dict) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(f"e2e-small-{study_id}")
    assert exp is not None and exp.experiment_id == results["mlflow"]["experiment_id"]
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    by_role = lambda role: [r for r in runs if r.data.tags.get("actstudy.role") == role]  # noqa: E731
    by_kind = lambda kind: [r for r in runs if r.data.tags.get("actstudy.kind") == kind]  # noqa: E731

    [parent] = by_role("study")
    assert parent.info.run_id == results["mlflow"]["parent_run_id"]
    assert parent.info.status == "FINISHED" and parent.data.tags["actstudy.status"] == "succeeded"
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"results.json", "ranking.md", "ranking.csv", "plots"}
    stored = json.loads(Path(client.download_artifacts(parent.info.run_id, "results.json")).read_text())
    assert stored["ranking"] == results["ranking"]

    children = by_role("activation")
    assert {r.data.tags["activation"] for r in children} == SMALL_LABELS
    assert all(r.info.status == "FINISHED" and r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children)
    child_of = {r.data.tags["activation"]: r.info.run_id for r in children}

    # A trial Tune retried (a worker lost on a busy machine) leaves its first run tagged `retried_as`.
    trials = [r for r in by_kind("trial") if "actstudy.retried_as" not in r.data.tags]
    assert len(trials) == 8 and all(r.info.status == "FINISHED" for r in trials)
    for run in trials:
        label = run.data.tags["activation"]
        assert run.data.tags["mlflow.parentRunId"] == child_of[label]
        history = client.get_metric_history(run.info.run_id, "val_acc")
        assert sorted(m.step for m in history) == [1, 2], (label, history)
        keys = set(run.data.metrics)
        assert {"train_loss", "val_loss", "val_acc"} <= keys
        if label.startswith("pwlu"):
            assert any(k.startswith("pwlu.") and k.endswith(".left_bound") for k in keys), keys
        if label == "lslu":
            assert any(k.startswith("lslu.") and ".theta_" in k for k in keys), keys
    confirms = [r for r in by_kind("confirm") if "actstudy.retried_as" not in r.data.tags]
    assert len(confirms) == 8 and all("test_acc" in r.data.metrics for r in confirms)


def test_cancel_a_running_study(stack, ray_head):
    token = stack.mint("carol")
    headers = auth(token)
    long = spec(SMALL_SPEC, name="to-cancel", activations=["relu", "telu"],
                search={"trials_per_activation": 20}, training={"epochs": 50, "batch_size": 128})
    r = stack.http.post("/api/v1/studies", json=long, headers=headers)
    assert r.status_code == 201, r.text
    study_id, job_id = r.json()["id"], r.json()["ray_job_id"]

    def trial_running(study: dict) -> bool:
        phases = (study.get("progress") or {}).get("phases", {})
        return study["status"] == "running" and any(a["running"] or a["done"] for p in phases.values()
                                                     for a in p["activations"].values())

    stack.wait_for(study_id, headers, trial_running, 240, "a running trial")
    r = stack.http.post(f"/api/v1/studies/{study_id}/cancel", headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] in ("cancelling", "cancelled") and r.json()["error"] == "cancelled by carol"

    jobs = jobs_client(ray_head)
    deadline = time.monotonic() + 60
    while (status := jobs.get_job_status(job_id)) not in ("STOPPED", "SUCCEEDED", "FAILED") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert status == "STOPPED", jobs.get_job_logs(job_id)[-3000:]

    time.sleep(4)  # the reconciler (every 1 s) has seen the stopped job several times
    study = stack.study(study_id, headers)
    assert study["status"] == "cancelled" and study["error"] == "cancelled by carol" and study["attempts"] == 1
    again = stack.http.post(f"/api/v1/studies/{study_id}/cancel", headers=headers)
    assert again.status_code == 409
    assert stack.http.get(f"/api/v1/studies/{study_id}/results", headers=headers).status_code == 409


FORMULA_MISH = {"name": "formula", "expr": "x * tanh(softplus(x))"}
FORMULA_BETA = {"name": "formula", "expr": "x * sigmoid(beta * x)", "label": "swish-beta",
                "params": {"beta": {"init": 1.0, "learnable": True, "per_channel": True}}}


@pytest.mark.timeout(900)
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the records path is the same as above: one database is enough
def test_a_study_of_formulas_over_http_runs_and_mlflow_shows_them(stack, mlflow_server):
    """relu, telu, Mish written as a formula and a swish with a learnable β per channel, compared over REST."""
    headers = auth(stack.mint("dana"))
    body = spec(SMALL_SPEC, name="e2e-formula", activations=["relu", "telu", FORMULA_MISH, FORMULA_BETA])
    r = stack.http.post("/api/v1/studies", json=body, headers=headers)
    assert r.status_code == 201, r.text
    study_id = r.json()["id"]
    study = stack.wait_for(study_id, headers, lambda s: s["status"] in ("succeeded", "failed"), 600, "finished")
    assert study["status"] == "succeeded", study["error"]
    labels = {"relu", "telu", "x * tanh(softplus(x))", "swish-beta"}
    results = stack.http.get(f"/api/v1/studies/{study_id}/results", headers=headers).json()
    assert set(results["ranking"]) == labels and all(a["test_acc"]["n"] == 2 for a in results["activations"].values())

    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server.url)
    exp = client.get_experiment_by_name(f"e2e-formula-{study_id}")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    act_runs = {r.data.tags["activation"]: r for r in runs if r.data.tags.get("actstudy.role") == "activation"}
    assert set(act_runs) == labels
    assert act_runs["x * tanh(softplus(x))"].data.params["activation.expr"] == "x * tanh(softplus(x))"
    beta_run = act_runs["swish-beta"]
    assert beta_run.data.params["activation"] == "formula" and beta_run.data.params["activation.expr"] == "x * sigmoid(beta * x)"
    assert "Formula: `x * sigmoid(beta * x)`; beta = 1 (learnable, per channel)." in beta_run.data.tags["mlflow.note.content"]
    assert {"evolution/net.2.png", "evolution/net.2.json", "evolution/net.4.png"} <= {
        a.path for a in client.list_artifacts(beta_run.info.run_id, "evolution")}
    trials = [r for r in runs if r.data.tags.get("actstudy.kind") == "trial" and r.data.tags.get("activation") == "swish-beta"
              and "actstudy.retried_as" not in r.data.tags]
    assert len(trials) == 2
    for run in trials:  # the learnable β per layer, every epoch
        for layer in ("net.2", "net.4"):
            history = client.get_metric_history(run.info.run_id, f"formula.{layer}.beta")
            assert sorted(m.step for m in history) == [1, 2], history
            assert all(m.value != 1.0 for m in history)  # it trained away from its init
    mish_trials = [r for r in runs if r.data.tags.get("actstudy.kind") == "trial" and r.data.tags.get("activation") == "x * tanh(softplus(x))"]
    assert mish_trials and not any(k.startswith("formula.") for r in mish_trials for k in r.data.metrics)  # nothing learns there
