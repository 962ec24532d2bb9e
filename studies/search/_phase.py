"""Phase 1: tune every activation's lr and l2 in one Tune experiment, the search's state in Optuna."""

from __future__ import annotations

from ray import tune

from studies.execution import ProgressCallback, StudyContext, cluster_slots, emit, phase_progress
from studies.mlflow import RunEnds
from studies.search._scheduler import make_scheduler
from studies.search._searcher import METRIC, MODE, PerActivationSearcher
from studies.spec import TrialSummary


def _progress(trials: dict[str, list[TrialSummary]]) -> tuple[dict, dict]:
    done = {label: len(ts) for label, ts in trials.items()}
    best = {label: max((t.val_acc for t in ts if t.status != "diverged" and t.val_acc is not None), default=None)
            for label, ts in trials.items()}
    return done, best


def run_search(ctx: StudyContext, searcher: PerActivationSearcher, *, reuse_actors: bool = True) -> dict[str, list[TrialSummary]]:
    """Run what is left of every activation's budget; returns {label: [finished trial summaries]}. `reuse_actors`:
    Tune's, on by default (bench/orchestration.py measures both)."""
    spec = ctx.spec
    totals = {label: spec.search.trials_per_activation for label in spec.labels}
    done, best = _progress(searcher.summaries())
    if any(done[label] < totals[label] for label in totals):
        tuner = ctx.tuner(
            "search",
            [ProgressCallback(ctx.study_id, "search", totals, done, best), RunEnds(ctx.mlflow_uri, spec.training.epochs)],
            populations=spec.search.population > 1,
            param_space=ctx.base_config("trial"),
            tune_config=tune.TuneConfig(
                metric=METRIC,
                mode=MODE,
                search_alg=searcher,
                # Tune keeps one trial of a custom searcher pending at a time unless it is wrapped in a
                # ConcurrencyLimiter (which this does); with reuse_actors the actor started for a lone pending
                # trial goes to waste whenever a running trial ends first, so say how many the cluster fits.
                max_concurrent_trials=spec.search.max_concurrent_trials or cluster_slots(spec),
                scheduler=make_scheduler(spec),
                # The searcher says when the budgets are spent (FINISHED).
                num_samples=-1,
                reuse_actors=reuse_actors,
            ),
        )
        tuner.fit()
    ctx.runs.sweep("trial")
    trials = searcher.summaries()
    done, best = _progress(trials)
    emit(ctx.study_id, phase_progress("search", totals, done, {}, best))
    return trials
