"""What both phases of a study share: its folders, the trials' base config, and a fresh Tune experiment.

Tune only executes: each driver builds new experiments from what the study's stores hold (Optuna for the
search, MLflow for confirmation seeds) and never restores one; Tune saves its own state on its default
schedule, for its own use.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ray import tune

from studies.spec import StudySpec
from studies.trainable import population_trainable, study_trainable

if TYPE_CHECKING:
    from studies.mlflow import StudyRuns

TRIAL_RETRIES = 2  # infrastructure failures (a worker died) retried by Tune


@dataclass
class StudyPaths:
    root: Path

    @property
    def tune(self) -> Path:
        return self.root / "tune"

    @property
    def checkpoints(self) -> Path:
        """Trials' checkpoints by trial key; on a multi-node cluster this folder must be shared storage."""
        return self.root / "checkpoints"

    @property
    def optuna(self) -> Path:
        """The search's journal (`actstudy run`; the service keeps it beside its database)."""
        return self.root / "optuna.log"


@dataclass
class StudyContext:
    spec: StudySpec
    study_id: str
    paths: StudyPaths
    runs: StudyRuns
    mlflow_uri: str

    def base_config(self, kind: Literal["trial", "confirm"]) -> dict:
        """The Tune config every trial of a phase shares (see studies.trial_run); the phase adds the activation,
        lr, l2, seed, label and key."""
        shared = self.spec.trial_config(evaluate_test=kind == "confirm").to_dict()
        for per_trial in ("activation", "activation_params", "lr", "l2"):  # each trial's own, never a default
            del shared[per_trial]
        return {**shared, "study_id": self.study_id, "kind": kind, "checkpoint_root": str(self.paths.checkpoints),
                "mlflow_uri": self.mlflow_uri, "mlflow_experiment_id": self.runs.experiment_id,
                "mlflow_parent_runs": dict(self.runs.activation_runs)}

    def tuner(self, phase: str, callbacks: list, *, populations: bool = False, **kwargs) -> tune.Tuner:
        """A new Tune experiment for one phase of this driver (a unique name: earlier drivers' stay apart); its
        trials are populations (studies.trial_run) when `populations`."""
        run_config = tune.RunConfig(
            name=f"{phase}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}",
            storage_path=str(self.paths.tune),
            failure_config=tune.FailureConfig(max_failures=TRIAL_RETRIES),
            callbacks=callbacks,
            verbose=0,
        )
        resources = {"cpu": self.spec.resources.cpus_per_trial, "gpu": self.spec.resources.gpus_per_trial}
        trainable = population_trainable if populations else study_trainable
        return tune.Tuner(tune.with_resources(trainable, resources), run_config=run_config, **kwargs)
