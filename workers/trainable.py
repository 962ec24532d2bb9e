"""The Ray Tune trainable: `workers.train.train` reporting each epoch to Tune, checkpointing, resuming.

Recorders (e.g. the studies layer's MLflow logger) see the trial's life without this layer knowing them.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable

from ray import tune

from workers.train import TrainState, TrialConfig, TrialResult, train

CHECKPOINT_EVERY = 5  # epochs; and always at the end and on divergence


class TrialRecorder:
    """Hooks around one attempt of a trial. Call order: start → epoch × n → end (or nothing, if killed).

    `state()` is saved into every checkpoint and handed back to `start` of the attempt that resumes it.
    All hooks are optional no-ops.
    """

    def start(self, cfg: TrialConfig, config: dict, previous: dict | None, history: list[dict] | None = None) -> None:
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


def flat_metrics(record: dict) -> dict:
    """The per-epoch record without the nested activation snapshots."""
    return {k: v for k, v in record.items() if k != "activations"}


def run_trial(config: dict, recorder: TrialRecorder | None = None, *, checkpoint_every: int = CHECKPOINT_EVERY) -> TrialResult:
    """Body of a Tune trial: train `config`, report every epoch, checkpoint every few, resume if restarted."""
    recorder = recorder or TrialRecorder()
    cfg = TrialConfig.from_dict(config)
    resume = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            resume = TrainState.load(directory)
    if resume is not None:
        recorder.start(cfg, config, resume.extra.get("recorder"), resume.history)
    else:
        recorder.start(cfg, config, None, None)

    reported: list[dict] = []

    def on_epoch(record: dict, state: Callable[[], TrainState]) -> None:
        reported.append(record)
        recorder.epoch(record)
        metrics = {**flat_metrics(record), **recorder.metrics()}
        epoch = record["epoch"]
        if epoch % checkpoint_every == 0 or epoch == cfg.epochs or record["diverged"]:
            snapshot = state()
            snapshot.extra["recorder"] = recorder.state()
            with tempfile.TemporaryDirectory() as directory:
                snapshot.save(directory)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        else:
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
    recorder.end(result)
    return result


def trainable(config: dict) -> None:
    """A plain Tune function trainable (no recorder)."""
    run_trial(config)
