"""A study trial's place in its study (`TrialRun`) and the shape of its Tune config.

A study trial's Tune config is flat: `workers.config.TrialConfig`'s options plus `TrialRun`'s (whose
trial it is and where it records); a confirmation trial carries its cell (label, seed, lr, l2, key) in
`cell`; a population (`search.population` > 1) carries its members' own keys (optuna_trial, trial_key, lr, l2)
in `members` and its pruning in `halving` ({milestones, history}). A key that is none of these is an error,
never silently ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from workers import TrialConfig


class TrialRun(BaseModel):
    """What a study adds to a trial's options: its place in the study and where it records."""

    model_config = ConfigDict(extra="forbid")

    study_id: str = ""
    label: str  # the activation's label in the study (`pwlu(segments=8)`)
    kind: Literal["trial", "confirm"] = "trial"
    trial_key: str = ""  # the trial across attempts and drivers: checkpoints and MLflow runs are found by it
    optuna_trial: int | None = None
    checkpoint_root: str | None = None  # checkpoints go to <root>/<trial_key>
    mlflow_uri: str | None = None  # none: the trial records nothing
    mlflow_experiment_id: str = ""
    mlflow_parent_runs: dict[str, str] = {}  # label → the activation's run

    @property
    def checkpoint_dir(self) -> Path | None:
        return Path(self.checkpoint_root) / self.trial_key if self.checkpoint_root and self.trial_key else None


def flatten(config: dict[str, Any]) -> dict[str, Any]:
    """The config with a confirmation trial's cell merged in."""
    return {**{k: v for k, v in config.items() if k != "cell"}, **config.get("cell", {})}


def split_config(config: dict[str, Any]) -> tuple[TrialConfig, TrialRun]:
    """A study trial's Tune config as its training options and its run; an unknown key raises, naming it."""
    flat = flatten(config)
    return TrialConfig.model_validate({k: v for k, v in flat.items() if k in TrialConfig.model_fields}), run_of(flat)


POPULATION_KEYS = ("members", "halving")


def is_population(config: dict[str, Any]) -> bool:
    return "members" in config


def _member_configs(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Each member's flat config: the population's shared keys with the member's own."""
    shared = {k: v for k, v in config.items() if k not in POPULATION_KEYS}
    return [{**shared, **member} for member in config["members"]]


def split_population(config: dict[str, Any]) -> tuple[list[TrialConfig], list[TrialRun]]:
    """A population's Tune config as each member's training options and run (its halving is `config['halving']`)."""
    pairs = [split_config(member) for member in _member_configs(config)]
    return [cfg for cfg, _ in pairs], [run for _, run in pairs]


def member_runs(config: dict[str, Any]) -> list[TrialRun]:
    """Every run of a Tune trial's config: the population's members, or the trial's own."""
    return [run_of(member) for member in _member_configs(config)] if is_population(config) else [run_of(config)]


def run_of(config: dict[str, Any]) -> TrialRun:
    """The run part of a study trial's Tune config (its label, kind and key)."""
    return TrialRun.model_validate({k: v for k, v in flatten(config).items() if k not in TrialConfig.model_fields})


MEMBER_ENDS = ("completed", "pruned", "diverged")  # a member's status once it trains no more ("running" before)


def members_of(result: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """A population's report of its members (trial key → {epoch, val_acc, status, mlflow_run_id, rungs}), from a
    Tune result as reported or as Tune flattens it for searchers and schedulers (`members/<key>/<field>`)."""
    result = result or {}
    if isinstance(result.get("members"), dict):
        return result["members"]
    out: dict[str, dict[str, Any]] = {}
    for name, value in result.items():
        if not name.startswith("members/"):
            continue
        _, key, field = name.split("/", 2)
        member = out.setdefault(key, {"rungs": {}})
        if field.startswith("rungs/"):
            member["rungs"][field.removeprefix("rungs/")] = value
        else:
            member[field] = value
    return out
