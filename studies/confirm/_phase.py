"""Phase 2: re-train each activation's best setting with the shared seeds and score it on test data.

A seed whose run already finished in MLflow (an earlier driver ran it) is not run again.
"""

from __future__ import annotations

from ray import tune

from studies.execution import ProgressCallback, StudyContext, emit, phase_progress
from studies.mlflow import RunEnds
from studies.spec import ConfirmCell, StudySpec, TrialSummary


def confirm_key(labels: list[str], label: str, seed: int) -> str:
    """A confirmation cell's key across drivers and attempts (safe characters only: an MLflow filter value)."""
    return f"a{labels.index(label)}-s{seed}"


def confirm_cells(spec: StudySpec, best: dict[str, TrialSummary]) -> list[ConfirmCell]:
    """Every (activation, seed) the confirmation trains: each activation's best setting with each shared seed."""
    cells = []
    for label, trial in best.items():
        act = spec.activation(label)
        cells += [ConfirmCell(label=label, activation=act.name, activation_params=act.params, lr=trial.lr, l2=trial.l2, seed=seed,
                              trial_key=confirm_key(spec.labels, label, seed)) for seed in spec.confirm_seeds()]
    return cells


def run_confirm(ctx: StudyContext, best: dict[str, TrialSummary]) -> dict[str, dict[int, float]]:
    """Test accuracy by label and seed, of each activation's best search trial's setting."""
    spec = ctx.spec
    cells = confirm_cells(spec, best)
    finished = ctx.runs.finished_confirmations()
    scores: dict[str, dict[int, float]] = {label: {} for label in best}
    for c in cells:
        if c.trial_key in finished:
            scores[c.label][c.seed] = finished[c.trial_key]
    todo = [c.model_dump() for c in cells if c.trial_key not in finished]  # Tune's config holds plain values
    totals = {label: spec.confirm.seeds for label in best}

    def progress_now() -> tuple[dict, dict]:
        return {label: len(s) for label, s in scores.items()}, {label: max(s.values(), default=None) for label, s in scores.items()}

    if todo:
        done, top = progress_now()
        tuner = ctx.tuner(
            "confirm",
            [ProgressCallback(ctx.study_id, "confirm", totals, done, top), RunEnds(ctx.mlflow_uri, spec.training.epochs)],
            param_space={**ctx.base_config("confirm"), "cell": tune.grid_search(todo)},
            tune_config=tune.TuneConfig(metric="test_acc", mode="max", reuse_actors=True),
        )
        for result in tuner.fit():
            cell, last = ConfirmCell.model_validate(result.config["cell"]), result.metrics or {}
            if not result.error and "test_acc" in last and not last.get("diverged"):
                scores[cell.label][cell.seed] = float(last["test_acc"])
    ctx.runs.sweep("confirm")
    done, top = progress_now()
    emit(ctx.study_id, phase_progress("confirm", totals, done, {}, top))
    return scores
