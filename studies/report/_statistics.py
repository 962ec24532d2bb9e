"""Confirmation statistics: per-activation mean, std and 95% CI of test accuracy, paired t-tests
against the baseline over the shared seeds (SciPy), Holm-corrected, and the ranking.

A comparison without a variance to test (fewer than 2 shared seeds, or the same difference on every seed)
is "not testable": no p-value, never significant, and the reason in words."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from studies.spec import PairedTest, Summary

ALPHA = 0.05


def summarize(values: list[float]) -> Summary:
    """Mean, sample std and the two-sided 95% t interval of the mean."""
    a = np.asarray(values, dtype=float)
    n = len(a)
    mean = float(a.mean()) if n else math.nan
    std = float(a.std(ddof=1)) if n > 1 else 0.0
    if n > 1 and std > 0:
        lo, hi = stats.t.interval(0.95, df=n - 1, loc=mean, scale=std / math.sqrt(n))
    else:
        lo = hi = mean
    return Summary(n=n, values=[float(v) for v in a], mean=mean, std=std, ci95=(float(lo), float(hi)))


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm–Bonferroni adjusted p-values (step-down, monotone, capped at 1); NaN stays NaN."""
    finite = sorted((p, k) for k, p in p_values.items() if not math.isnan(p))
    m = len(finite)
    adjusted: dict[str, float] = {k: math.nan for k, p in p_values.items() if math.isnan(p)}
    running = 0.0
    for i, (p, k) in enumerate(finite):
        running = max(running, min(1.0, (m - i) * p))
        adjusted[k] = running
    return adjusted


def not_testable(seeds: int, diffs: np.ndarray, baseline: str) -> str | None:
    """Why a paired t-test cannot be made, in words; None when it can. With fewer than 2 pairs there is no
    variance to estimate, and with the same difference on every pair the variance is zero: the t statistic
    is undefined (SciPy returns NaN), so no p-value exists, however large the difference."""
    if seeds < 2:
        return f"fewer than 2 seeds shared with {baseline} ({seeds})"
    if np.all(diffs == diffs[0]):
        if diffs[0] == 0:
            return f"the same test accuracy as {baseline} on every seed (zero variance)"
        return f"the same difference to {baseline} ({diffs[0]:+.4f}) on every seed (zero variance)"
    return None


def paired_vs_baseline(scores: dict[str, dict[int, float]], baseline: str) -> dict[str, PairedTest]:
    """Paired t-test of each activation against the baseline over the seeds both have, Holm-corrected over
    the activations that can be tested; the others are "not testable", saying why."""
    base = scores.get(baseline, {})
    raw: dict[str, float] = {}
    found: dict[str, tuple[float, int, str | None]] = {}
    for label, by_seed in scores.items():
        if label == baseline:
            continue
        seeds = sorted(set(by_seed) & set(base))
        diffs = np.array([by_seed[s] - base[s] for s in seeds])
        why = not_testable(len(seeds), diffs, baseline)
        raw[label] = math.nan if why else float(stats.ttest_rel([by_seed[s] for s in seeds], [base[s] for s in seeds]).pvalue)
        found[label] = (float(diffs.mean()) if seeds else math.nan, len(seeds), why)
    adjusted = holm(raw)
    return {
        label: PairedTest(mean_diff=diff, n_pairs=n, p_value=raw[label], p_holm=adjusted[label], not_testable=why,
                          significant=bool(not math.isnan(adjusted[label]) and adjusted[label] < ALPHA))
        for label, (diff, n, why) in found.items()
    }


def number(v: float | None) -> float:
    """A statistic that may be missing (null once stored) as a float: NaN when missing."""
    return math.nan if v is None else float(v)


def rank(summaries: dict[str, Summary]) -> list[str]:
    """Labels by mean test accuracy, best first (NaN last)."""
    return sorted(summaries, key=lambda k: (math.isnan(number(summaries[k].mean)), -np.nan_to_num(number(summaries[k].mean), nan=0.0)))
