"""What a study reports, typed: its status, its progress while it runs and its results when it ends.

Built once (`studies.execution`'s progress, `studies.report.build_results`) and read by the runner, the
report, MLflow, the console, the records and the API (whose OpenAPI schema is these models). A statistic
that does not exist (the CI of one seed's mean, a p-value without pairs) is NaN in memory and null in JSON.
"""

from __future__ import annotations

import enum
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Phase = Literal["search", "confirm"]
TrialStatus = Literal["completed", "pruned", "diverged", "error"]  # how a search trial ended


def outcome(result: dict | None, epochs: int, error: bool = False) -> TrialStatus:
    """completed | pruned | diverged | error: how a trial ended, from its last result."""
    result = result or {}
    if error:
        return "error"
    if result.get("diverged"):
        return "diverged"
    # `epoch`, not Tune's training_iteration: a trial continued from a checkpoint in a new experiment
    # counts its reports from 1 again.
    return "pruned" if result.get("epoch", 0) < epochs else "completed"


class StudyStatus(str, enum.Enum):
    queued = "queued"
    running = "running"
    cancelling = "cancelling"  # asked to stop: its driver, or MLflow runs it left open, are still being ended
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (StudyStatus.succeeded, StudyStatus.failed, StudyStatus.cancelled)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="null")

    def plain(self) -> dict:
        """JSON-ready values, as the records and MLflow artifacts hold them (a missing statistic, NaN, as None)."""
        return json.loads(self.model_dump_json())


# --- progress ----------------------------------------------------------------------------------------


class ActivationProgress(_Model):
    done: int = Field(description="trials (search) or seeds (confirm) that ended")
    running: int = 0
    total: int
    best: float | None = Field(None, description="best validation (search) or test (confirm) accuracy so far")


class PhaseProgress(_Model):
    phase: Phase
    activations: dict[str, ActivationProgress]


class StudyProgress(_Model):
    """Every phase a driver has reported, and which one runs now."""

    phase: Phase | None = None
    phases: dict[Phase, PhaseProgress] = {}

    def current(self) -> PhaseProgress | None:
        return self.phases.get(self.phase) if self.phase else None


# --- results -----------------------------------------------------------------------------------------


class TrialSummary(_Model):
    """One finished search trial, as the search store holds it."""

    number: int = Field(description="the Optuna trial number")
    key: str = Field(description="the trial key its checkpoints and MLflow runs are found by")
    lr: float
    l2: float
    status: TrialStatus
    epochs: int
    val_acc: float | None = Field(description="at its last epoch; none if it diverged")


class Summary(_Model):
    """Test accuracy over the confirmation seeds."""

    n: int
    values: list[float]
    mean: float | None
    std: float | None = Field(description="sample standard deviation (0 for one seed)")
    ci95: tuple[float | None, float | None] = Field(description="two-sided 95% t interval of the mean")


class PairedTest(_Model):
    """An activation against the baseline over the seeds both have."""

    mean_diff: float | None
    n_pairs: int
    p_value: float | None = Field(description="paired t-test; none when not testable")
    p_holm: float | None = Field(description="Holm-adjusted over the study's activations; none when not testable")
    significant: bool = Field(description="p_holm < 0.05; never when not testable")
    not_testable: str | None = Field(None, description="why no test was made (fewer than 2 shared seeds, or the "
                                                       "same difference on every seed: zero variance)")


class TrialCounts(_Model):
    completed: int = 0
    pruned: int = 0
    diverged: int = 0
    error: int = 0


class BestParams(_Model):
    lr: float
    l2: float


class ActivationResult(_Model):
    best_params: BestParams | None = Field(description="the search's best setting; none if no trial completed")
    best_val_acc: float | None
    trials: TrialCounts
    test_acc: Summary
    vs_baseline: PairedTest | None = Field(None, description="none for the baseline itself")

    @field_validator("best_params", mode="before")
    @classmethod
    def _none_if_empty(cls, value):
        return value or None  # results stored before this model held {} for "no completed trial"


class RunLink(_Model):
    run_id: str
    url: str | None


class MlflowLinks(_Model):
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    parent_run_url: str | None
    experiment_url: str | None = Field(None, description="the experiment's runs table in the MLflow UI")
    activation_runs: dict[str, RunLink]


class StudyResults(_Model):
    study_id: str
    name: str
    baseline: str
    seeds: list[int] = Field(description="the confirmation seeds, shared by every activation")
    ranking: list[str] = Field(description="activation labels by mean test accuracy, best first")
    best_activation: str | None
    activations: dict[str, ActivationResult]
    mlflow: MlflowLinks | None = None

    def rank(self, label: str) -> int:
        return self.ranking.index(label) + 1


class StudyOutcome(_Model):
    """What a study's two phases produced, before the statistics: the search's trials, each activation's best
    trial, and the confirmation's test accuracy by seed."""

    trials: dict[str, list[TrialSummary]]
    best: dict[str, TrialSummary]
    scores: dict[str, dict[int, float]]


class ConfirmCell(_Model):
    """One confirmation run: an activation's best setting, trained with one of the shared seeds."""

    label: str
    activation: str
    activation_params: dict
    lr: float
    l2: float
    seed: int
    trial_key: str = Field(description="the cell across drivers and attempts (its MLflow runs are found by it)")
