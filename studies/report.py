"""Confirmation statistics: per-activation mean, std and 95% CI of test accuracy, paired t-tests
against the baseline over the shared seeds (SciPy), Holm-corrected, and the ranking."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from studies.schema import PairedTest, StudyResults, Summary

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


def paired_vs_baseline(scores: dict[str, dict[int, float]], baseline: str) -> dict[str, PairedTest]:
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
        label: PairedTest(mean_diff=diffs[label][0], n_pairs=diffs[label][1], p_value=raw[label], p_holm=adjusted[label],
                          significant=bool(not math.isnan(adjusted[label]) and adjusted[label] < ALPHA))
        for label in raw
    }


def _number(v: float | None) -> float:
    """A statistic that may be missing (null once stored) as a float: NaN when missing."""
    return math.nan if v is None else float(v)


def rank(summaries: dict[str, Summary]) -> list[str]:
    """Labels by mean test accuracy, best first (NaN last)."""
    return sorted(summaries, key=lambda k: (math.isnan(_number(summaries[k].mean)), -np.nan_to_num(_number(summaries[k].mean), nan=0.0)))


def ranking_rows(results: StudyResults) -> list[dict]:
    """One row per activation in rank order, missing statistics as NaN: the ranking table (Markdown, CSV, the CLI)."""
    rows = []
    for i, label in enumerate(results.ranking, 1):
        a = results.activations[label]
        t, vs, best = a.test_acc, a.vs_baseline, a.best_params
        rows.append({
            "rank": i,
            "activation": label,
            "test_acc_mean": _number(t.mean),
            "test_acc_std": _number(t.std),
            "ci95_low": _number(t.ci95[0]),
            "ci95_high": _number(t.ci95[1]),
            "diff_vs_baseline": _number(vs.mean_diff) if vs else (0.0 if label == results.baseline else math.nan),
            "p_holm": _number(vs.p_holm) if vs else math.nan,
            "significant": vs.significant if vs else False,
            "best_lr": best.lr if best else None,
            "best_l2": best.l2 if best else None,
            "best_val_acc": a.best_val_acc,
        })
    return rows


def fmt(v) -> str:
    """A table cell: 4 decimals, 3 significant digits below 0.01, '-' for a missing value."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return "-" if math.isnan(v) else (f"{v:.3g}" if abs(v) < 1e-2 and v != 0 else f"{v:.4f}")
    return str(v)


def ranking_markdown(results: StudyResults) -> str:
    rows = ranking_rows(results)
    head = ["rank", "activation", "test acc (mean ± std)", "95% CI", f"Δ vs {results.baseline}", "p (Holm)", "lr", "l2"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        mark = " *" if r["significant"] else ""
        lines.append("| " + " | ".join([
            str(r["rank"]), r["activation"], f"{r['test_acc_mean']:.4f} ± {r['test_acc_std']:.4f}",
            f"[{r['ci95_low']:.4f}, {r['ci95_high']:.4f}]", fmt(r["diff_vs_baseline"]) + mark, fmt(r["p_holm"]),
            fmt(r["best_lr"]), fmt(r["best_l2"]),
        ]) + " |")
    lines.append("")
    lines.append(f"* significant at α={ALPHA} after Holm correction (paired t-test over shared seeds)")
    return "\n".join(lines)


def ranking_csv(results: StudyResults) -> str:
    import csv
    import io

    rows = ranking_rows(results)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["rank"])
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _names(labels: list[str]) -> str:
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def verdict(results: StudyResults) -> str:
    """The answer in one sentence: which activations beat the baseline, which lose to it, which cannot be told apart."""
    base = results.baseline
    better, worse, same, untested = [], [], [], []
    for label in results.ranking:
        vs = results.activations[label].vs_baseline
        if label == base:
            continue
        if vs is None or vs.p_holm is None or math.isnan(_number(vs.p_holm)):
            untested.append(label)
        elif vs.significant:
            (better if _number(vs.mean_diff) > 0 else worse).append(label)
        else:
            same.append(label)
    parts = []
    if better:
        parts.append(f"{_names(better)} {'is' if len(better) == 1 else 'are'} significantly better than {base}")
    if worse:
        parts.append(f"{_names(worse)} {'is' if len(worse) == 1 else 'are'} significantly worse than {base}")
    if same:
        parts.append(f"{_names(same)} {'is' if len(same) == 1 else 'are'} indistinguishable from {base}")
    if untested:
        parts.append(f"{_names(untested)} could not be tested (fewer than two seeds shared with {base})")
    if not parts:
        return f"Only the baseline, {base}, was compared."
    n = len(results.seeds)
    return (f"Against {base}, over {n} seed{'s' if n != 1 else ''} (paired t-test on test accuracy, Holm-adjusted, "
            f"α = {ALPHA}): {'; '.join(parts)}.")


def study_markdown(results: StudyResults, spec_yaml: str, figures: list[tuple[str, str]], links: list[tuple[str, str]],
                   limit: int = 7900) -> str:
    """The study's answer as Markdown (the MLflow parent run's description): the verdict, the ranking, the
    figures (`(title, url)` shown inline), further links and the spec — the spec left out if over `limit`
    characters (MLflow keeps 8000 of a tag)."""
    best = results.best_activation
    head = [f"## {results.name}: {best} ranks first" if best else f"## {results.name}", "", f"**Verdict.** {verdict(results)}",
            "", f"### Ranking by mean test accuracy ({len(results.seeds)} seeds, baseline {results.baseline})", "",
            ranking_markdown(results), ""]
    if figures:
        head += ["### Figures", ""] + [f"**{title}**\n\n![{title}]({url})\n" for title, url in figures]
    if links:
        head += ["### More", ""] + [f"- [{title}]({url})" for title, url in links] + [""]
    text = "\n".join(head)
    spec_part = f"\n### Study spec\n\n```yaml\n{spec_yaml.strip()}\n```\n"
    if len(text) + len(spec_part) <= limit:
        text += spec_part
    return text[:limit]
