"""The Tune trainable of every study trial, in a module of its own.

A trial actor unpickles the trainable by reference and imports its module: this one needs only the
workers and the MLflow recorder, not the study layer's Optuna, SciPy and matplotlib (≈1 CPU s an actor).
"""

from __future__ import annotations

from studies.tracking import MlflowTrialRecorder
from workers.trainable import run_trial


def study_trial(config: dict) -> None:
    """One trial logged to MLflow. Confirmation trials carry their cell (label, seed, lr, l2) in `cell`."""
    config = {**config, **config.get("cell", {})}
    run_trial(config, MlflowTrialRecorder())
