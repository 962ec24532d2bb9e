"""Pruning per activation: no trial is stopped against another activation's curves."""

from __future__ import annotations

from collections.abc import Callable

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule, TrialScheduler

from studies.search._searcher import METRIC, MODE
from studies.spec import StudySpec
from workers.population import REDUCTION_FACTOR


class PerActivationScheduler(FIFOScheduler):
    """One pruning scheduler per activation, built by `make`; trials are routed by `config['label']`."""

    def __init__(self, make: Callable[[], TrialScheduler]) -> None:
        super().__init__()
        self._make = make
        self.groups: dict[str, TrialScheduler] = {}
        super().set_search_properties(METRIC, MODE)

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True  # fixed at construction, as each activation's own scheduler's

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


def make_scheduler(spec: StudySpec) -> TrialScheduler:
    epochs, grace = spec.training.epochs, min(spec.search.grace_epochs, spec.training.epochs)
    if spec.search.population > 1:  # a population prunes its members itself (workers.population.SuccessiveHalving)
        return FIFOScheduler()
    if spec.search.pruner == "asha":
        return PerActivationScheduler(
            # stop_last_trials=False: a trial that reaches the last epoch ends by itself, not as 'stopped'.
            lambda: ASHAScheduler(time_attr="epoch", max_t=epochs, grace_period=grace, reduction_factor=REDUCTION_FACTOR, stop_last_trials=False)
        )
    if spec.search.pruner == "median":
        # min_time_slice is huge so the rule never pauses a trial (pausing would mix activations' queues).
        return PerActivationScheduler(
            lambda: MedianStoppingRule(time_attr="epoch", grace_period=grace, min_samples_required=3, min_time_slice=10**9)
        )
    return FIFOScheduler()
