"""The Tune trainable of every study trial, in a module of its own.

A trial actor unpickles the trainable by reference and imports its module: this one needs only the workers,
the trial's run and the MLflow recorder, not the study layer's Optuna, SciPy and matplotlib (≈1 CPU s an actor;
`tests/studies/test_layout.py` keeps it so).
"""

from __future__ import annotations

from studies.mlflow import MlflowTrialRecorder, ended_members
from studies.trial_run import split_config, split_population
from workers import run_trial
from workers.population import SuccessiveHalving, run_population


def study_trainable(config: dict) -> None:
    """One trial logged to MLflow. Its checkpoints live under the study's folder by trial key, so every
    attempt of the trial, from any driver, continues from the newest one."""
    cfg, run = split_config(config)
    run_trial(cfg, MlflowTrialRecorder(run), checkpoint_dir=run.checkpoint_dir)


def population_trainable(config: dict) -> None:
    """A population of trials (see studies.trial_run) trained as one, each member logged to its own MLflow run."""
    cfgs, runs = split_population(config)
    done = ended_members(runs)  # a retry of this population (its worker died): who already ended stays ended
    cfgs, runs = [c for c, r in zip(cfgs, runs, strict=True) if r.trial_key not in done], [r for r in runs if r.trial_key not in done]
    if not runs:
        return
    halving = config.get("halving")
    prune = None
    if halving:
        prune = SuccessiveHalving(halving["milestones"], halving["history"])
        for values in done.values():  # the ended members' values still count at the rungs, as in the first attempt
            for epoch in prune.milestones & set(values):
                prune.history.setdefault(epoch, []).append(values[epoch])
    run_population(cfgs, [run.trial_key for run in runs], [MlflowTrialRecorder(run) for run in runs], prune=prune)
