"""Confirmation statistics: per-activation mean, std and 95% CI of test accuracy, paired t-tests
against the baseline over the shared seeds (SciPy), Holm-corrected, and the ranking."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

ALPHA = 0.05


def summarize(values: list[float]) -> dict:
    """Mean, sample std and the two-sided 95% t interval of the mean."""
    a = np.asarray(values, dtype=float)
    n = len(a)
    mean = float(a.mean()) if n else math.nan
    std = float(a.std(ddof=1)) if n > 1 else 0.0
    if n > 1 and std > 0:
        lo, hi = stats.t.interval(0.95, df=n - 1, loc=mean, scale=std / math.sqrt(n))
    else:
        lo = hi = mean
    return {"n": n, "values": [float(v) for v in a], "mean": mean, "std": std, "ci95": [float(lo), float(hi)]}


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


def paired_vs_baseline(scores: dict[str, dict[int, float]], baseline: str) -> dict[str, dict]:
    """Paired t-test of each activation against the baseline over the seeds both have, Holm-corrected."""
    base = scores.get(baseline, {})
    raw: dict[str, float] = {}
    diffs: dict[str, tuple[float, int]] = {}
    for label, by_seed in scores.items():
        if label == baseline:
            continue
        seeds = sorted(set(by_seed) & set(base))
        a = np.array([by_seed[s] for s in seeds])
        b = np.array([base[s] for s in seeds])
        diff = float((a - b).mean()) if seeds else math.nan
        if len(seeds) >= 2 and np.any(a - b != (a - b)[0]):
            p = float(stats.ttest_rel(a, b).pvalue)
        elif len(seeds) >= 2 and diff != 0:
            p = 0.0  # identical non-zero differences on every seed: the t statistic is infinite
        else:
            p = math.nan if len(seeds) < 2 else 1.0
        raw[label], diffs[label] = p, (diff, len(seeds))
    adjusted = holm(raw)
    return {
        label: {
            "mean_diff": diffs[label][0],
            "n_pairs": diffs[label][1],
            "p_value": raw[label],
            "p_holm": adjusted[label],
            "significant": bool(not math.isnan(adjusted[label]) and adjusted[label] < ALPHA),
        }
        for label in raw
    }


def rank(summaries: dict[str, dict]) -> list[str]:
    """Labels by mean test accuracy, best first (NaN last)."""
    return sorted(summaries, key=lambda k: (math.isnan(summaries[k]["mean"]), -np.nan_to_num(summaries[k]["mean"], nan=0.0)))


def ranking_rows(results: dict) -> list[dict]:
    """One row per activation in rank order: the ranking table (Markdown, CSV, the CLI)."""
    rows = []
    for i, label in enumerate(results["ranking"], 1):
        a = results["activations"][label]
        t = a["test_acc"]
        vs = a.get("vs_baseline") or {}
        rows.append({
            "rank": i,
            "activation": label,
            "test_acc_mean": t["mean"],
            "test_acc_std": t["std"],
            "ci95_low": t["ci95"][0],
            "ci95_high": t["ci95"][1],
            "diff_vs_baseline": vs.get("mean_diff", 0.0 if label == results["baseline"] else math.nan),
            "p_holm": vs.get("p_holm", math.nan),
            "significant": vs.get("significant", False),
            "best_lr": a["best_params"].get("lr"),
            "best_l2": a["best_params"].get("l2"),
            "best_val_acc": a.get("best_val_acc"),
        })
    return rows


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else (f"{v:.3g}" if abs(v) < 1e-2 and v != 0 else f"{v:.4f}")
    return str(v)


def ranking_markdown(results: dict) -> str:
    rows = ranking_rows(results)
    head = ["rank", "activation", "test acc (mean ± std)", "95% CI", f"Δ vs {results['baseline']}", "p (Holm)", "lr", "l2"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        mark = " *" if r["significant"] else ""
        lines.append("| " + " | ".join([
            str(r["rank"]), r["activation"], f"{r['test_acc_mean']:.4f} ± {r['test_acc_std']:.4f}",
            f"[{r['ci95_low']:.4f}, {r['ci95_high']:.4f}]", _fmt(r["diff_vs_baseline"]) + mark, _fmt(r["p_holm"]),
            _fmt(r["best_lr"]), _fmt(r["best_l2"]),
        ]) + " |")
    lines.append("")
    lines.append(f"* significant at α={ALPHA} after Holm correction (paired t-test over shared seeds)")
    return "\n".join(lines)


def ranking_csv(results: dict) -> str:
    import csv
    import io

    rows = ranking_rows(results)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["rank"])
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
