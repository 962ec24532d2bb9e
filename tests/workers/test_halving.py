"""Successive halving inside a population: ASHA's rungs and rule, judged against the activation's own history."""

import numpy as np
import pytest

from workers.population import SuccessiveHalving, rungs


@pytest.mark.parametrize(("grace", "epochs", "expected"), [(2, 30, [2, 6, 18]), (1, 4, [1, 3]), (5, 5, []), (1, 27, [1, 3, 9])])
def test_rungs_are_ashas(grace, epochs, expected):
    assert rungs(grace, epochs) == expected


def rec(v, diverged=False):
    return {"val_acc": v, "diverged": diverged}


def test_the_top_third_goes_on_at_a_rung_and_nobody_is_judged_off_it():
    sh = SuccessiveHalving([2, 6])
    values = [0.1, 0.5, 0.3, 0.9, 0.7, 0.2]
    stopped = sh(2, {i: rec(v) for i, v in enumerate(values)})
    cutoff = np.percentile(values, 100 * 2 / 3)
    assert stopped == [i for i, v in enumerate(values) if v < cutoff] and len(stopped) == 4
    assert sh(3, {i: rec(v) for i, v in enumerate(values)}) == []


def test_the_activations_history_at_the_rung_counts_and_diverged_members_are_not_judged():
    alone = SuccessiveHalving([2])
    assert alone(2, {0: rec(0.4)}) == []  # the first value at a rung always goes on, as in ASHA
    judged = SuccessiveHalving([2], history={"2": [0.8, 0.9, 0.85]})
    assert judged(2, {0: rec(0.4), 1: rec(0.95), 2: rec(float("nan"), diverged=True)}) == [0]
