"""One trial: train one model with one activation and one (lr, l2) setting, reporting every epoch.

- `workers.config`: a trial's options, one declaration (`TrialConfig`, `TrainingOptions`) with types and limits;
- `workers.data`, `workers.models`: datasets and models with the activation at every site;
- `workers.train`: the training loop (`workers.train.train`), runnable on its own (`python -m workers.train`);
- `workers.trial`: the body of a Ray Tune trial (`run_trial`: reporting, checkpoints, resume) and the hooks a
  caller records it with (`TrialRecorder`).

The training loop and the trial body load on first use (they need torch, and the trial body Ray), so reading a
trial's options (the CLI, a spec) stays light.
"""

import importlib

from workers.config import (
    MAX_BATCH_SIZE,
    MAX_EPOCHS,
    DatasetName,
    DataSource,
    Hidden,
    ImageSize,
    ModelName,
    ModelSource,
    Precision,
    SwapTypes,
    TrainingOptions,
    TrialConfig,
    ValFraction,
    with_defaults,
)

# The training loop itself is `workers.train.train`: a package attribute `train` would be the module or the
# function depending on what was imported first.
_LAZY = {"TrainState": "train", "TrialResult": "train", "CHECKPOINT_EVERY": "trial", "TrialRecorder": "trial", "run_trial": "trial"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CHECKPOINT_EVERY", "MAX_BATCH_SIZE", "MAX_EPOCHS", "DatasetName", "DataSource", "Hidden", "ImageSize", "ModelName",
           "ModelSource", "SwapTypes", "Precision", "TrainState",
           "TrainingOptions", "TrialConfig", "TrialRecorder", "TrialResult", "ValFraction", "run_trial", "with_defaults"]
