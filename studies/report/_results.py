"""A study's results: the best setting per activation, confirmation seeds, the ranking with statistics."""

from __future__ import annotations

import math
import typing

from studies.report._statistics import paired_vs_baseline, rank, summarize
from studies.spec import ActivationResult, BestParams, StudyOutcome, StudyResults, StudySpec, TrialCounts, TrialStatus, TrialSummary

TRIAL_STATUSES = typing.get_args(TrialStatus)


def best_trial(trials: list[TrialSummary]) -> TrialSummary | None:
    """The finished, non-diverged trial with the best final validation accuracy (the lowest number on a tie)."""
    done = [t for t in trials if t.status == "completed" and t.val_acc is not None and math.isfinite(t.val_acc)]
    return max(done, key=lambda t: (t.val_acc, -t.number), default=None)


def build_results(spec: StudySpec, study_id: str, produced: StudyOutcome) -> StudyResults:
    summaries = {label: summarize(list(produced.scores.get(label, {}).values())) for label in spec.labels}
    paired = paired_vs_baseline(produced.scores, spec.confirm.baseline)
    ranking = rank(summaries)
    acts = {}
    for label in spec.labels:
        found = produced.best.get(label)
        acts[label] = ActivationResult(
            best_params=BestParams(lr=found.lr, l2=found.l2) if found else None,
            best_val_acc=found.val_acc if found else None,
            trials=TrialCounts(**{s: sum(1 for t in produced.trials[label] if t.status == s) for s in TRIAL_STATUSES}),
            test_acc=summaries[label],
            vs_baseline=paired.get(label),
        )
    return StudyResults(study_id=study_id, name=spec.name, baseline=spec.confirm.baseline, seeds=spec.confirm_seeds(),
                        ranking=ranking, best_activation=ranking[0] if ranking else None, activations=acts)
