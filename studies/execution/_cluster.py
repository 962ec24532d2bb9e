"""The Ray cluster a study runs on: connecting to it (or starting a local one), and what it can hold."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import optuna
import ray

from studies.mlflow import TRIAL_MLFLOW_ENV
from studies.spec import StudySpec

TRIAL_ENV = {
    # A reused actor waits this long for the previous trial's thread (its last MLflow writes) to end;
    # Tune's default of 2 s fails the next trial on a busy machine.
    "TUNE_FUNCTION_THREAD_TIMEOUT_S": "60",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    # The client's own retries back off for minutes; a trial keeps training while MLflow is away,
    # so its requests fail fast and MlflowTrialRecorder buffers what did not arrive.
    **TRIAL_MLFLOW_ENV,
}
# What the driver process tells Tune and MLflow while a study runs (they read these from the environment).
DRIVER_ENV = {
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # MLflow holds the curves: no CSV/JSON/TensorBoard result files
    "RAY_AIR_NEW_OUTPUT": "0",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
# Tune's experiment state and result files are for Tune alone (a study never restores from them, and writes
# no result.json): a missed copy or a missing file is nothing the user can act on.
DRIVER_LOG_LEVELS = {
    "ray.tune.execution.experiment_state": logging.CRITICAL,
    "ray.tune.analysis.experiment_analysis": logging.ERROR,
    "ray.tune.tune": logging.WARNING,  # "Wrote the latest version of … experiment state"
}


@contextlib.contextmanager
def driver_settings() -> Iterator[None]:
    """DRIVER_ENV, DRIVER_LOG_LEVELS and Optuna's verbosity (warnings) while a study runs in this process (a variable the user set is kept),
    and everything as it was afterwards."""
    saved_env = {k: os.environ.get(k) for k in DRIVER_ENV}
    saved_levels = {name: logging.getLogger(name).level for name in DRIVER_LOG_LEVELS}
    saved_optuna = optuna.logging.get_verbosity()
    for key, value in DRIVER_ENV.items():
        os.environ.setdefault(key, value)
    for name, level in DRIVER_LOG_LEVELS.items():
        logging.getLogger(name).setLevel(level)
    optuna.logging.set_verbosity(min(saved_optuna, optuna.logging.WARNING))  # no "study created" line per activation
    try:
        yield
    finally:
        optuna.logging.set_verbosity(saved_optuna)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)


def ensure_ray(address: str | None = None, *, working_dir: str | os.PathLike | None = None) -> None:
    """Connect to `address` (a Ray cluster), else start a local Ray on this machine's CPUs; once per process.
    `working_dir`: a folder of code Ray ships to every worker and puts on its path."""
    if ray.is_initialized():
        return
    runtime_env: dict = {"env_vars": TRIAL_ENV}
    if working_dir:
        runtime_env["working_dir"] = str(Path(working_dir).resolve())
    if address:
        ray.init(address=address, log_to_driver=False, runtime_env=runtime_env)
    else:
        ray.init(include_dashboard=False, log_to_driver=False, runtime_env=runtime_env)


class UnplaceableTrials(RuntimeError):
    """No node of the cluster has the resources one trial asks for: the study would wait forever."""


def check_placeable(spec: StudySpec) -> None:
    """Raise UnplaceableTrials, naming the resource and what the largest node has, unless some live node can
    hold one trial. An autoscaling cluster counts only the nodes it has now."""
    short = spec.resources.unplaceable([n["Resources"] for n in ray.nodes() if n.get("Alive")])
    if short:
        raise UnplaceableTrials("no node of the cluster can run a trial: "
                                + "; ".join(f"resources.{field}: {why}" for field, why in short))


def cluster_slots(spec: StudySpec) -> int:
    """How many trials the Ray cluster fits at once: its CPUs, and its GPUs when trials take GPUs."""
    have = ray.cluster_resources()
    slots = int(have.get("CPU", 1) // spec.resources.cpus_per_trial)
    if spec.resources.gpus_per_trial > 0:
        slots = min(slots, int(have.get("GPU", 0) // spec.resources.gpus_per_trial))
    return max(1, slots)
