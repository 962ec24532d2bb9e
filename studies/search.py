"""Fair per-activation search on Ray Tune: one Optuna study and one pruning group per activation.

One Tune experiment holds every activation's trials so the cluster stays full, but no activation's
sampler sees another's trials (`PerActivationSearcher` keeps one `OptunaSearch` per activation) and no
trial is pruned against another activation's curves (`PerActivationScheduler` keeps one ASHA or median
rule per activation). Both are Tune's own mechanisms, routed by the trial config's `label`.
"""

from __future__ import annotations

import logging
import math
import pickle
import zlib
from collections.abc import Callable

import numpy as np
import optuna
from optuna.distributions import FloatDistribution
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule, TrialScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher
from ray.tune.search.optuna import OptunaSearch

from studies.spec import RangeSpec, StudySpec

log = logging.getLogger(__name__)
METRIC, MODE = "val_acc", "max"  # declared once; TuneConfig carries them
optuna.logging.set_verbosity(optuna.logging.WARNING)  # one "study created" line per activation is noise


def activation_seed(study_seed: int, label: str) -> int:
    """A stable per-activation seed (Python's hash() is salted per process)."""
    return zlib.crc32(f"{study_seed}:{label}".encode()) & 0x7FFFFFFF


def _grid(r: RangeSpec, k: int) -> list[float]:
    values = np.geomspace(r.low, r.high, k) if r.log else np.linspace(r.low, r.high, k)
    return [float(v) for v in values]


def make_sampler(spec: StudySpec, label: str) -> optuna.samplers.BaseSampler:
    seed = activation_seed(spec.seed, label)
    kind = spec.search.sampler
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    k = max(2, math.ceil(math.sqrt(spec.search.trials_per_activation)))
    return optuna.samplers.GridSampler({"lr": _grid(spec.search.lr, k), "l2": _grid(spec.search.l2, k)}, seed=seed)


def search_space(spec: StudySpec) -> dict[str, FloatDistribution]:
    s = spec.search
    return {"lr": FloatDistribution(s.lr.low, s.lr.high, log=s.lr.log), "l2": FloatDistribution(s.l2.low, s.l2.high, log=s.l2.log)}


class PerActivationSearcher(Searcher):
    """One OptunaSearch per activation, each with the same space and budget.

    `suggest` gives the next trial to the activation with the fewest started trials among those below
    their budget and their concurrency; it returns None while all are busy and FINISHED once every
    budget is spent and no trial is running (so a restore that lost a trial can still re-run it; see
    `reconcile`). A trial that diverged is told to its Optuna study as FAIL, one stopped early by
    the scheduler as PRUNED (OptunaSearch's own rules for a completion without a value).
    """

    def __init__(self, spec: StudySpec, metric: str = METRIC, mode: str = MODE) -> None:
        super().__init__(metric=metric, mode=mode)
        self.labels = spec.labels
        self.params = {a.label: (a.name, a.params) for a in spec.activations}
        self.budget = spec.search.trials_per_activation
        self.concurrency = spec.search.concurrency_per_activation
        self.epochs = spec.training.epochs
        space = search_space(spec)
        self.searchers = {
            label: OptunaSearch(space=dict(space), metric=metric, mode=mode, sampler=make_sampler(spec, label))
            for label in self.labels
        }
        self.started = {label: 0 for label in self.labels}
        self.running: dict[str, str] = {}  # trial id → label
        self.outcomes: dict[str, str] = {}  # trial id → completed | pruned | diverged | error

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # metric and mode are fixed at construction; the param_space holds constants only

    def suggest(self, trial_id: str):
        open_ = [label for label in self.labels if self.started[label] < self.budget]
        if not open_:
            return None if self.running else Searcher.FINISHED
        busy = {label: sum(1 for v in self.running.values() if v == label) for label in open_}
        ready = [label for label in open_ if busy[label] < self.concurrency]
        if not ready:
            return None
        label = min(ready, key=lambda lb: (self.started[lb], self.labels.index(lb)))
        suggestion = self.searchers[label].suggest(trial_id)
        if suggestion is None or suggestion == Searcher.FINISHED:  # a grid that is exhausted
            self.started[label] = self.budget
            return self.suggest(trial_id)
        self.started[label] += 1
        self.running[trial_id] = label
        name, params = self.params[label]
        return {"label": label, "activation": name, "activation_params": dict(params), **suggestion}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        label = self.running.get(trial_id)
        if label and METRIC in result and not result.get("diverged"):
            self.searchers[label].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        label = self.running.pop(trial_id, None)
        if label is None:
            return
        sub = self.searchers[label]
        if error or (result and result.get("diverged")):
            self.outcomes[trial_id] = "error" if error else "diverged"
            sub.on_trial_complete(trial_id, None, error=True)
        elif result and result.get("training_iteration", 0) < self.epochs:
            self.outcomes[trial_id] = "pruned"
            sub.on_trial_complete(trial_id, None, error=False)
        else:
            self.outcomes[trial_id] = "completed"
            sub.on_trial_complete(trial_id, result, error=False)

    def reconcile(self, trials) -> None:
        """Make this searcher agree with the trials Tune restored; the trials are the truth.

        Tune writes its experiment state (the trials) and this searcher's state to a staging folder and
        copies both to storage in a background thread, so a driver killed mid-copy can leave the two from
        different moments. A trial started here that Tune lost is told to Optuna as FAIL and its slot in
        the budget reopens; a trial Tune has that this searcher never saw is told to Optuna with its own
        parameters (`enqueue_trial`); one Tune finished while this searcher thought it running is
        completed with its last result. Uses OptunaSearch's trial map, which has no public accessor.
        """
        present = {t.trial_id: t for t in trials if t.config.get("label") in self.searchers}
        lost, adopted = [], []
        for trial_id, label in list(self.running.items()):
            if trial_id not in present:
                del self.running[trial_id]
                self.outcomes[trial_id] = "lost"
                self.searchers[label].on_trial_complete(trial_id, None, error=True)
                lost.append(trial_id)
        for trial_id, t in present.items():
            label, sub = t.config["label"], self.searchers[t.config["label"]]
            if trial_id not in sub._ot_trials:
                sub._ot_study.enqueue_trial({"lr": t.config["lr"], "l2": t.config["l2"]})
                sub.suggest(trial_id)  # Optuna hands out the enqueued parameters
                self.running[trial_id] = label
                adopted.append(trial_id)
            finished = t.is_finished()
            if finished and trial_id in self.running:
                self.on_trial_complete(trial_id, t.last_result or None, error=t.status == "ERROR")
            elif not finished and trial_id not in self.running and trial_id not in sub._completed_trials:
                self.running[trial_id] = label
        self.started = {label: sum(1 for t in present.values() if t.config["label"] == label) for label in self.labels}
        if lost or adopted:
            log.warning("restored search reconciled with Tune's trials: %d lost trial(s) to run again %s, "
                        "%d adopted %s", len(lost), lost, len(adopted), adopted)

    def studies(self) -> dict[str, optuna.Study]:
        """Each activation's Optuna study (for the history and importance plots)."""
        return {label: s._ot_study for label, s in self.searchers.items() if getattr(s, "_ot_study", None) is not None}

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))
        # Trials that were running when the driver stopped are restarted by Tune under the same id.


class PerActivationScheduler(FIFOScheduler):
    """One pruning scheduler per activation, built by `make`; trials are routed by `config['label']`."""

    def __init__(self, make: Callable[[], TrialScheduler]) -> None:
        super().__init__()
        self._make = make
        self.groups: dict[str, TrialScheduler] = {}
        self._metric, self._mode = METRIC, MODE

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True

    def _group(self, trial) -> TrialScheduler:
        label = trial.config.get("label", "")
        if label not in self.groups:
            scheduler = self._make()
            scheduler.set_search_properties(METRIC, MODE)
            self.groups[label] = scheduler
        return self.groups[label]

    def on_trial_add(self, tune_controller, trial) -> None:
        self._group(trial).on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial) -> None:
        self._group(trial).on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if result.get("diverged"):
            return TrialScheduler.STOP
        return self._group(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        if result and not result.get("diverged"):
            self._group(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._group(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "Per-activation pruning: " + "; ".join(f"{k}: {v.debug_string()}" for k, v in self.groups.items())

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.groups, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.groups = pickle.load(f)


def reconcile_search(limiter: ConcurrencyLimiter, trials) -> None:
    """`PerActivationSearcher.reconcile` through the ConcurrencyLimiter around it, whose live set follows too."""
    limiter.searcher.reconcile(trials)
    limiter.live_trials = {t.trial_id for t in trials if not t.is_finished()}
    limiter.num_unfinished_live_trials = len(limiter.live_trials)


def make_scheduler(spec: StudySpec) -> TrialScheduler:
    epochs, grace = spec.training.epochs, min(spec.search.grace_epochs, spec.training.epochs)
    if spec.search.pruner == "asha":
        return PerActivationScheduler(
            # stop_last_trials=False: a trial that reaches the last epoch ends by itself, not as 'stopped'.
            lambda: ASHAScheduler(time_attr="training_iteration", max_t=epochs, grace_period=grace, reduction_factor=3, stop_last_trials=False)
        )
    if spec.search.pruner == "median":
        # min_time_slice is huge so the rule never pauses a trial (pausing would mix activations' queues).
        return PerActivationScheduler(
            lambda: MedianStoppingRule(time_attr="training_iteration", grace_period=grace, min_samples_required=3, min_time_slice=10**9)
        )
    return FIFOScheduler()
