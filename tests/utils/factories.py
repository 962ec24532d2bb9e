"""Factories for the service tests: specs, owners, tokens and study rows, without going through Ray."""

from __future__ import annotations

import copy
import secrets
import uuid
from typing import Any

from service.auth import TokenStore
from studies.records import RecordStore, Study, StudyStatus
from studies.spec import StudyResults

# The smallest study the service accepts: two activations, one trial, one epoch, one seed.
TINY_SPEC: dict[str, Any] = {
    "name": "tiny",
    "dataset": {"name": "mnist1d"},
    "model": {"name": "mlp", "hidden": [16]},
    "activations": ["relu", "telu"],
    "search": {"trials_per_activation": 1},
    "training": {"epochs": 1, "batch_size": 128},
    "confirm": {"seeds": 1},
}

# The e2e study: relu, telu, pwlu, lslu; a few trials; 2 epochs.
SMALL_SPEC: dict[str, Any] = {
    "name": "e2e-small",
    "dataset": {"name": "mnist1d"},
    "model": {"name": "mlp", "hidden": [32, 32]},
    "activations": ["relu", "telu", {"name": "pwlu", "stats_steps": 10}, "lslu"],
    # A learning-rate range no trial diverges in, so every count is exact. No pruner: with epochs == grace
    # ASHA's only rung is the last epoch, and a trial stopped there is logged to MLflow as pruned (KILLED)
    # although it trained every epoch (reported to the lead; the default pruner here reproduces it).
    "search": {"trials_per_activation": 2, "lr": {"low": 1e-3, "high": 3e-2}, "pruner": "none"},
    "training": {"epochs": 2, "batch_size": 128},
    "confirm": {"seeds": 2},
}


def spec(base: dict | None = None, **overrides: Any) -> dict:
    """A deep copy of `base` (TINY_SPEC by default) with top-level keys replaced."""
    out = copy.deepcopy(base if base is not None else TINY_SPEC)
    out.update(copy.deepcopy(overrides))
    return out


def unique_owner(prefix: str = "owner") -> str:
    """Owners are unique per test, so tests sharing one database never see each other's rows."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_token(store: RecordStore, owner: str | None = None) -> tuple[str, str]:
    """(owner, token) for a fresh owner (or the one given)."""
    owner = owner or unique_owner()
    return owner, TokenStore(store).create(owner)


def add_study(store: RecordStore, owner: str, *, status: StudyStatus | str = StudyStatus.queued,
              results: dict | None = None, ray_job_id: str | None = None, **values: Any) -> str:
    """Insert a study row directly (no Ray job), as the service would after a submission."""
    study_id = secrets.token_hex(6)
    status = StudyStatus(status)
    with store.session() as s:
        s.add(Study(id=study_id, owner=owner, name=values.pop("name", "factory"), spec=values.pop("spec", spec()),
                    status=status.value, results=results, ray_job_id=ray_job_id, **values))
    return study_id


def results_for(labels: list[str], baseline: str | None = None) -> dict:
    """A results document of the shape the driver writes (studies.runner.build_results)."""
    baseline = baseline or labels[0]
    acts = {}
    for i, label in enumerate(labels):
        mean = 0.9 - 0.1 * i
        acts[label] = {
            "best_params": {"lr": 1e-3, "l2": 1e-5},
            "best_val_acc": mean,
            "trials": {"completed": 1, "pruned": 0, "diverged": 0, "error": 0},
            "test_acc": {"n": 2, "values": [mean, mean], "mean": mean, "std": 0.0, "ci95": [mean, mean]},
            "vs_baseline": None if label == baseline else {"mean_diff": mean - 0.9, "n_pairs": 2, "p_value": 0.5,
                                                             "p_holm": 0.5, "significant": False},
        }
    return StudyResults.model_validate({
        "study_id": "x", "name": "factory", "baseline": baseline, "seeds": [1000, 1001], "ranking": list(labels),
        "best_activation": labels[0], "activations": acts, "mlflow": None}).model_dump(mode="json")
