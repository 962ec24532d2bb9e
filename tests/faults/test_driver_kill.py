"""Kill `actstudy run` at five moments of a study, run it again, and compare with an uninterrupted run.

Each case starts the study as a subprocess (its own process group) on the session's Ray head and MLflow
server, SIGKILLs it when the moment comes, and runs the same command again. The second driver continues
from the study's stores (the Optuna journal in the study folder, MLflow, checkpoints by trial key). Then:
every trial of the budget and every confirmation seed finished exactly once in MLflow, each attempt a kill
interrupted ended FAILED and points to its retry, the Optuna studies hold exactly the budget, no run is
left RUNNING, and the results (best settings, test accuracies, ranking) equal the uninterrupted run's.

    .venv/bin/python -m pytest tests/faults/test_driver_kill.py -q -p no:cacheprovider -s   # ~5 min on 2 cores
"""

from __future__ import annotations

import json

import optuna
import pytest

from studies.runner import run_study
from studies.search import OUTCOME, open_storage
from studies.spec import StudyResults, parse_spec
from tests.utils.runs import StudyRunsView, kill_group, start_study, tail, wait_for, write_spec

pytestmark = pytest.mark.slow

EPOCHS = 4
SPEC = {
    "name": "kill",
    "dataset": {"name": "mnist1d"},
    "model": {"name": "mlp", "hidden": [256, 256]},
    "activations": ["relu", "telu"],
    "search": {"trials_per_activation": 3, "pruner": "none", "sampler": "random"},
    # Batches of 8: about a second of training a trial (0.4 s with 32 since trials step with the fused
    # Adam), so that each moment lasts long enough to be caught by polling MLflow.
    "training": {"epochs": EPOCHS, "batch_size": 8},
    "confirm": {"seeds": 2},
}
BUDGET, SEEDS = 6, 4


def _parent(view):
    runs = view.runs(kind=None)
    return next((r for r in runs if r.data.tags.get("actstudy.role") == "study"), None)


# When to kill: a predicate over what the study has written to MLflow so far.
MOMENTS = {
    "first-trial-training": lambda v: len(v.runs("trial", "RUNNING")) > 0 and not v.runs("trial", "FINISHED"),
    "mid-search": lambda v: 2 <= len(v.runs("trial", "FINISHED")) < BUDGET - 1,
    "between-the-phases": lambda v: len(v.runs("trial", "FINISHED")) == BUDGET and not v.runs("confirm"),
    "mid-confirmation": lambda v: 1 <= len(v.runs("confirm", "FINISHED")) < SEEDS,
    "final-write": lambda v: any(r.data.tags.get("actstudy.role") == "activation" and r.info.status == "FINISHED"
                                 for r in v.runs(kind=None)),
}


# The same study with each activation's three trials as one population (search.population): a kill interrupts
# all its members at once, and the next driver trains them again as one.
POPULATION_SPEC = {**SPEC, "name": "killpop", "search": {**SPEC["search"], "population": 3}}


@pytest.fixture(scope="module")
def uninterrupted(ray_head, mlflow_server, tmp_path_factory):
    return run_study(parse_spec(SPEC), study_id="whole", storage_dir=tmp_path_factory.mktemp("whole"),
                     mlflow_uri=mlflow_server.url, ray_address=ray_head.address)


@pytest.fixture(scope="module")
def uninterrupted_populations(ray_head, mlflow_server, tmp_path_factory):
    return run_study(parse_spec(POPULATION_SPEC), study_id="wholepop", storage_dir=tmp_path_factory.mktemp("wholepop"),
                     mlflow_uri=mlflow_server.url, ray_address=ray_head.address)


def comparable(results: StudyResults) -> dict:
    return {"ranking": results.ranking,
            **{label: (a.best_params, a.best_val_acc, a.test_acc.mean, a.trials) for label, a in results.activations.items()}}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_a_killed_driver_continues_where_it_stopped(moment, uninterrupted, ray_head, mlflow_server, tmp_path):
    kill_and_continue(SPEC, f"k{list(MOMENTS).index(moment)}", moment, uninterrupted, ray_head, mlflow_server, tmp_path)


@pytest.mark.parametrize("moment", ["first-trial-training", "mid-search"])
def test_a_killed_driver_continues_populations_exactly_once(moment, uninterrupted_populations, ray_head, mlflow_server, tmp_path):
    kill_and_continue(POPULATION_SPEC, f"p{list(MOMENTS).index(moment)}", moment, uninterrupted_populations, ray_head,
                      mlflow_server, tmp_path)


def kill_and_continue(spec, study_id, moment, uninterrupted, ray_head, mlflow_server, tmp_path):
    view = StudyRunsView(mlflow_server.url, f"{spec['name']}-{study_id}")
    spec_path, log, data = write_spec(tmp_path, spec), tmp_path / "study.log", tmp_path / "data"
    args = dict(ray_address=ray_head.address, mlflow_uri=mlflow_server.url, study_id=study_id, data_dir=data, log=log)
    first = start_study(spec_path, **args)
    try:
        wait_for(lambda: MOMENTS[moment](view), 300, f"the moment '{moment}'", proc=first, log=log, every=0.2)
    finally:
        kill_group(first)
    assert _parent(view).info.status == "RUNNING", "the study ended before the kill"

    second = start_study(spec_path, **args)
    try:
        assert second.wait(420) == 0, tail(log)
    finally:
        kill_group(second)
    assert "ranking by test accuracy" in log.read_text()

    figures = {"search": view.no_loss_report(BUDGET), "confirm": view.no_loss_report(SEEDS, kind="confirm")}
    assert view.runs(kind=None, status="RUNNING") == []
    assert _parent(view).info.status == "FINISHED"

    storage = open_storage(data / "studies" / study_id / "optuna.log")
    for label in spec["activations"]:
        trials = optuna.load_study(study_name=f"{study_id}/{label}", storage=storage).get_trials()
        finished = [t for t in trials if OUTCOME in t.user_attrs]
        assert len(finished) == 3 and all(t.state == optuna.trial.TrialState.COMPLETE for t in finished), trials
        assert all(t.state == optuna.trial.TrialState.FAIL for t in trials if OUTCOME not in t.user_attrs)

    results = StudyResults.model_validate_json(
        open(view.client.download_artifacts(_parent(view).info.run_id, "results.json", str(tmp_path))).read())
    assert comparable(results) == comparable(uninterrupted)
    print("FIGURES", json.dumps({"moment": moment, "population": spec["search"].get("population", 1), **figures}))
