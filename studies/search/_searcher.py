"""Fair per-activation search on Ray Tune, its state in Optuna storage.

One Tune experiment holds every activation's trials so the cluster stays full, but no activation's
sampler sees another's trials: `PerActivationSearcher` keeps one Optuna study per activation, named
`<study id>/<label>` (its pruning counterpart is `PerActivationScheduler`).

The Optuna studies are the search's truth; Tune only executes. A driver that starts on a storage that
already holds the search keeps every finished trial (their values feed the sampler), fails the trials
that were running when the previous driver died and queues each again with the same parameters
(Optuna's `RetryHeartbeatStaleTrialCallback`), and asks only for what is left of each budget.
"""

from __future__ import annotations

import math
import warnings

import optuna
from optuna.storages import BaseStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState
from ray.tune.search import Searcher

from studies.search._samplers import make_sampler, search_space
from studies.search._storage import on_storage
from studies.spec import StudySpec, TrialSummary, outcome
from studies.trial_run import MEMBER_ENDS, members_of
from workers.population import rungs

METRIC, MODE = "val_acc", "max"  # declared once; TuneConfig carries them
OUTCOME = "actstudy"  # user attr of a finished trial: {"status", "epochs", "val_acc"}; a FAIL without it was lost
ROOT = "actstudy.root"  # user attr: the number of the first attempt (copied to retries): the trial's key
RUNGS = "actstudy.rungs"  # user attr of a population member: {epoch: val_acc} at the rungs it reached


def trial_key(spec: StudySpec, label: str, root: int) -> str:
    """A search trial's key across drivers and attempts (only safe characters: it is an MLflow filter value)."""
    return f"a{spec.labels.index(label)}-t{root}"


def _lost(t: FrozenTrial) -> bool:
    """Failed without an outcome: the driver that ran it died (it runs again as a queued retry)."""
    return t.state == TrialState.FAIL and OUTCOME not in t.user_attrs



def _quietly(fn, *args):
    with warnings.catch_warnings():  # Optuna's retry helpers are marked experimental; nothing to act on
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return fn(*args)


class PerActivationSearcher(Searcher):
    """One Optuna study per activation, each with the same space and budget, in `storage`.

    `suggest` gives the next trial to the activation with the fewest started trials among those below
    their budget and their concurrency; it returns None while all are busy and FINISHED once every
    budget is spent and nothing runs. Each suggestion carries its Optuna trial number and `trial_key`.
    A trial that diverged or failed is told to Optuna as FAIL, one the scheduler stopped as PRUNED,
    each with its outcome as a user attribute (which is how a trial lost with its driver is told apart).

    With `search.population` P > 1 a suggestion is a population: P trials of one activation asked together
    (each seeded by its place, as one at a time), the activation's next population asked only once this one has
    ended, so its sampler sees the same history in the same order on any cluster. Members are told as the
    population's reports say they ended (pruned or diverged at once). Its `halving` carries the ASHA rungs and the
    activation's earlier values at them (`RUNGS`), so pruning is judged against that activation alone.
    """

    def __init__(self, spec: StudySpec, study_id: str, storage: BaseStorage, metric: str = METRIC, mode: str = MODE) -> None:
        super().__init__(metric=metric, mode=mode)
        self.spec, self.study_id, self.storage = spec, study_id, storage
        self.labels = spec.labels
        self.params = {a.label: (a.name, a.params) for a in spec.activations}
        self.budget = spec.search.trials_per_activation
        self.concurrency = spec.search.concurrency_per_activation
        self.population = spec.search.population
        self.epochs = spec.training.epochs
        self.milestones = rungs(min(spec.search.grace_epochs, self.epochs), self.epochs) if spec.search.pruner == "asha" else []
        self.space = search_space(spec)
        # Tune trial id → (label, {trial key: Optuna trial not told yet}): one trial, or a population's members
        self.asked: dict[str, tuple[str, dict[str, optuna.Trial]]] = {}
        self._studies = {label: self._open(label) for label in self.labels}
        self.retried = {label: self._recover(study) for label, study in self._studies.items()}
        self.ended = {label: sum(1 for t in study.get_trials(deepcopy=False) if OUTCOME in t.user_attrs)
                      for label, study in self._studies.items()}

    def _open(self, label: str) -> optuna.Study:
        study = optuna.create_study(storage=self.storage, study_name=f"{self.study_id}/{label}", direction="maximize",
                                    sampler=make_sampler(self.spec, label), load_if_exists=True)
        _quietly(study.set_metric_names, [self.metric])  # optuna-dashboard shows "val_acc", not "Objective 0"
        return study

    @staticmethod
    def _recover(study: optuna.Study) -> list[int]:
        """Fail what a dead driver left running and queue a retry of every lost trial that has none yet."""
        trials = study.get_trials(deepcopy=False)
        for t in trials:
            if t.state == TrialState.RUNNING:  # one driver per study: nobody else is running it
                study.tell(t.number, state=TrialState.FAIL)
        covered = {n for t in trials for n in _quietly(RetryHeartbeatStaleTrialCallback.retry_history, t)}
        retried = []
        for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
            if _lost(t) and t.number not in covered:
                _quietly(RetryHeartbeatStaleTrialCallback(), study, t)
                retried.append(t.number)
        return retried

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # metric and mode are fixed at construction; the param_space holds constants only

    def _running(self, label: str) -> int:
        return sum(len(trials) for lb, trials in self.asked.values() if lb == label)

    def _ready(self, label: str) -> bool:
        if self.population > 1:  # one population of an activation at a time
            return all(lb != label for lb, _ in self.asked.values())
        return self._running(label) < self.concurrency

    def suggest(self, trial_id: str):
        open_ = [label for label in self.labels if self.ended[label] + self._running(label) < self.budget]
        if not open_:
            return None if self.asked else Searcher.FINISHED
        ready = [label for label in open_ if self._ready(label)]
        if not ready:
            return None
        label = min(ready, key=lambda lb: (self.ended[lb] + self._running(lb), self.labels.index(lb)))
        size = min(self.population, self.budget - self.ended[label] - self._running(label))
        trials = [self._ask(label) for _ in range(size)]
        self.asked[trial_id] = (label, {self._key(label, t): t for t in trials})
        name, params = self.params[label]
        config = {"label": label, "activation": name, "activation_params": dict(params)}
        members = [{"optuna_trial": t.number, "trial_key": self._key(label, t), "lr": t.params["lr"], "l2": t.params["l2"]}
                   for t in trials]
        if self.population == 1:
            return {**config, **members[0]}
        config["members"] = members
        if self.milestones:
            config["halving"] = {"milestones": self.milestones, "history": self._rung_history(label)}
        return config

    def _key(self, label: str, trial: optuna.Trial) -> str:
        return trial_key(self.spec, label, trial.user_attrs[ROOT])

    def _ask(self, label: str) -> optuna.Trial:
        # Seeded by the place of the next new trial in the budget: trials lost with a driver do not count,
        # so an interrupted search suggests what an uninterrupted one does (a queued retry keeps its parameters).
        study = self._studies[label]
        place = on_storage(lambda _: sum(1 for t in study.get_trials(deepcopy=False) if not _lost(t)))
        study.sampler = make_sampler(self.spec, label, place)
        trial = on_storage(lambda _: study.ask(dict(self.space)))
        if ROOT not in trial.user_attrs:
            on_storage(lambda _: trial.set_user_attr(ROOT, trial.number))
        return trial

    def _rung_history(self, label: str) -> dict[str, list[float]]:
        """The values the activation's ended population members had at each rung (what halving judges against)."""
        history: dict[str, list[float]] = {}
        for t in on_storage(lambda _: self._studies[label].get_trials(deepcopy=False)):
            for epoch, value in t.user_attrs.get(RUNGS, {}).items():
                history.setdefault(str(epoch), []).append(value)
        return history

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id not in self.asked or self.population == 1:
            return
        label, trials = self.asked[trial_id]
        for key, member in members_of(result).items():
            if key in trials and member.get("status") in MEMBER_ENDS:
                self._tell(label, trials.pop(key), member.get("status"), member, member.get("rungs"))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        label, trials = self.asked.pop(trial_id, (None, {}))
        if self.population == 1:
            for trial in trials.values():
                self._tell(label, trial, outcome(result, self.epochs, error), result or {})
            return
        members = members_of(result)
        for key, trial in trials.items():
            member = members.get(key, {})
            status = member.get("status") if member.get("status") in MEMBER_ENDS and not error else \
                outcome({"epoch": member.get("epoch", 0)}, self.epochs, error)
            self._tell(label, trial, status, member, member.get("rungs"))

    def _tell(self, label: str, trial: optuna.Trial, status: str, result: dict, rung_values: dict | None = None) -> None:
        value = result.get(METRIC)
        value = float(value) if value is not None and math.isfinite(value) else None
        record = {"status": status, "epochs": int(result.get("epoch", 0)), "val_acc": None if status == "diverged" else value}
        on_storage(lambda _: trial.set_user_attr(OUTCOME, record))
        if rung_values:
            on_storage(lambda _: trial.set_user_attr(RUNGS, {str(k): float(v) for k, v in rung_values.items()}))
        state = {"completed": TrialState.COMPLETE, "pruned": TrialState.PRUNED}.get(status, TrialState.FAIL)
        if state == TrialState.COMPLETE and value is None:
            state = TrialState.FAIL

        def tell(retrying: bool) -> None:
            # A retry may find the trial told already: the failed attempt's commit can have gone through.
            self._studies[label].tell(trial, value if state == TrialState.COMPLETE else None, state=state, skip_if_finished=retrying)

        try:
            on_storage(tell)
        except RuntimeError as exc:  # GridSampler calls Study.stop() once its grid is spent: not in ask-and-tell
            if "Study.stop" not in str(exc):
                raise
        self.ended[label] += 1

    def summaries(self) -> dict[str, list[TrialSummary]]:
        """Every finished trial of each activation, from the storage."""
        out = {}
        for label in self.labels:
            out[label] = [TrialSummary(number=t.number, key=trial_key(self.spec, label, t.user_attrs.get(ROOT, t.number)),
                                       lr=t.params["lr"], l2=t.params["l2"], **t.user_attrs[OUTCOME])
                          for t in on_storage(lambda _, study=self._studies[label]: study.get_trials(deepcopy=False))
                          if OUTCOME in t.user_attrs]
        return out

    def studies(self) -> dict[str, optuna.Study]:
        """Each activation's Optuna study (for the history and importance plots)."""
        return dict(self._studies)

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: the state is in Optuna storage (and no file means no copy for Tune to sync)."""

    def restore(self, checkpoint_path: str) -> None:
        raise NotImplementedError("a study resumes from its Optuna storage, not from Tune's experiment state")

    def __getstate__(self):
        # Tune pickles its configuration (tuner.pkl) for a restore this project never does: the storage and
        # the live trials stay out of it.
        return {k: v for k, v in self.__dict__.items() if k not in ("storage", "asked", "_studies")}
