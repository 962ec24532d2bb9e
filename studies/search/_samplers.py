"""Each activation's Optuna sampler, seeded so that a search is a function of the spec and its stored history."""

from __future__ import annotations

import math
import zlib

import numpy as np
import optuna
from optuna.distributions import FloatDistribution

from studies.spec import RangeSpec, StudySpec


def activation_seed(study_seed: int, label: str) -> int:
    """A stable per-activation seed (Python's hash() is salted per process)."""
    return zlib.crc32(f"{study_seed}:{label}".encode()) & 0x7FFFFFFF


def _grid(r: RangeSpec, k: int) -> list[float]:
    values = np.geomspace(r.low, r.high, k) if r.log else np.linspace(r.low, r.high, k)
    return [float(v) for v in values]


def make_sampler(spec: StudySpec, label: str, number: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler for the `number`-th trial of an activation, seeded by (study seed, label, number).

    A fresh sampler per trial makes each configuration a function of the study's stored history alone,
    so a driver that resumes suggests what an uninterrupted one would have.
    """
    seed = (activation_seed(spec.seed, label) + 7919 * number) & 0x7FFFFFFF
    kind = spec.search.sampler
    if kind == "tpe":
        # A population's members are asked together: the constant liar keeps them apart (running trials count
        # as bad), where independent draws from one model would crowd the same spot.
        return optuna.samplers.TPESampler(seed=seed, constant_liar=spec.search.population > 1)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    k = max(2, math.ceil(math.sqrt(spec.search.trials_per_activation)))
    # The grid's seed shuffles its order once; trial n then takes point n of that order, so it stays fixed.
    return optuna.samplers.GridSampler({"lr": _grid(spec.search.lr, k), "l2": _grid(spec.search.l2, k)},
                                       seed=activation_seed(spec.seed, label))


def search_space(spec: StudySpec) -> dict[str, FloatDistribution]:
    s = spec.search
    return {"lr": FloatDistribution(s.lr.low, s.lr.high, log=s.lr.log), "l2": FloatDistribution(s.l2.low, s.l2.high, log=s.l2.log)}
