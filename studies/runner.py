"""Run a study end to end: per-activation search, confirmation with K seeds, statistics, MLflow.

The same code is the CLI's `actstudy run` and the service's Ray job (`python -m studies.driver ID`).
A study's truth lives in its stores (see DESIGN.md): the search in Optuna storage, every run and the
confirmation scores in MLflow, checkpoints by trial key. Running a study whose stores already hold part
of it continues it: finished trials and seeds are kept, trials that were running are run again.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import ray

from studies.confirm_phase import run_confirm
from studies.execution import StudyContext, StudyPaths, check_placeable
from studies.progress import SINKS, ProgressSink
from studies.results import best_trial, build_results
from studies.schema import StudyResults
from studies.search import PerActivationSearcher, open_storage
from studies.search_phase import run_search
from studies.spec import StudySpec
from studies.study_mlflow import StudyRuns
from studies.tracking import TRIAL_MLFLOW_ENV

log = logging.getLogger(__name__)

TRIAL_ENV = {
    # A reused actor waits this long for the previous trial's thread (its last MLflow writes) to end;
    # Tune's default of 2 s fails the next trial on a busy machine.
    "TUNE_FUNCTION_THREAD_TIMEOUT_S": "60",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    # The client's own retries back off for minutes; a trial keeps training while MLflow is away,
    # so its requests fail fast and MlflowTrialRecorder buffers what did not arrive.
    **TRIAL_MLFLOW_ENV,
}


def study_id_for(spec: StudySpec, storage_dir: Path, *, resume: bool) -> str:
    """`<name>-<hash of the spec>`: the same spec resumes the same study; a fresh run gets a new suffix."""
    # Defaults left out: an option added later (with a default) leaves the ids of existing specs as they were.
    base = f"{spec.name}-{hashlib.sha256(spec.model_dump_json(exclude_defaults=True).encode()).hexdigest()[:8]}"
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
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # MLflow holds the curves
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # Tune's experiment state and result files are for Tune alone (a study never restores from them, and
    # writes no result.json): a missed copy or a missing file is nothing the user can act on.
    logging.getLogger("ray.tune.execution.experiment_state").setLevel(logging.CRITICAL)
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    logging.getLogger("ray.tune.tune").setLevel(logging.WARNING)  # "Wrote the latest version of … experiment state"
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
    optuna_storage: str | None = None,
    ray_address: str | None = None,
    sink: ProgressSink | None = None,
) -> StudyResults:
    """Run (or continue) a whole study; returns its results (also in MLflow as results.json).

    `optuna_storage`: an SQLAlchemy URL of the service's database (Optuna keeps its tables beside it);
    by default a journal file in the study's folder.
    """
    sink = sink or ProgressSink()
    paths = StudyPaths(Path(storage_dir).resolve() / study_id)  # Tune's storage needs an absolute path
    paths.root.mkdir(parents=True, exist_ok=True)
    ensure_ray(ray_address)
    runs = StudyRuns.open(mlflow_uri, spec, study_id)
    SINKS[study_id] = sink
    try:
        check_placeable(spec)
        searcher = PerActivationSearcher(spec, study_id, open_storage(optuna_storage or paths.optuna))
        kept = searcher.summaries()
        lost = sum(len(v) for v in searcher.retried.values())
        if any(kept.values()) or lost:
            log.info("resuming study %s: %d finished trials kept, %d lost with a driver run again",
                     study_id, sum(len(v) for v in kept.values()), lost)
        runs.close_interrupted({t.key: t.status for ts in kept.values() for t in ts})
        sink.started(spec, study_id, runs.parent_url)
        ctx = StudyContext(spec, study_id, paths, runs, mlflow_uri)
        trials = run_search(ctx, searcher)
        best = {label: b for label in spec.labels if (b := best_trial(trials[label])) is not None}
        if not best:
            raise RuntimeError("no activation finished a single trial (all diverged, were pruned or failed)")
        scores = run_confirm(ctx, best)
        results = build_results(spec, study_id, trials, best, scores)
        results.mlflow = runs.links()
        runs.finish(results, trials, best, scores, searcher.studies())
        sink.finished(results)
        return results
    except BaseException as exc:
        reason = f"{type(exc).__name__}: {exc}"
        runs.fail(reason, status="KILLED" if isinstance(exc, (KeyboardInterrupt, SystemExit)) else "FAILED")
        sink.failed(reason)
        raise
    finally:
        SINKS.pop(study_id, None)
