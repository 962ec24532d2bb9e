"""A study's results: the best setting per activation, confirmation seeds, the ranking with statistics."""

from __future__ import annotations

import math

from studies import report
from studies.spec import StudySpec

CONFIRM_SEED_OFFSET = 1000  # confirmation seeds differ from the search seed, and are shared by all activations
TRIAL_STATUSES = ("completed", "pruned", "diverged", "error")


def confirm_seeds(spec: StudySpec) -> list[int]:
    return [spec.seed + CONFIRM_SEED_OFFSET + i for i in range(spec.confirm.seeds)]


def best_params(trials: list[dict]) -> dict | None:
    """The finished, non-diverged trial with the best final validation accuracy (the lowest number on a tie)."""
    done = [t for t in trials if t["status"] == "completed" and t["val_acc"] is not None and math.isfinite(t["val_acc"])]
    if not done:
        return None
    best = max(done, key=lambda t: (t["val_acc"], -t.get("number", 0)))
    return {"lr": best["lr"], "l2": best["l2"], "val_acc": best["val_acc"]}


def build_results(spec: StudySpec, study_id: str, trials: dict, best: dict, scores: dict) -> dict:
    summaries = {label: report.summarize(list(scores.get(label, {}).values())) for label in spec.labels}
    paired = report.paired_vs_baseline(scores, spec.confirm.baseline)
    ranking = report.rank(summaries)
    acts = {}
    for label in spec.labels:
        counts = {s: sum(1 for t in trials[label] if t["status"] == s) for s in TRIAL_STATUSES}
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
