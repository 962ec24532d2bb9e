"""The Tune trainable of every study trial, in a module of its own.

A trial actor unpickles the trainable by reference and imports its module: this one needs only the workers,
the trial's run and the MLflow recorder, not the study layer's Optuna, SciPy and matplotlib (≈1 CPU s an actor;
`tests/studies/test_layout.py` keeps it so).
"""

from __future__ import annotations

from studies.mlflow import MlflowTrialRecorder
from studies.trial_run import split_config
from workers import run_trial


def study_trainable(config: dict) -> None:
    """One trial logged to MLflow. Its checkpoints live under the study's folder by trial key, so every
    attempt of the trial, from any driver, continues from the newest one."""
    cfg, run = split_config(config)
    run_trial(cfg, MlflowTrialRecorder(run), checkpoint_dir=run.checkpoint_dir)
