"""The validation split: a seeded random subset of the dataset's own training set."""

from __future__ import annotations

import math
import numbers

import torch

from workers.data._stream import StreamedInputs
from workers.data._types import DatasetError, Split

MAX_VAL_FRACTION = 0.5


def check_val_fraction(val_fraction: object) -> float:
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, numbers.Real):
        raise DatasetError(f"val_fraction must be a number in (0, {MAX_VAL_FRACTION}], got {val_fraction!r}")
    value = float(val_fraction)
    if not (math.isfinite(value) and 0.0 < value <= MAX_VAL_FRACTION):
        raise DatasetError(f"val_fraction must be in (0, {MAX_VAL_FRACTION}], got {val_fraction!r}")
    return value


def check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= int(seed) < 2**63:
        raise DatasetError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    return int(seed)


def split_train_val(x: torch.Tensor, y: torch.Tensor, *, seed: int, val_fraction: float) -> tuple[Split, Split]:
    """(train, val) from one training set; the same seed always carves the same validation samples."""
    n = int(y.shape[0])
    n_val = int(round(n * val_fraction))
    if n_val < 1 or n_val >= n:
        raise DatasetError(f"val_fraction {val_fraction} of {n} training samples leaves an empty train or val split")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    # Sorted, so both splits keep the source order (and memory locality); batches() shuffles anyway.
    val_idx, _ = perm[:n_val].sort()
    train_idx, _ = perm[n_val:].sort()
    if isinstance(x, StreamedInputs):  # the split is of indices, read later
        return Split(x.take(train_idx), y[train_idx]), Split(x.take(val_idx), y[val_idx])
    return Split(x[train_idx], y[train_idx]), Split(x[val_idx], y[val_idx])
