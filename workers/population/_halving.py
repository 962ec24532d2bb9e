"""Synchronous successive halving inside a population, at the rungs Tune's ASHA uses for single trials.

At a rung, a member goes on if its validation accuracy is at least the (1 - 1/rf) quantile of the values recorded
at that rung: its own population's members' and those of the activation's earlier trials (`history`), never another
activation's. It is ASHA's rule (ray.tune.schedulers.ASHAScheduler `_Bracket.on_result`) applied to a whole
population at once, so the members at a rung are judged together and the pruned ones leave the batch there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

REDUCTION_FACTOR = 3  # ASHA's, for single trials and populations alike


def rungs(grace: int, max_t: int, reduction_factor: int = REDUCTION_FACTOR) -> list[int]:
    """The epochs at which ASHA (one bracket, `stop_last_trials=False`) judges a trial: grace·rf^k < max_t."""
    out, t = [], grace
    while t < max_t:
        out.append(t)
        t *= reduction_factor
    return out


class SuccessiveHalving:
    """`__call__(epoch, {member: record})` → the members to stop at that epoch (none off the rungs)."""

    def __init__(self, milestones: Iterable[int], history: dict[int, list[float]] | None = None,
                 reduction_factor: int = REDUCTION_FACTOR) -> None:
        self.milestones = set(milestones)
        self.history = {int(k): list(v) for k, v in (history or {}).items()}
        self.rf = reduction_factor

    def __call__(self, epoch: int, records: dict[int, dict]) -> list[int]:
        if epoch not in self.milestones:
            return []
        values = {i: r["val_acc"] for i, r in records.items() if not r.get("diverged") and math.isfinite(r["val_acc"])}
        seen = self.history.get(epoch, []) + list(values.values())
        if not seen:
            return []
        cutoff = float(np.nanpercentile(seen, (1 - 1 / self.rf) * 100))
        return sorted(i for i, v in values.items() if v < cutoff)
