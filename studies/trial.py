"""The Tune trainable of every study trial, in a module of its own.

A trial actor unpickles the trainable by reference and imports its module: this one needs only the
workers and the MLflow recorder, not the study layer's Optuna, SciPy and matplotlib (≈1 CPU s an actor).
"""

from __future__ import annotations

from pathlib import Path

from studies.tracking import MlflowTrialRecorder
from workers.trainable import run_trial


def study_trial(config: dict) -> None:
    """One trial logged to MLflow. Confirmation trials carry their cell (label, seed, lr, l2, key) in `cell`.

    Its checkpoints live under the study's folder by trial key, so every attempt of the trial, from any
    driver, continues from the newest one.
    """
    config = {**config, **config.get("cell", {})}
    if config.get("checkpoint_root") and config.get("trial_key"):
        config["checkpoint_dir"] = str(Path(config["checkpoint_root"]) / config["trial_key"])
    run_trial(config, MlflowTrialRecorder())
