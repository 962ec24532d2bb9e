"""The body of a Ray Tune trial (`run_trial`): `workers.train.train` reporting each epoch to Tune,
checkpointing, resuming. The studies layer's Tune trainable (`studies.execution.study_trainable`) calls it.

Checkpoints go to a folder the caller names (`checkpoint_dir`), not to Tune's storage: a
study keys it by study, activation and Optuna trial, so any later attempt of the same trial (Tune's
retry after a worker died, or a new driver's retry after the old one died) continues from it.
Recorders (e.g. the studies layer's MLflow logger) see the trial's life without this layer knowing them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from ray import tune

from workers.config import TrialConfig
from workers.train import TrainState, TrialResult, train

CHECKPOINT_EVERY = 5  # epochs; and always at the end and on divergence


class TrialRecorder:
    """Hooks around one attempt of a trial. Call order: start → epoch × n → end (or nothing, if killed).

    `state()` is saved into every checkpoint and handed back to `start` of the attempt that resumes it.
    All hooks are optional no-ops.
    """

    def start(self, cfg: TrialConfig, previous: dict | None, history: list[dict] | None = None) -> None:
        """`previous` is what `state()` returned in the attempt that saved the checkpoint; `history` its epochs."""

    def epoch(self, record: dict) -> None: ...

    def end(self, result: TrialResult) -> None: ...

    def failed(self, error: BaseException) -> None: ...

    def stopped(self) -> None:
        """Tune stopped the trial early (a scheduler's pruning decision)."""

    def state(self) -> dict:
        return {}

    def metrics(self) -> dict:
        """Extra values to report to Tune with each epoch (e.g. the run id)."""
        return {}


class CheckpointDir:
    """`epoch-00005/` folders in one directory; each written under a temporary name, then renamed."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def latest(self) -> TrainState | None:
        done = sorted(self.path.glob("epoch-*")) if self.path.is_dir() else []
        return TrainState.load(done[-1]) if done else None

    def save(self, state: TrainState) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        final = self.path / f"epoch-{state.epoch:05d}"
        tmp = Path(tempfile.mkdtemp(dir=self.path, prefix=".tmp-"))
        state.save(tmp)
        if final.exists():  # the same epoch again (a retry that re-ran it): replace
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in self.path.glob("epoch-*"):
            if old.name < final.name:
                shutil.rmtree(old, ignore_errors=True)


def flat_metrics(record: dict) -> dict:
    """The per-epoch record without the nested activation snapshots."""
    return {k: v for k, v in record.items() if k != "activations"}


def run_trial(cfg: TrialConfig, recorder: TrialRecorder | None = None, *, checkpoint_dir: str | Path | None = None,
              checkpoint_every: int = CHECKPOINT_EVERY) -> TrialResult:
    """Body of a Tune trial: train `cfg`, report every epoch, checkpoint every few (into `checkpoint_dir`,
    when given), and continue from the newest checkpoint found there."""
    recorder = recorder or TrialRecorder()
    checkpoints = CheckpointDir(checkpoint_dir) if checkpoint_dir else None
    resume = checkpoints.latest() if checkpoints else None
    if resume is not None:
        recorder.start(cfg, resume.extra.get("recorder"), resume.history)
    else:
        recorder.start(cfg, None, None)

    reported: list[dict] = []

    def on_epoch(record: dict, state: Callable[[], TrainState]) -> None:
        reported.append(record)
        recorder.epoch(record)
        metrics = {**flat_metrics(record), **recorder.metrics()}
        epoch = record["epoch"]
        if checkpoints and (epoch % checkpoint_every == 0 or epoch == cfg.epochs or record["diverged"]):
            snapshot = state()
            snapshot.extra["recorder"] = recorder.state()
            checkpoints.save(snapshot)
        tune.report(metrics)

    try:
        result = train(cfg, on_epoch=on_epoch, resume=resume)
    except SystemExit:  # how Tune's function runner ends a trial its scheduler stopped
        if reported and reported[-1]["epoch"] == cfg.epochs:  # stopped at its last report: it had finished
            history = (resume.history if resume else []) + reported
            recorder.end(TrialResult("completed", cfg.epochs, history))
        else:
            recorder.stopped()
        raise
    except BaseException as exc:
        recorder.failed(exc)
        raise
    if not reported and result.history:
        # A retry of an attempt that had ended (its driver died before recording the end): nothing trained,
        # so Tune hears the last epoch again and this attempt ends as that one did.
        tune.report({**flat_metrics(result.final), **recorder.metrics()})
    recorder.end(result)
    return result

