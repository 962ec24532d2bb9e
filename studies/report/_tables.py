"""The ranking as people read it: rows, Markdown, CSV, the verdict in one sentence, the study's answer page."""

from __future__ import annotations

import csv
import io
import math

from studies.report._statistics import ALPHA, number
from studies.spec import StudyResults


def ranking_rows(results: StudyResults) -> list[dict]:
    """One row per activation in rank order, missing statistics as NaN: the ranking table (Markdown, CSV, the CLI)."""
    rows = []
    for i, label in enumerate(results.ranking, 1):
        a = results.activations[label]
        t, vs, best = a.test_acc, a.vs_baseline, a.best_params
        rows.append({
            "rank": i,
            "activation": label,
            "test_acc_mean": number(t.mean),
            "test_acc_std": number(t.std),
            "ci95_low": number(t.ci95[0]),
            "ci95_high": number(t.ci95[1]),
            "diff_vs_baseline": number(vs.mean_diff) if vs else (0.0 if label == results.baseline else math.nan),
            "p_holm": number(vs.p_holm) if vs else math.nan,
            "significant": vs.significant if vs else False,
            "not_testable": vs.not_testable if vs else None,
            "best_lr": best.lr if best else None,
            "best_l2": best.l2 if best else None,
            "best_val_acc": a.best_val_acc,
        })
    return rows


def p_cell(row: dict) -> str:
    """The p-value column of a ranking row: the value, "not testable" (with the reason below the table), or '-'."""
    return "not testable" if row["not_testable"] else fmt(row["p_holm"])


def untested_notes(rows: list[dict]) -> list[str]:
    """One line per activation that could not be tested against the baseline, saying why."""
    return [f"{r['activation']}: not testable, {r['not_testable']}" for r in rows if r["not_testable"]]


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
            f"[{r['ci95_low']:.4f}, {r['ci95_high']:.4f}]", fmt(r["diff_vs_baseline"]) + mark, p_cell(r),
            fmt(r["best_lr"]), fmt(r["best_l2"]),
        ]) + " |")
    lines.append("")
    lines.append(f"* significant at α={ALPHA} after Holm correction (paired t-test over shared seeds)")
    lines += [f"- {note}" for note in untested_notes(rows)]
    return "\n".join(lines)


def ranking_csv(results: StudyResults) -> str:
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
        if vs is None or vs.not_testable or vs.p_holm is None or math.isnan(number(vs.p_holm)):
            untested.append(f"{label} ({vs.not_testable if vs and vs.not_testable else 'no confirmation scores'})")
        elif vs.significant:
            (better if number(vs.mean_diff) > 0 else worse).append(label)
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
        parts.append(f"not testable, so neither better nor worse: {'; '.join(untested)}")
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
