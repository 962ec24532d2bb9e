"""Run a study end to end: per-activation search, confirmation with K seeds, statistics, MLflow.

The same code is the CLI's `actstudy run` and the service's Ray job (`python -m studies.driver ID`).
A study's truth lives in its stores (see DESIGN.md): the search in Optuna storage, every run and the
confirmation scores in MLflow, checkpoints by trial key. Running a study whose stores already hold part
of it continues it: finished trials and seeds are kept, trials that were running are run again.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from studies.confirm import run_confirm
from studies.execution import SINKS, ProgressSink, StudyContext, StudyPaths, check_placeable, driver_settings, ensure_ray
from studies.mlflow import StudyAnswer, StudyRuns
from studies.report import best_trial, build_results
from studies.search import PerActivationSearcher, open_storage, run_search
from studies.settings import DriverSettings
from studies.spec import StudyOutcome, StudyResults, StudySpec

log = logging.getLogger(__name__)


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


def run_study(
    spec: StudySpec,
    *,
    study_id: str,
    storage_dir: str | Path,
    mlflow_uri: str,
    optuna_storage: str | None = None,
    ray_address: str | None = None,
    mlflow_public_url: str | None = None,
    sink: ProgressSink | None = None,
    code_folder: str | Path | None = None,
) -> StudyResults:
    """Run (or continue) a whole study; returns its results (also in MLflow as results.json).

    `optuna_storage`: an SQLAlchemy URL of the service's database (Optuna keeps its tables beside it);
    by default a journal file in the study's folder. `ray_address` and `mlflow_public_url` default to the
    driver's settings ($RAY_ADDRESS, $ACTSTUDY_MLFLOW_PUBLIC_URL). `code_folder`: your code, given to the trials
    as Ray's `working_dir` (a driver the service launched already runs in its job's).
    """
    settings = DriverSettings()
    ray_address = ray_address or settings.ray_address
    mlflow_public_url = mlflow_public_url or settings.mlflow_public_url
    sink = sink or ProgressSink()
    paths = StudyPaths(Path(storage_dir).resolve() / study_id)  # Tune's storage needs an absolute path
    with driver_settings():
        paths.root.mkdir(parents=True, exist_ok=True)
        ensure_ray(ray_address, working_dir=code_folder)
        runs = StudyRuns.open(mlflow_uri, spec, study_id, public_url=mlflow_public_url)
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
            produced = StudyOutcome(trials=trials, best=best, scores=run_confirm(ctx, best))
            results = build_results(spec, study_id, produced)
            results.mlflow = runs.links()
            runs.finish(StudyAnswer(spec, results, produced, searcher.studies()))
            sink.finished(results)
            return results
        except BaseException as exc:
            reason = f"{type(exc).__name__}: {exc}"
            runs.fail(reason, status="KILLED" if isinstance(exc, (KeyboardInterrupt, SystemExit)) else "FAILED")
            sink.failed(reason)
            raise
        finally:
            SINKS.pop(study_id, None)
