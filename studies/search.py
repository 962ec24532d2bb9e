"""Fair per-activation search on Ray Tune, its state in Optuna storage.

One Tune experiment holds every activation's trials so the cluster stays full, but no activation's
sampler sees another's trials (`PerActivationSearcher` keeps one Optuna study per activation, named
`<study id>/<label>`) and no trial is pruned against another activation's curves
(`PerActivationScheduler` keeps one ASHA or median rule per activation).

The Optuna studies are the search's truth; Tune only executes. A driver that starts on a storage that
already holds the search keeps every finished trial (their values feed the sampler), fails the trials
that were running when the previous driver died and queues each again with the same parameters
(Optuna's `RetryHeartbeatStaleTrialCallback`), and asks only for what is left of each budget.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
import sqlalchemy.exc
from optuna.distributions import FloatDistribution
from optuna.storages import BaseStorage, JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule, TrialScheduler
from ray.tune.search import Searcher

from studies.schema import TrialStatus, TrialSummary
from studies.spec import RangeSpec, StudySpec

log = logging.getLogger(__name__)
METRIC, MODE = "val_acc", "max"  # declared once; TuneConfig carries them
OUTCOME = "actstudy"  # user attr of a finished trial: {"status", "epochs", "val_acc"}; a FAIL without it was lost
ROOT = "actstudy.root"  # user attr: the number of the first attempt (copied to retries): the trial's key
OPTUNA_SCHEMA = "actstudy_optuna"  # Optuna's tables on PostgreSQL ("studies" is ours too)
optuna.logging.set_verbosity(optuna.logging.WARNING)  # one "study created" line per activation is noise


def open_storage(location: str | Path) -> BaseStorage:
    """Optuna storage for a study: a journal file (`actstudy run`) or beside the service's database.

    Optuna's tables share names with the records' (`studies`), so they live apart: a sibling SQLite file
    (`records.db` → `records-optuna.db`), or their own schema on PostgreSQL.
    """
    location = str(location)
    if "://" not in location:
        Path(location).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(location))
    if location.startswith("sqlite:///"):
        path = Path(location.removeprefix("sqlite:///"))
        return RDBStorage(f"sqlite:///{path.with_name(path.stem + '-optuna.db')}",
                          engine_kwargs={"connect_args": {"timeout": 30}})
    import sqlalchemy

    engine = sqlalchemy.create_engine(location)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text(f"CREATE SCHEMA IF NOT EXISTS {OPTUNA_SCHEMA}"))
    engine.dispose()
    return RDBStorage(location, engine_kwargs={"connect_args": {"options": f"-c search_path={OPTUNA_SCHEMA}"},
                                               "pool_pre_ping": True})


def activation_seed(study_seed: int, label: str) -> int:
    """A stable per-activation seed (Python's hash() is salted per process)."""
    return zlib.crc32(f"{study_seed}:{label}".encode()) & 0x7FFFFFFF


def _grid(r: RangeSpec, k: int) -> list[float]:
    values = np.geomspace(r.low, r.high, k) if r.log else np.linspace(r.low, r.high, k)
    return [float(v) for v in values]


def make_sampler(spec: StudySpec, label: str, number: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler for the `number`-th trial of an activation, seeded by (study seed, label, number).

    A fresh sampler per trial makes each configuration a function of the study's stored history alone,
    so a driver that resumes suggests what an uninterrupted one would have.
    """
    seed = (activation_seed(spec.seed, label) + 7919 * number) & 0x7FFFFFFF
    kind = spec.search.sampler
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    k = max(2, math.ceil(math.sqrt(spec.search.trials_per_activation)))
    # The grid's seed shuffles its order once; trial n then takes point n of that order, so it stays fixed.
    return optuna.samplers.GridSampler({"lr": _grid(spec.search.lr, k), "l2": _grid(spec.search.l2, k)},
                                       seed=activation_seed(spec.seed, label))


def search_space(spec: StudySpec) -> dict[str, FloatDistribution]:
    s = spec.search
    return {"lr": FloatDistribution(s.lr.low, s.lr.high, log=s.lr.log), "l2": FloatDistribution(s.l2.low, s.l2.high, log=s.l2.log)}


def outcome(result: dict | None, epochs: int, error: bool = False) -> TrialStatus:
    """completed | pruned | diverged | error: how a trial ended, from its last result."""
    result = result or {}
    if error:
        return "error"
    if result.get("diverged"):
        return "diverged"
    # `epoch`, not Tune's training_iteration: a trial continued from a checkpoint in a new experiment
    # counts its reports from 1 again.
    return "pruned" if result.get("epoch", 0) < epochs else "completed"


def trial_key(spec: StudySpec, label: str, root: int) -> str:
    """A search trial's key across drivers and attempts (only safe characters: it is an MLflow filter value)."""
    return f"a{spec.labels.index(label)}-t{root}"


def _lost(t: FrozenTrial) -> bool:
    """Failed without an outcome: the driver that ran it died (it runs again as a queued retry)."""
    return t.state == TrialState.FAIL and OUTCOME not in t.user_attrs


# A database that restarts, or a proxy that drops connections, fails the statement in flight: Optuna's
# RDBStorage raises StorageInternalError (a failed commit) or SQLAlchemy's OperationalError. A new
# connection from the pool serves the next attempt (pool_pre_ping discards the dead ones).
_TRANSIENT = (optuna.exceptions.StorageInternalError, sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)
STORAGE_ATTEMPTS = 6  # 0.25 + 0.5 + 1 + 2 + 4 s of waiting in all


def _with_retries(action: Callable[[int], object], what: str):
    """action(attempt) until it gets through a transient storage error, at most STORAGE_ATTEMPTS times."""
    for attempt in range(STORAGE_ATTEMPTS):
        try:
            return action(attempt)
        except _TRANSIENT as exc:
            if attempt == STORAGE_ATTEMPTS - 1:
                raise
            log.warning("Optuna storage: %s failed (%s), retrying", what, type(exc).__name__)
            time.sleep(0.25 * 2**attempt)


def _quietly(fn):
    with warnings.catch_warnings():  # Optuna's retry helpers are marked experimental; nothing to act on
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return fn()


class PerActivationSearcher(Searcher):
    """One Optuna study per activation, each with the same space and budget, in `storage`.

    `suggest` gives the next trial to the activation with the fewest started trials among those below
    their budget and their concurrency; it returns None while all are busy and FINISHED once every
    budget is spent and nothing runs. Each suggestion carries its Optuna trial number and `trial_key`.
    A trial that diverged or failed is told to Optuna as FAIL, one the scheduler stopped as PRUNED,
    each with its outcome as a user attribute (which is how a trial lost with its driver is told apart).
    """

    def __init__(self, spec: StudySpec, study_id: str, storage: BaseStorage, metric: str = METRIC, mode: str = MODE) -> None:
        super().__init__(metric=metric, mode=mode)
        self.spec, self.study_id, self.storage = spec, study_id, storage
        self.labels = spec.labels
        self.params = {a.label: (a.name, a.params) for a in spec.activations}
        self.budget = spec.search.trials_per_activation
        self.concurrency = spec.search.concurrency_per_activation
        self.epochs = spec.training.epochs
        self.space = search_space(spec)
        self.asked: dict[str, tuple[str, optuna.Trial]] = {}  # Tune trial id → (label, Optuna trial)
        self._studies = {label: optuna.create_study(storage=storage, study_name=f"{study_id}/{label}", direction="maximize",
                                                    sampler=make_sampler(spec, label), load_if_exists=True)
                         for label in self.labels}
        self.retried = {label: self._recover(study) for label, study in self._studies.items()}
        self.ended = {label: sum(1 for t in study.get_trials(deepcopy=False) if OUTCOME in t.user_attrs)
                      for label, study in self._studies.items()}

    @staticmethod
    def _recover(study: optuna.Study) -> list[int]:
        """Fail what a dead driver left running and queue a retry of every lost trial that has none yet."""
        trials = study.get_trials(deepcopy=False)
        for t in trials:
            if t.state == TrialState.RUNNING:  # one driver per study: nobody else is running it
                study.tell(t.number, state=TrialState.FAIL)
        covered = {n for t in trials for n in _quietly(lambda: RetryHeartbeatStaleTrialCallback.retry_history(t))}
        retried = []
        for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
            if _lost(t) and t.number not in covered:
                _quietly(lambda: RetryHeartbeatStaleTrialCallback()(study, t))
                retried.append(t.number)
        return retried

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # metric and mode are fixed at construction; the param_space holds constants only

    def _running(self, label: str) -> int:
        return sum(1 for lb, _ in self.asked.values() if lb == label)

    def suggest(self, trial_id: str):
        open_ = [label for label in self.labels if self.ended[label] + self._running(label) < self.budget]
        if not open_:
            return None if self.asked else Searcher.FINISHED
        ready = [label for label in open_ if self._running(label) < self.concurrency]
        if not ready:
            return None
        label = min(ready, key=lambda lb: (self.ended[lb] + self._running(lb), self.labels.index(lb)))
        # Seeded by the place of the next new trial in the budget: trials lost with a driver do not count,
        # so an interrupted search suggests what an uninterrupted one does (a queued retry keeps its parameters).
        study = self._studies[label]
        place = _with_retries(lambda _: sum(1 for t in study.get_trials(deepcopy=False) if not _lost(t)), "reading the trials")
        study.sampler = make_sampler(self.spec, label, place)
        trial = _with_retries(lambda _: study.ask(dict(self.space)), "asking for a trial")
        if ROOT not in trial.user_attrs:
            _with_retries(lambda _: trial.set_user_attr(ROOT, trial.number), "marking a trial")
        self.asked[trial_id] = (label, trial)
        name, params = self.params[label]
        return {"label": label, "activation": name, "activation_params": dict(params),
                "optuna_trial": trial.number, "trial_key": trial_key(self.spec, label, trial.user_attrs[ROOT]),
                "lr": trial.params["lr"], "l2": trial.params["l2"]}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        label, trial = self.asked.pop(trial_id, (None, None))
        if trial is None:
            return
        status = outcome(result, self.epochs, error)
        value = (result or {}).get(METRIC)
        value = float(value) if value is not None and math.isfinite(value) else None
        record = {"status": status, "epochs": int((result or {}).get("epoch", 0)), "val_acc": None if status == "diverged" else value}
        _with_retries(lambda _: trial.set_user_attr(OUTCOME, record), "recording a trial's outcome")
        state = {"completed": TrialState.COMPLETE, "pruned": TrialState.PRUNED}.get(status, TrialState.FAIL)
        if state == TrialState.COMPLETE and value is None:
            state = TrialState.FAIL

        def tell(attempt: int) -> None:
            # A retry may find the trial told already: the failed attempt's commit can have gone through.
            self._studies[label].tell(trial, value if state == TrialState.COMPLETE else None, state=state, skip_if_finished=attempt > 0)

        try:
            _with_retries(tell, "telling a trial's result")
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
                          for t in _with_retries(lambda _: self._studies[label].get_trials(deepcopy=False), "reading the trials")
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
    if spec.search.pruner == "asha":
        return PerActivationScheduler(
            # stop_last_trials=False: a trial that reaches the last epoch ends by itself, not as 'stopped'.
            lambda: ASHAScheduler(time_attr="epoch", max_t=epochs, grace_period=grace, reduction_factor=3, stop_last_trials=False)
        )
    if spec.search.pruner == "median":
        # min_time_slice is huge so the rule never pauses a trial (pausing would mix activations' queues).
        return PerActivationScheduler(
            lambda: MedianStoppingRule(time_attr="epoch", grace_period=grace, min_samples_required=3, min_time_slice=10**9)
        )
    return FIFOScheduler()
