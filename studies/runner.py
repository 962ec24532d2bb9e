"""Run a study end to end: per-activation search, confirmation with K seeds, statistics, MLflow.

The same code is the CLI's `actstudy run` and the service's Ray job (`python -m studies.driver ID`).
Everything a restart needs lives under the study's storage folder (Tune's experiment state) and in
MLflow, so `resume=True` continues a study whose driver died: finished trials are not run again.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import ray
from ray import tune
from ray.tune.logger import JsonLoggerCallback
from ray.tune.search import ConcurrencyLimiter

from studies import report
from studies.search import METRIC, MODE, PerActivationSearcher, make_scheduler, reconcile_search
from studies.spec import StudySpec
from studies.tracking import TRIAL_MLFLOW_ENV
from studies.trial import study_trial
from studies.study_mlflow import StudyRuns

log = logging.getLogger(__name__)

CONFIRM_SEED_OFFSET = 1000  # confirmation seeds differ from the search seed, and are shared by all activations
TRIAL_RETRIES = 2  # infrastructure failures (a worker died) retried by Tune
TRIAL_ENV = {
    # A reused actor waits this long for the previous trial's thread (its last MLflow writes) to end;
    # Tune's default of 2 s fails the next trial on a busy machine.
    "TUNE_FUNCTION_THREAD_TIMEOUT_S": "60",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    # The client's own retries back off for minutes; a trial keeps training while MLflow is away,
    # so its requests fail fast and MlflowTrialRecorder buffers what did not arrive.
    **TRIAL_MLFLOW_ENV,
}


class ProgressSink:
    """Where a running study reports. Call order: started → update × n → finished | failed. All no-ops."""

    def started(self, spec: StudySpec, study_id: str, parent_url: str | None) -> None: ...

    def update(self, progress: dict) -> None: ...

    def finished(self, results: dict) -> None: ...

    def failed(self, reason: str) -> None: ...


_SINKS: dict[str, ProgressSink] = {}  # callbacks are pickled with the Tune experiment; sinks are not


class _ProgressCallback(tune.Callback):
    """Counts trials per activation and the best validation accuracy so far; hands it to the sink."""

    def __init__(self, key: str, phase: str, labels: list[str], totals: dict[str, int], every_s: float = 1.0) -> None:
        self.key, self.phase, self.labels, self.totals, self.every_s = key, phase, labels, totals, every_s
        self._last = 0.0
        self._ended: set[str] = set()  # Tune calls on_trial_complete before it sets the trial's status

    def _emit(self, trials, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.every_s:
            return
        self._last = now
        sink = _SINKS.get(self.key)
        if sink is not None:
            sink.update(progress_of(self.phase, self.labels, self.totals, trials, self._ended))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._emit(trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._ended.add(trial.trial_id)
        self._emit(trials, force=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._ended.add(trial.trial_id)
        self._emit(trials, force=True)

    def __getstate__(self):
        return {**self.__dict__, "_ended": set()}


class _SearchLedger(tune.Callback):
    """At the first step of a (restored) search, makes the searcher agree with the trials Tune holds."""

    def __init__(self, search_alg) -> None:
        self.search_alg, self._done = search_alg, False

    def on_step_begin(self, iteration, trials, **info):
        if not self._done:
            self._done = True
            reconcile_search(self.search_alg, trials)

    def __getstate__(self):  # pickled with the Tuner; the restored Tuner brings its own searcher
        return {"search_alg": None, "_done": True}


def progress_of(phase: str, labels: list[str], totals: dict[str, int], trials, ended: set[str] = frozenset()) -> dict:
    metric = "test_acc" if phase == "confirm" else METRIC
    acts = {label: {"done": 0, "running": 0, "total": totals[label], "best": None} for label in labels}
    for t in trials:
        a = acts.get(t.config.get("cell", t.config).get("label"))  # confirmation trials carry theirs in `cell`
        if a is None:
            continue
        if t.is_finished() or t.trial_id in ended:
            a["done"] += 1
        elif t.status == "RUNNING":
            a["running"] += 1
        r = t.last_result or {}
        if metric in r and not r.get("diverged") and (a["best"] is None or r[metric] > a["best"]):
            a["best"] = float(r[metric])
    return {"phase": phase, "activations": acts}


def _report_final(study_id: str, phase: str, totals: dict[str, int], done: dict[str, int], best: dict[str, float | None]) -> None:
    """A phase's last progress, from its results rather than the event stream (a restore replays none)."""
    sink = _SINKS.get(study_id)
    if sink is not None:
        sink.update({"phase": phase, "activations": {
            label: {"done": done.get(label, 0), "running": 0, "total": totals[label], "best": best.get(label)} for label in totals}})


@dataclass
class StudyPaths:
    root: Path

    @property
    def tune(self) -> Path:
        return self.root / "tune"


def base_config(spec: StudySpec, study_id: str, runs: StudyRuns, mlflow_uri: str) -> dict:
    t = spec.training
    return {
        "study_id": study_id,
        "dataset": spec.dataset.name,
        "data_root": spec.dataset.data_root,
        "val_fraction": spec.dataset.val_fraction,
        "model": spec.model.name,
        "hidden": list(spec.model.hidden),
        "epochs": t.epochs,
        "batch_size": t.batch_size,
        "optimizer": t.optimizer,
        "schedule": t.schedule,
        "warmup_epochs": t.warmup_epochs,
        "momentum": t.momentum,
        "nesterov": t.nesterov,
        "l2_all": t.l2_all,
        "seed": spec.seed,
        "threads": max(1, int(spec.resources.cpus_per_trial)),
        "device": "cuda" if spec.resources.gpus_per_trial > 0 else "cpu",
        "mlflow_uri": mlflow_uri,
        "mlflow_experiment_id": runs.experiment_id,
        "mlflow_parent_runs": dict(runs.activation_runs),
    }


def _tuner(name: str, paths: StudyPaths, trainable, callbacks, *, resume: bool, **kwargs) -> tune.Tuner:
    path = paths.tune / name
    if resume and tune.Tuner.can_restore(str(path)):
        log.info("restoring %s from %s", name, path)
        tuner = tune.Tuner.restore(str(path), trainable, resume_unfinished=True, resume_errored=True)
        tuner._local_tuner._run_config.callbacks = [*callbacks, JsonLoggerCallback()]  # sinks are process-local
        return tuner
    run_config = tune.RunConfig(
        name=name,
        storage_path=str(paths.tune),
        failure_config=tune.FailureConfig(max_failures=TRIAL_RETRIES),
        # result.json is what a restored experiment reads its finished trials' metrics from.
        callbacks=[*callbacks, JsonLoggerCallback()],
        verbose=0,
    )
    return tune.Tuner(trainable, run_config=run_config, **kwargs)


def _resources(spec: StudySpec) -> dict:
    return {"cpu": spec.resources.cpus_per_trial, "gpu": spec.resources.gpus_per_trial}


def cluster_slots(spec: StudySpec) -> int:
    """How many trials the Ray cluster fits at once: its CPUs, and its GPUs when trials take GPUs."""
    have = ray.cluster_resources()
    slots = int(have.get("CPU", 1) // spec.resources.cpus_per_trial)
    if spec.resources.gpus_per_trial > 0:
        slots = min(slots, int(have.get("GPU", 0) // spec.resources.gpus_per_trial))
    return max(1, slots)


def run_search(spec: StudySpec, study_id: str, base: dict, paths: StudyPaths, *, resume: bool) -> tuple[dict, PerActivationSearcher | None]:
    """Tune every activation; returns {label: [trial summaries]} and the searcher (for Optuna's plots)."""
    searcher = PerActivationSearcher(spec)
    totals = {label: spec.search.trials_per_activation for label in spec.labels}
    tuner = _tuner(
        "search",
        paths,
        tune.with_resources(study_trial, _resources(spec)),
        [_ProgressCallback(study_id, "search", spec.labels, totals)],
        resume=resume,
        param_space={**base, "kind": "trial"},
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode=MODE,
            # Tune keeps one trial of a custom searcher pending at a time unless it is wrapped in a
            # ConcurrencyLimiter; with reuse_actors the actor being started for it goes to waste whenever a
            # running trial ends first (trials shorter than an actor's start-up then run one at a time), so
            # say how many the cluster fits. Built here (not via max_concurrent_trials) so that
            # `_SearchLedger` can reconcile the limiter too after a restore.
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=spec.search.max_concurrent_trials or cluster_slots(spec)),
            scheduler=make_scheduler(spec),
            # The searcher says when the budgets are spent (FINISHED); a fixed count would stop a restored
            # search short of re-running a trial the restore lost.
            num_samples=-1,
            reuse_actors=True,
        ),
    )
    # A restored Tuner unpickles its own searcher (the Optuna studies, for the plots); Tune has no accessor.
    search_alg = tuner._local_tuner._tune_config.search_alg
    searcher = search_alg.searcher
    tuner._local_tuner._run_config.callbacks.append(_SearchLedger(search_alg))
    grid = tuner.fit()
    trials: dict[str, list[dict]] = {label: [] for label in spec.labels}
    for result in grid:
        cfg, last = result.config, result.metrics or {}
        label = cfg.get("label")
        if label not in trials:
            continue
        status = "error" if result.error else ("diverged" if last.get("diverged") else
                 "pruned" if last.get("training_iteration", 0) < spec.training.epochs else "completed")
        trials[label].append({"lr": cfg["lr"], "l2": cfg["l2"], "val_acc": last.get(METRIC), "epochs": last.get("training_iteration", 0), "status": status})
    _report_final(study_id, "search", totals, {label: len(ts) for label, ts in trials.items()},
                  {label: max((t["val_acc"] for t in ts if t["status"] != "diverged" and t["val_acc"] is not None), default=None)
                   for label, ts in trials.items()})
    return trials, searcher


def best_params(trials: list[dict]) -> dict | None:
    """The finished, non-diverged trial with the best final validation accuracy."""
    done = [t for t in trials if t["status"] == "completed" and t["val_acc"] is not None and math.isfinite(t["val_acc"])]
    if not done:
        return None
    best = max(done, key=lambda t: t["val_acc"])
    return {"lr": best["lr"], "l2": best["l2"], "val_acc": best["val_acc"]}


def confirm_seeds(spec: StudySpec) -> list[int]:
    return [spec.seed + CONFIRM_SEED_OFFSET + i for i in range(spec.confirm.seeds)]


def run_confirm(spec: StudySpec, study_id: str, base: dict, best: dict[str, dict], paths: StudyPaths, *, resume: bool) -> dict[str, dict[int, float]]:
    """Re-train each activation's best setting with the shared seeds; test accuracy by label and seed."""
    cells = []
    for label, params in best.items():
        name, act_params = spec.activation(label).name, spec.activation(label).params
        for seed in confirm_seeds(spec):
            cells.append({"label": label, "activation": name, "activation_params": act_params,
                          "lr": params["lr"], "l2": params["l2"], "seed": seed})
    totals = {label: spec.confirm.seeds for label in best}
    scores: dict[str, dict[int, float]] = {label: {} for label in best}
    # A restored grid can lack a cell whose trial Tune had not yet written to storage when the driver
    # died (see PerActivationSearcher.reconcile); such cells run in a follow-up experiment.
    todo, round_ = cells, 0
    while todo and round_ < 3:
        tuner = _tuner(
            "confirm" if round_ == 0 else f"confirm-{round_}",
            paths,
            tune.with_resources(study_trial, _resources(spec)),
            [_ProgressCallback(study_id, "confirm", list(best), totals)],
            resume=resume,
            param_space={**base, "kind": "confirm", "evaluate_test": True, "cell": tune.grid_search(todo)},
            tune_config=tune.TuneConfig(metric="test_acc", mode="max", reuse_actors=True),
        )
        ran = set()
        for result in tuner.fit():
            cell, last = result.config["cell"], result.metrics or {}
            ran.add((cell["label"], cell["seed"]))
            if not result.error and "test_acc" in last and not last.get("diverged"):
                scores[cell["label"]][cell["seed"]] = float(last["test_acc"])
        todo = [c for c in todo if (c["label"], c["seed"]) not in ran]
        if todo:
            log.warning("confirmation: %d cell(s) missing from the restored experiment; running them", len(todo))
        round_ += 1
    ran_by_label = {label: sum(1 for c in cells if c["label"] == label and c not in todo) for label in best}
    _report_final(study_id, "confirm", totals, ran_by_label, {label: max(v.values(), default=None) for label, v in scores.items()})
    return scores


def build_results(spec: StudySpec, study_id: str, trials: dict, best: dict, scores: dict) -> dict:
    summaries = {label: report.summarize(list(scores.get(label, {}).values())) for label in spec.labels}
    paired = report.paired_vs_baseline(scores, spec.confirm.baseline)
    ranking = report.rank(summaries)
    acts = {}
    for label in spec.labels:
        counts = {s: sum(1 for t in trials[label] if t["status"] == s) for s in ("completed", "pruned", "diverged", "error")}
        acts[label] = {
            "best_params": {k: v for k, v in (best.get(label) or {}).items() if k in ("lr", "l2")},
            "best_val_acc": (best.get(label) or {}).get("val_acc"),
            "trials": counts,
            "test_acc": summaries[label],
            "vs_baseline": paired.get(label),
        }
    return {
        "study_id": study_id,
        "name": spec.name,
        "baseline": spec.confirm.baseline,
        "seeds": confirm_seeds(spec),
        "ranking": ranking,
        "best_activation": ranking[0] if ranking else None,
        "activations": acts,
    }


def study_id_for(spec: StudySpec, storage_dir: Path, *, resume: bool) -> str:
    """`<name>-<hash of the spec>`: the same spec resumes the same study; a fresh run gets a new suffix."""
    import hashlib

    base = f"{spec.name}-{hashlib.sha256(spec.model_dump_json().encode()).hexdigest()[:8]}"
    if resume or not (Path(storage_dir) / base).exists():
        return base
    n = 2
    while (Path(storage_dir) / f"{base}-{n}").exists():
        n += 1
    return f"{base}-{n}"


def ensure_ray(address: str | None = None) -> None:
    """Connect to `address` (or $RAY_ADDRESS), else start a local Ray on this machine's CPUs."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # MLflow holds the curves; JSON is added
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # Save Tune's experiment state (trials, searcher) after every event, so a driver killed at any
    # moment resumes without running a finished trial again.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "0")
    runtime_env = {"env_vars": TRIAL_ENV}
    if address:
        ray.init(address=address, log_to_driver=False, runtime_env=runtime_env)
    else:
        ray.init(include_dashboard=False, log_to_driver=False, runtime_env=runtime_env)


def run_study(
    spec: StudySpec,
    *,
    study_id: str,
    storage_dir: str | Path,
    mlflow_uri: str,
    ray_address: str | None = None,
    resume: bool = False,
    sink: ProgressSink | None = None,
) -> dict:
    """Run (or resume) a whole study; returns the results dict also written to MLflow as results.json."""
    sink = sink or ProgressSink()
    paths = StudyPaths(Path(storage_dir).resolve() / study_id)  # Tune's storage needs an absolute path
    paths.tune.mkdir(parents=True, exist_ok=True)
    ensure_ray(ray_address)
    runs = StudyRuns.open(mlflow_uri, spec, study_id)
    if resume:
        runs.close_interrupted()
    _SINKS[study_id] = sink
    sink.started(spec, study_id, runs.parent_url)
    try:
        base = base_config(spec, study_id, runs, mlflow_uri)
        trials, searcher = run_search(spec, study_id, base, paths, resume=resume)
        best = {label: b for label in spec.labels if (b := best_params(trials[label])) is not None}
        if not best:
            raise RuntimeError("no activation finished a single trial (all diverged, were pruned or failed)")
        scores = run_confirm(spec, study_id, base, best, paths, resume=resume)
        results = build_results(spec, study_id, trials, best, scores)
        results["mlflow"] = runs.links()
        runs.finish(results, trials, searcher.studies() if searcher else {})
        sink.finished(results)
        return results
    except BaseException as exc:
        reason = f"{type(exc).__name__}: {exc}"
        runs.fail(reason, status="KILLED" if isinstance(exc, (KeyboardInterrupt, SystemExit)) else "FAILED")
        sink.failed(reason)
        raise
    finally:
        _SINKS.pop(study_id, None)
