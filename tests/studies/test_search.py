"""Fair per-activation search, without a cluster: one Optuna study per activation in a real storage,
pruning groups per activation, seeded and reproducible configurations, diverged → FAIL and pruned →
PRUNED in Optuna, and a new searcher on the same storage continuing what a dead driver left."""

import optuna
import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from studies.search import PerActivationScheduler, PerActivationSearcher, make_scheduler, open_storage
from studies.spec import parse_spec


def spec(**search):
    return parse_spec({"activations": ["relu", "telu", "pwlu"], "training": {"epochs": 4},
                       "search": {"trials_per_activation": 3, **search}, "seed": 7})


@pytest.fixture
def storage(tmp_path):
    return open_storage(tmp_path / "optuna.log")


def searcher(s, storage, study_id="s"):
    return PerActivationSearcher(s, study_id, storage)


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
        searcher.on_trial_result(tid, {"val_acc": value_of(cfg) / 2, "epoch": 1})
        searcher.on_trial_complete(tid, {"val_acc": value_of(cfg), "epoch": 4})
        n += 1


def params(configs):
    return [(c["label"], c["lr"], c["l2"]) for c in configs]


def test_budget_and_round_robin(storage):
    configs = drive(searcher(spec(), storage), lambda c: 0.5)
    labels = [c["label"] for c in configs]
    assert labels == ["relu", "telu", "pwlu"] * 3
    assert all(set(c) >= {"label", "activation", "activation_params", "lr", "l2", "optuna_trial", "trial_key"} for c in configs)
    assert all(1e-4 <= c["lr"] <= 1e-1 and 1e-6 <= c["l2"] <= 1e-2 for c in configs)
    assert [c["trial_key"] for c in configs[:3]] == ["a0-t0", "a1-t0", "a2-t0"]


def test_each_activation_has_its_own_optuna_study_in_the_storage(storage):
    s = searcher(spec(), storage)
    drive(s, lambda c: {"relu": 0.9, "telu": 0.5, "pwlu": 0.1}[c["label"]])
    assert sorted(x.study_name for x in optuna.get_all_study_summaries(storage)) == ["s/pwlu", "s/relu", "s/telu"]
    for label, study in s.studies().items():
        assert len(study.trials) == 3  # never sees another activation's trials
        expected = {"relu": 0.9, "telu": 0.5, "pwlu": 0.1}[label]
        assert all(t.value == expected for t in study.trials)


def test_same_seed_same_configurations_and_seed_matters(tmp_path):
    a = drive(searcher(spec(sampler="tpe"), open_storage(tmp_path / "a.log")), lambda c: c["lr"])
    b = drive(searcher(spec(sampler="tpe"), open_storage(tmp_path / "b.log")), lambda c: c["lr"])
    assert params(a) == params(b)
    other = parse_spec({**spec().model_dump(mode="json"), "seed": 8})
    c = drive(searcher(other, open_storage(tmp_path / "c.log")), lambda c: c["lr"])
    assert [x["lr"] for x in a] != [x["lr"] for x in c]


def test_a_neighbour_does_not_change_an_activations_suggestions(tmp_path):
    """relu's configurations do not depend on which other activations share the study."""
    alone = parse_spec({"activations": ["relu"], "search": {"trials_per_activation": 3}, "training": {"epochs": 4}, "seed": 7})
    a = [c for c in drive(searcher(alone, open_storage(tmp_path / "a.log")), lambda c: c["lr"]) if c["label"] == "relu"]
    b = [c for c in drive(searcher(spec(), open_storage(tmp_path / "b.log")), lambda c: c["lr"]) if c["label"] == "relu"]
    assert params(a) == params(b)


def test_concurrency_per_activation_and_states_told_to_optuna(storage):
    s = searcher(spec(), storage)
    first = [s.suggest(f"t{i}") for i in range(3)]
    assert [c["label"] for c in first] == ["relu", "telu", "pwlu"]
    assert s.suggest("t3") is None  # every activation has its one trial running
    s.on_trial_complete("t0", {"val_acc": 0.1, "diverged": True, "epoch": 2})
    s.on_trial_complete("t1", {"val_acc": 0.4, "epoch": 2})  # stopped early by the scheduler
    s.on_trial_complete("t2", None, error=True)
    states = {label: study.trials[0].state for label, study in s.studies().items()}
    assert states == {"relu": optuna.trial.TrialState.FAIL, "telu": optuna.trial.TrialState.PRUNED,
                      "pwlu": optuna.trial.TrialState.FAIL}
    assert {label: [t.status for t in ts] for label, ts in s.summaries().items()} == \
        {"relu": ["diverged"], "telu": ["pruned"], "pwlu": ["error"]}


def test_grid_sampler_spends_its_grid(storage):
    configs = drive(searcher(spec(sampler="grid", trials_per_activation=4), storage), lambda c: 0.5)
    grid = (1e-4, 1e-1)  # 4 trials → a 2 × 2 grid over each range's ends
    relu = [(c["lr"], c["l2"]) for c in configs if c["label"] == "relu"]
    assert len(set(relu)) == 4 and all(any(lr == pytest.approx(g) for g in grid) for lr, _ in relu)


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
        assert sched.on_trial_result(None, t, {"epoch": 1, "val_acc": 0.9}) == TrialScheduler.CONTINUE
    # pwlu's first result is far below relu's, but it is alone in its group: it continues.
    assert sched.on_trial_result(None, slow, {"epoch": 1, "val_acc": 0.1}) == TrialScheduler.CONTINUE
    # within relu's group, a weak trial at the rung is stopped.
    weak = _trial("relu", "r9")
    sched.on_trial_add(None, weak)
    assert sched.on_trial_result(None, weak, {"epoch": 1, "val_acc": 0.2}) == TrialScheduler.STOP
    assert set(sched.groups) == {"relu", "pwlu"}


def test_diverged_result_stops_the_trial():
    sched = make_scheduler(spec(pruner="median"))
    t = _trial("relu", "x")
    sched.on_trial_add(None, t)
    assert sched.on_trial_result(None, t, {"epoch": 1, "val_acc": 0.1, "diverged": True}) == TrialScheduler.STOP


@pytest.mark.parametrize("pruner", ["asha", "median"])
def test_scheduler_kinds(pruner):
    assert isinstance(make_scheduler(spec(pruner=pruner)), PerActivationScheduler)
    assert not isinstance(make_scheduler(spec(pruner="none")), PerActivationScheduler)


def test_a_new_driver_keeps_finished_trials_and_retries_running_ones(storage):
    """The first searcher dies with trials running: the next one on the same storage fails them in Optuna,
    runs each again with the same parameters and key, and spends only what is left of the budgets."""
    s = searcher(spec(sampler="random"), storage)
    c = {f"t{i}": s.suggest(f"t{i}") for i in range(3)}  # relu, telu, pwlu running
    s.on_trial_complete("t0", {"val_acc": 0.5, "epoch": 4})
    c["t3"] = s.suggest("t3")  # relu's second
    del s  # the driver dies

    again = searcher(spec(sampler="random"), storage)
    assert again.retried == {"relu": [1], "telu": [0], "pwlu": [0]}
    assert {label: [t.state for t in study.trials] for label, study in again.studies().items()}["relu"] == [
        optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL, optuna.trial.TrialState.WAITING]
    rest = drive(again, lambda c: 0.5, first=10)
    # 8 more trials finish the 9 of the budget; the three lost ones come first, unchanged.
    assert len(rest) == 8
    retried = {x["trial_key"]: (x["lr"], x["l2"]) for x in rest[:3]}
    assert retried == {x["trial_key"]: (x["lr"], x["l2"]) for x in (c["t1"], c["t2"], c["t3"])}
    assert {label: len(ts) for label, ts in again.summaries().items()} == {"relu": 3, "telu": 3, "pwlu": 3}
    # A third driver finds nothing to do and retries nothing.
    third = searcher(spec(sampler="random"), storage)
    assert third.retried == {"relu": [], "telu": [], "pwlu": []} and third.suggest("x") == Searcher.FINISHED


def test_an_interrupted_search_suggests_what_an_uninterrupted_one_does(tmp_path):
    whole = drive(searcher(spec(sampler="tpe"), open_storage(tmp_path / "a.log")), lambda c: c["lr"])
    storage = open_storage(tmp_path / "b.log")
    s = searcher(spec(sampler="tpe"), storage)
    first = []
    for i in range(4):
        first.append(s.suggest(f"t{i}"))
        s.on_trial_complete(f"t{i}", {"val_acc": first[-1]["lr"], "epoch": 4})
    rest = drive(searcher(spec(sampler="tpe"), storage), lambda c: c["lr"], first=10)
    assert params(first + rest) == params(whole)


def test_the_search_ends_only_when_nothing_runs(storage):
    s = searcher(parse_spec({"activations": ["relu"], "search": {"trials_per_activation": 1}}), storage)
    assert s.suggest("t0")["label"] == "relu"
    assert s.suggest("t1") is None  # budget spent, but t0 still runs
    s.on_trial_complete("t0", {"val_acc": 0.5, "epoch": 1})
    assert s.suggest("t1") == Searcher.FINISHED


# Populations (search.population > 1): P trials of one activation asked together; members told as they end.


def flat_members(members: dict) -> dict:
    """A population's report as Tune hands it to searchers: flattened (`members/<key>/<field>`)."""
    return {f"members/{key}/{field}": value for key, m in members.items() for field, value in m.items()}


def test_a_population_is_its_activations_trials_asked_together(storage):
    s = searcher(spec(sampler="random", population=2), storage)
    first = s.suggest("p0")
    assert first["label"] == "relu" and [m["trial_key"] for m in first["members"]] == ["a0-t0", "a0-t1"]
    assert first["halving"] == {"milestones": [2], "history": {}}  # ASHA's rung for grace 2 of 4 epochs
    assert [s.suggest(f"p{i}")["label"] for i in (1, 2)] == ["telu", "pwlu"]
    assert s.suggest("p3") is None  # each activation runs one population at a time
    # relu's first member is pruned at the rung: told to Optuna at once, while the population runs on.
    s.on_trial_result("p0", flat_members({"a0-t0": {"epoch": 2, "val_acc": 0.2, "status": "pruned", "rungs/2": 0.2},
                                          "a0-t1": {"epoch": 2, "val_acc": 0.6, "status": "running", "rungs/2": 0.6}}))
    relu = s.studies()["relu"]
    assert [t.state for t in relu.trials] == [optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.RUNNING]
    assert s.suggest("p3") is None  # relu's population still runs
    s.on_trial_complete("p0", flat_members({"a0-t0": {"epoch": 2, "val_acc": 0.2, "status": "pruned", "rungs/2": 0.2},
                                            "a0-t1": {"epoch": 4, "val_acc": 0.7, "status": "completed", "rungs/2": 0.6}}))
    assert [(t.state, t.value) for t in relu.trials][1] == (optuna.trial.TrialState.COMPLETE, 0.7)
    last = s.suggest("p3")  # relu's budget of 3 leaves one member; its halving knows the rung's earlier values
    assert last["label"] == "relu" and len(last["members"]) == 1
    assert sorted(last["halving"]["history"]["2"]) == [0.2, 0.6]
    s.on_trial_complete("p1", None, error=True)  # telu's population failed: both members are errors
    assert {t.user_attrs["actstudy"]["status"] for t in s.studies()["telu"].trials} == {"error"}


def test_a_population_asks_what_one_trial_at_a_time_asks(tmp_path):
    """With a sampler that does not learn (random), the members are the trials of the same numbers, one by one."""
    one = drive(searcher(spec(sampler="random"), open_storage(tmp_path / "a.log")), lambda c: 0.5)
    pop = searcher(spec(sampler="random", population=3), open_storage(tmp_path / "b.log"))
    members = []
    for i in range(3):
        c = pop.suggest(f"p{i}")
        members += [(c["label"], m["lr"], m["l2"]) for m in c["members"]]
        pop.on_trial_complete(f"p{i}", {"members": {m["trial_key"]: {"epoch": 4, "val_acc": 0.5, "status": "completed"}
                                                    for m in c["members"]}})
    assert sorted(members) == sorted(params(one)) and pop.suggest("x") == Searcher.FINISHED


def test_a_population_prunes_itself():
    s = spec(population=4)
    assert not isinstance(make_scheduler(s), PerActivationScheduler)  # Tune's scheduler never stops a population


@pytest.mark.parametrize(("change", "field"), [({"training": {"precision": "bf16"}}, "training.precision"),
                                               ({"search": {"pruner": "median", "population": 4}}, "search.pruner"),
                                               ({"resources": {"gpus_per_trial": 1}}, "resources.gpus_per_trial")])
def test_what_populations_do_not_take_yet_is_refused(change, field):
    body = {"activations": ["relu"], "search": {"population": 4}, "training": {}, "resources": {}}
    for k, v in change.items():
        body[k] = {**body[k], **v}
    with pytest.raises(ValueError, match=rf"search.population: .*{field}"):
        parse_spec(body)
