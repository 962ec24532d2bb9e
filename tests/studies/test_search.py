"""Fairness of the search, without a cluster: one Optuna study per activation, pruning groups per
activation, seeded and reproducible configurations, diverged → FAIL and pruned → PRUNED in Optuna."""

import optuna
import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from studies.search import PerActivationScheduler, PerActivationSearcher, make_scheduler
from studies.spec import parse_spec


def spec(**search):
    return parse_spec({"activations": ["relu", "telu", "pwlu"], "training": {"epochs": 4},
                       "search": {"trials_per_activation": 3, **search}, "seed": 7})


def drive(searcher, value_of, first=0):
    """Run every suggested trial to completion, one at a time; returns the configs in order."""
    configs = []
    n = first
    while True:
        tid = f"t{n}"
        cfg = searcher.suggest(tid)
        if cfg == Searcher.FINISHED:
            return configs
        assert cfg is not None
        configs.append(cfg)
        searcher.on_trial_result(tid, {"val_acc": value_of(cfg) / 2, "training_iteration": 1})
        searcher.on_trial_complete(tid, {"val_acc": value_of(cfg), "training_iteration": 4})
        n += 1


def test_budget_and_round_robin():
    s = PerActivationSearcher(spec())
    configs = drive(s, lambda c: 0.5)
    labels = [c["label"] for c in configs]
    assert labels == ["relu", "telu", "pwlu"] * 3
    assert all(set(c) >= {"label", "activation", "activation_params", "lr", "l2"} for c in configs)
    assert all(1e-4 <= c["lr"] <= 1e-1 and 1e-6 <= c["l2"] <= 1e-2 for c in configs)


def test_each_activation_has_its_own_optuna_study():
    s = PerActivationSearcher(spec())
    drive(s, lambda c: {"relu": 0.9, "telu": 0.5, "pwlu": 0.1}[c["label"]])
    studies = s.studies()
    assert set(studies) == {"relu", "telu", "pwlu"}
    assert len({id(v) for v in studies.values()}) == 3
    for label, study in studies.items():
        assert len(study.trials) == 3  # never sees another activation's trials
        expected = {"relu": 0.9, "telu": 0.5, "pwlu": 0.1}[label]
        assert all(t.value == expected for t in study.trials)


def test_same_seed_same_configurations_and_seed_matters():
    a = drive(PerActivationSearcher(spec(sampler="tpe")), lambda c: c["lr"])
    b = drive(PerActivationSearcher(spec(sampler="tpe")), lambda c: c["lr"])
    assert a == b
    other = parse_spec({**spec().model_dump(mode="json"), "seed": 8})
    c = drive(PerActivationSearcher(other), lambda c: c["lr"])
    assert [x["lr"] for x in a] != [x["lr"] for x in c]


def test_a_neighbour_does_not_change_an_activations_suggestions():
    """relu's configurations do not depend on which other activations share the study."""
    alone = parse_spec({"activations": ["relu"], "search": {"trials_per_activation": 3}, "training": {"epochs": 4}, "seed": 7})
    a = [c for c in drive(PerActivationSearcher(alone), lambda c: c["lr"]) if c["label"] == "relu"]
    b = [c for c in drive(PerActivationSearcher(spec()), lambda c: c["lr"]) if c["label"] == "relu"]
    assert a == b


def test_concurrency_per_activation_and_states_told_to_optuna():
    s = PerActivationSearcher(spec())
    first = [s.suggest(f"t{i}") for i in range(3)]
    assert [c["label"] for c in first] == ["relu", "telu", "pwlu"]
    assert s.suggest("t3") is None  # every activation has its one trial running
    s.on_trial_complete("t0", {"val_acc": 0.1, "diverged": True, "training_iteration": 2})
    s.on_trial_complete("t1", {"val_acc": 0.4, "training_iteration": 2})  # stopped early by the scheduler
    s.on_trial_complete("t2", None, error=True)
    states = {label: study.trials[0].state for label, study in s.studies().items()}
    assert states == {"relu": optuna.trial.TrialState.FAIL, "telu": optuna.trial.TrialState.PRUNED,
                      "pwlu": optuna.trial.TrialState.FAIL}
    assert s.outcomes == {"t0": "diverged", "t1": "pruned", "t2": "error"}


def test_grid_sampler_and_save_restore(tmp_path):
    s = PerActivationSearcher(spec(sampler="grid", trials_per_activation=4))
    first = [s.suggest(f"t{i}") for i in range(3)]
    s.save(str(tmp_path / "searcher.pkl"))
    restored = PerActivationSearcher(spec(sampler="grid", trials_per_activation=4))
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored.started == s.started and restored.running == s.running
    grid = (1e-4, 1e-1)  # 4 trials → a 2 × 2 grid over each range's ends
    assert all(any(c["lr"] == pytest.approx(g) for g in grid) for c in first)


def _trial(label, tid):
    t = Trial("fn", config={"label": label}, stub=True, trial_id=tid)
    return t


def test_pruning_compares_trials_of_the_same_activation_only():
    """A slow learnable activation is not cut against a strong activation's curve."""
    sched = make_scheduler(parse_spec({"activations": ["relu", "pwlu"], "training": {"epochs": 9},
                                       "search": {"pruner": "asha", "grace_epochs": 1}}))
    assert isinstance(sched, PerActivationScheduler)
    strong = [_trial("relu", f"r{i}") for i in range(3)]
    slow = _trial("pwlu", "p0")
    for t in [*strong, slow]:
        sched.on_trial_add(None, t)
    for t in strong:
        assert sched.on_trial_result(None, t, {"training_iteration": 1, "val_acc": 0.9}) == TrialScheduler.CONTINUE
    # pwlu's first result is far below relu's, but it is alone in its group: it continues.
    assert sched.on_trial_result(None, slow, {"training_iteration": 1, "val_acc": 0.1}) == TrialScheduler.CONTINUE
    # within relu's group, a weak trial at the rung is stopped.
    weak = _trial("relu", "r9")
    sched.on_trial_add(None, weak)
    assert sched.on_trial_result(None, weak, {"training_iteration": 1, "val_acc": 0.2}) == TrialScheduler.STOP
    assert set(sched.groups) == {"relu", "pwlu"}


def test_diverged_result_stops_the_trial():
    sched = make_scheduler(spec(pruner="median"))
    t = _trial("relu", "x")
    sched.on_trial_add(None, t)
    assert sched.on_trial_result(None, t, {"training_iteration": 1, "val_acc": 0.1, "diverged": True}) == TrialScheduler.STOP


@pytest.mark.parametrize("pruner", ["asha", "median"])
def test_scheduler_kinds(pruner):
    assert isinstance(make_scheduler(spec(pruner=pruner)), PerActivationScheduler)
    assert not isinstance(make_scheduler(spec(pruner="none")), PerActivationScheduler)


def _restored(tid, cfg, status, last_result=None):
    t = Trial("fn", config=dict(cfg), stub=True, trial_id=tid)
    t.set_status(status)
    if last_result:
        t.run_metadata.last_result = last_result
    return t


def test_reconcile_reopens_trials_a_restore_lost():
    """The searcher's state was saved after Tune's trial list: t2 and t3 were started but Tune lost them."""
    s = PerActivationSearcher(spec())
    c = {f"t{i}": s.suggest(f"t{i}") for i in range(3)}
    s.on_trial_complete("t0", {"val_acc": 0.5, "training_iteration": 4})
    c["t3"] = s.suggest("t3")
    s.reconcile([_restored("t0", c["t0"], "TERMINATED", {"val_acc": 0.5, "training_iteration": 4}),
                 _restored("t1", c["t1"], "PENDING")])
    assert s.started == {"relu": 1, "telu": 1, "pwlu": 0} and s.running == {"t1": "telu"}
    assert s.outcomes["t2"] == s.outcomes["t3"] == "lost"
    states = {label: [t.state for t in study.trials] for label, study in s.studies().items()}
    assert states["pwlu"] == [optuna.trial.TrialState.FAIL]  # told, so Optuna does not wait for it
    assert states["relu"] == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL]
    # t1 still runs, so the search is not over; what it lost is started again.
    assert s.suggest("t4")["label"] == "pwlu"
    s.on_trial_complete("t1", {"val_acc": 0.4, "training_iteration": 4})
    s.on_trial_complete("t4", {"val_acc": 0.4, "training_iteration": 4})
    rest = drive(s, lambda c: 0.5, first=5)
    assert sum(1 for c in rest if c["label"] == "relu") == 2 and s.started == {"relu": 3, "telu": 3, "pwlu": 3}


def test_reconcile_adopts_trials_the_searcher_never_saw():
    """The searcher's state was saved before Tune's: t1 exists (and t0 finished) only in Tune's trials."""
    s = PerActivationSearcher(spec())
    t0 = s.suggest("t0")
    t1 = {"label": "telu", "activation": "telu", "activation_params": {}, "lr": 0.003, "l2": 1e-4}
    s.reconcile([_restored("t0", t0, "TERMINATED", {"val_acc": 0.7, "training_iteration": 4}),
                 _restored("t1", t1, "RUNNING")])
    assert s.running == {"t1": "telu"} and s.started == {"relu": 1, "telu": 1, "pwlu": 0}
    telu = s.studies()["telu"].trials
    assert len(telu) == 1 and telu[0].params == {"lr": 0.003, "l2": 1e-4}
    assert s.studies()["relu"].trials[0].value == 0.7
    s.on_trial_complete("t1", {"val_acc": 0.6, "training_iteration": 4})
    assert s.studies()["telu"].trials[0].value == 0.6


def test_the_search_ends_only_when_nothing_runs():
    s = PerActivationSearcher(parse_spec({"activations": ["relu"], "search": {"trials_per_activation": 1}}))
    assert s.suggest("t0")["label"] == "relu"
    assert s.suggest("t1") is None  # budget spent, but t0 may yet be lost in a restore
    s.on_trial_complete("t0", {"val_acc": 0.5, "training_iteration": 1})
    assert s.suggest("t1") == Searcher.FINISHED
