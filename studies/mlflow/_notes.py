"""The descriptions MLflow's UI shows for a study (`mlflow.note.content`): the experiment's, the parent run's
while it runs, and each activation run's when the study ends (the parent's answer is `report.study_markdown`)."""

from __future__ import annotations

from studies import report
from studies.mlflow import layout
from studies.spec import StudyResults, StudySpec


def experiment_note(spec: StudySpec, study_id: str) -> str:
    return (f"actstudy study `{study_id}`: which activation should {spec.model.name} on {spec.dataset.name} use? "
            f"The run **{spec.name}** holds the answer (its Overview); beneath it one run per activation, and beneath "
            "those every search trial and confirmation seed.")


def running_note(spec: StudySpec, study_id: str) -> str:
    """The parent's description while the study runs."""
    return (f"## {spec.name}: running\n\nStudy `{study_id}` compares {', '.join(spec.labels)} on {spec.dataset.name} "
            f"({spec.model.name}): {spec.search.trials_per_activation} search trials per activation, then "
            f"{spec.confirm.seeds} confirmation seeds against {spec.confirm.baseline}. The ranking and the verdict "
            "appear here when it ends; the activation runs below fill in as trials finish.")


def activation_note(results: StudyResults, label: str, row: dict, run_id: str, evolution: list[str], optuna_plots: list[str],
                    definition: str | None = None) -> str:
    """An activation run's description: where it ranks, what it is (a formula, a plugin), its numbers, and its
    figures (evolution first)."""
    lines = [f"## {label}: rank {row['rank']} of {len(results.ranking)}", "", *([definition, ""] if definition else []),
             f"Test accuracy {row['test_acc_mean']:.4f} ± {row['test_acc_std']:.4f} over {len(results.seeds)} seeds "
             f"(95% CI [{row['ci95_low']:.4f}, {row['ci95_high']:.4f}]), with its best setting from the search: "
             f"lr {report.fmt(row['best_lr'])}, l2 {report.fmt(row['best_l2'])}."]
    if label != results.baseline:
        if row["not_testable"]:
            lines.append(f"Against {results.baseline}: Δ {report.fmt(row['diff_vs_baseline'])}, not testable: {row['not_testable']}.")
        else:
            lines.append(f"Against {results.baseline}: Δ {report.fmt(row['diff_vs_baseline'])}, Holm-adjusted p "
                         f"{report.fmt(row['p_holm'])}{' (significant)' if row['significant'] else ''}.")
    for path in evolution:
        lines += ["", f"**How it changed shape while its best trial trained: {path.split('/')[-1][:-4]}**", "",
                  f"![evolution]({layout.artifact_src(run_id, path)})"]
    for path in optuna_plots:
        lines += ["", f"**{'Optuna: the search' if 'history' in path else 'Optuna: which parameter mattered'}**", "",
                  f"![{path}]({layout.artifact_src(run_id, path)})"]
    return layout.clip("\n".join(lines), layout.NOTE_CHARS)
