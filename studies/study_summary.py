"""What a finished study writes into MLflow so that its UI answers the question (docs/browse.md).

- The parent run: its description (`mlflow.note.content`, the Overview page) is the verdict, the ranking
  table, the summary figures and the spec; its metrics are `<statistic>/<activation>` (e.g.
  `test_acc_mean/relu`), grouped by statistic in MLflow's metrics table and charts.
- Each activation run: the activation and its parameters and the best lr and l2 as params (so MLflow's
  compare view has something to compare on), `test_acc` per confirmation seed (step = the seed), its
  Optuna history and importance plots, and the evolution figures of its best search trial.
"""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path
from urllib.parse import quote

import yaml
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

import activations
from studies import plots, report
from studies.schema import StudyResults, TrialSummary
from studies.spec import StudySpec
from studies.tracking import PARENT_RUN, sanitize

log = logging.getLogger(__name__)

NOTE = "mlflow.note.content"  # MLflow shows this tag as a run's (or experiment's) description
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}  # open on the training runs, not GenAI traces
# The MLflow UI keeps the GenAI/model-training switch in the URL; links to a study say which.
UI_VIEW = "?workflowType=machine_learning"
# metric name ← ranking-table column (report.ranking_rows); the parent logs each as `<name>/<activation>`
STATISTICS = {"test_acc_mean": "test_acc_mean", "test_acc_ci95_low": "ci95_low", "test_acc_ci95_high": "ci95_high",
              "test_acc_std": "test_acc_std", "best_val_acc": "best_val_acc", "diff_vs_baseline": "diff_vs_baseline",
              "p_holm": "p_holm"}
ACTIVATION_STATISTICS = ("test_acc_mean", "test_acc_std", "test_acc_ci95_low", "test_acc_ci95_high", "best_val_acc")


def run_path(experiment_id: str, run_id: str, tab: str = "") -> str:
    """A run's page in the MLflow UI, relative to the UI's root (`#/experiments/…`)."""
    return f"#/experiments/{experiment_id}/runs/{run_id}{'/' + tab if tab else ''}{UI_VIEW}"


def experiment_path(experiment_id: str) -> str:
    """The experiment's runs table in the MLflow UI, relative to the UI's root."""
    return f"#/experiments/{experiment_id}/runs{UI_VIEW}"


def artifact_src(run_id: str, path: str) -> str:
    """An artifact's bytes from the MLflow server, relative to the UI's root (what an `<img>` in a description needs)."""
    return f"get-artifact?path={quote(path)}&run_uuid={run_id}"


def running_note(spec: StudySpec, study_id: str) -> str:
    """The parent's description while the study runs."""
    return (f"## {spec.name}: running\n\nStudy `{study_id}` compares {', '.join(spec.labels)} on {spec.dataset.name} "
            f"({spec.model.name}): {spec.search.trials_per_activation} search trials per activation, then "
            f"{spec.confirm.seeds} confirmation seeds against {spec.confirm.baseline}. The ranking and the verdict "
            "appear here when it ends; the activation runs below fill in as trials finish.")


def statistics(row: dict) -> dict[str, float]:
    """A ranking row's statistics that exist, by metric name (a missing CI or p-value is left out)."""
    return {name: float(row[column]) for name, column in STATISTICS.items()
            if row[column] is not None and not math.isnan(row[column])}


def parent_metrics(rows: list[dict]) -> list[Metric]:
    """`<statistic>/<activation>`, by statistic, then by rank: how MLflow lists them."""
    by_label = {row["activation"]: statistics(row) for row in rows}
    return [Metric(f"{name}/{sanitize(label)}", values[name], 0, 0)
            for name in STATISTICS for label, values in by_label.items() if name in values]


def activation_params(spec: StudySpec, label: str, results: StudyResults) -> list[Param]:
    """The activation, every parameter it takes (the spec's value or its default) and its best lr and l2."""
    act = spec.activation(label)
    values = {"activation": act.name, **{f"activation.{k}": v for k, v in {**activations.parameters(act.name), **act.params}.items()}}
    best = results.activations[label].best_params
    if best is not None:
        values |= {"best_lr": best.lr, "best_l2": best.l2}
    return [Param(k, str(v)) for k, v in values.items()]


def write_answer(client: MlflowClient, experiment_id: str, parent_id: str, activation_runs: dict[str, str], spec: StudySpec,
                 results: StudyResults, trials: dict[str, list[TrialSummary]], best: dict[str, TrialSummary],
                 scores: dict[str, dict[int, float]], optuna_studies: dict) -> None:
    """Everything a finished study writes into its runs: each activation run, ended as soon as it is written,
    then the parent (which the caller ends)."""
    rows = {row["activation"]: row for row in report.ranking_rows(results)}
    best_runs = {}
    for label, run_id in activation_runs.items():
        best_runs[label] = write_activation_run(client, experiment_id, run_id, spec, label, results, rows[label], trials[label],
                                                best.get(label), scores.get(label, {}), optuna_studies.get(label))
        client.set_terminated(run_id, "FINISHED")
    write_parent(client, experiment_id, parent_id, activation_runs, spec, results, list(rows.values()), best_runs)


def write_activation_run(client: MlflowClient, experiment_id: str, run_id: str, spec: StudySpec, label: str,
                         results: StudyResults, row: dict, trials: list[TrialSummary], best: TrialSummary | None,
                         by_seed: dict[int, float], optuna_study) -> str | None:
    """Its params, metrics, plots, the best trial's evolution and its description; the best trial's run id."""
    metrics = [Metric(k, v, 0, 0) for k, v in statistics(row).items() if k in ACTIVATION_STATISTICS]
    metrics += [Metric("test_acc", float(acc), 0, seed) for seed, acc in sorted(by_seed.items())]
    client.log_batch(run_id, metrics=metrics, params=activation_params(spec, label, results),
                     tags=[RunTag("actstudy.rank", str(row["rank"]))])
    a = results.activations[label]
    client.log_dict(run_id, {"summary": a.plain(), "trials": [x.plain() for x in trials]}, "activation_summary.json")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "plots"
        folder.mkdir()
        for kind in ("history", "importance"):
            try:
                fig = plots.plot_optuna(optuna_study, kind, label)
            except Exception as exc:  # noqa: BLE001 — e.g. importance needs two finished trials
                log.info("no optuna %s plot for %s: %s", kind, label, exc)
                continue
            plots.save(fig, folder / f"optuna_{kind}.png")
        optuna_plots = sorted(f"plots/{f.name}" for f in folder.iterdir())
        if optuna_plots:
            client.log_artifacts(run_id, str(folder), artifact_path="plots")
    trial_run = best_trial_run(client, experiment_id, run_id, best) if best is not None else None
    evolution = _copy_evolution(client, trial_run, run_id) if trial_run else []
    client.set_tag(run_id, NOTE, activation_note(results, label, row, run_id, evolution, optuna_plots))
    return trial_run


def activation_note(results: StudyResults, label: str, row: dict, run_id: str, evolution: list[str], optuna_plots: list[str]) -> str:
    """An activation run's description: where it ranks, its numbers, and its figures (evolution first)."""
    lines = [f"## {label}: rank {row['rank']} of {len(results.ranking)}", "",
             f"Test accuracy {row['test_acc_mean']:.4f} ± {row['test_acc_std']:.4f} over {len(results.seeds)} seeds "
             f"(95% CI [{row['ci95_low']:.4f}, {row['ci95_high']:.4f}]), with its best setting from the search: "
             f"lr {report.fmt(row['best_lr'])}, l2 {report.fmt(row['best_l2'])}."]
    if label != results.baseline:
        lines.append(f"Against {results.baseline}: Δ {report.fmt(row['diff_vs_baseline'])}, Holm-adjusted p "
                     f"{report.fmt(row['p_holm'])}{' (significant)' if row['significant'] else ''}.")
    for path in evolution:
        lines += ["", f"**How it changed shape while its best trial trained: {path.split('/')[-1][:-4]}**", "",
                  f"![evolution]({artifact_src(run_id, path)})"]
    for path in optuna_plots:
        lines += ["", f"**{'Optuna: the search' if 'history' in path else 'Optuna: which parameter mattered'}**", "",
                  f"![{path}]({artifact_src(run_id, path)})"]
    return "\n".join(lines)[:7900]


def best_trial_run(client: MlflowClient, experiment_id: str, activation_run: str, best: TrialSummary) -> str | None:
    """The finished MLflow run of an activation's best search trial (by its trial key)."""
    found = client.search_runs(
        [experiment_id], f"tags.`{PARENT_RUN}` = '{activation_run}' AND tags.`actstudy.kind` = 'trial' AND "
        f"tags.`actstudy.trial_key` = '{best.key}' AND attributes.status = 'FINISHED'", max_results=1)
    return found[0].info.run_id if found else None


def _copy_evolution(client: MlflowClient, source: str, run_id: str) -> list[str]:
    """A trial's evolution figures and histories (PWLU, LSLU), onto the activation run; the figures' paths."""
    client.set_tag(run_id, "actstudy.best_trial_run", source)
    found = client.list_artifacts(source, "evolution")
    if not found:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        local = client.download_artifacts(source, "evolution", tmp)
        client.log_artifacts(run_id, local, artifact_path="evolution")
    return sorted(a.path for a in found if a.path.endswith(".png"))


def write_parent(client: MlflowClient, experiment_id: str, parent_id: str, activation_runs: dict[str, str], spec: StudySpec,
                 results: StudyResults, rows: list[dict], best_runs: dict[str, str | None]) -> None:
    """The ranking files, the summary figures, the `<statistic>/<activation>` metrics and the description."""
    client.log_text(parent_id, results.model_dump_json(indent=2), "results.json")
    client.log_text(parent_id, report.ranking_markdown(results), "ranking.md")
    client.log_text(parent_id, report.ranking_csv(results), "ranking.csv")
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        plots.save(plots.plot_test_accuracy(results), Path(tmp) / "test_acc_ci.png")
        figures.append(("Test accuracy: mean and 95% CI per activation, seeds as dots", "plots/test_acc_ci.png"))
        # val_acc per epoch of each activation's best search trial
        curves = {label: sorted((m.step, m.value) for m in client.get_metric_history(run, "val_acc"))
                  for label, run in best_runs.items() if run}
        if curves:
            plots.save(plots.plot_val_curves(curves), Path(tmp) / "best_val_curves.png")
            figures.append(("Validation accuracy per epoch of each activation's best search trial", "plots/best_val_curves.png"))
        client.log_artifacts(parent_id, tmp, artifact_path="plots")
    links = [(f"{label}: its trials, seeds, Optuna plots and evolution", run_path(experiment_id, run_id))
             for label, run_id in activation_runs.items()]
    links += [("all runs, to compare (chart view)", experiment_path(experiment_id)),
              ("results.json, ranking.csv, plots", run_path(experiment_id, parent_id, "artifacts"))]
    note = report.study_markdown(results, yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False, default_flow_style=None),
                                 [(title, artifact_src(parent_id, path)) for title, path in figures], links)
    client.log_batch(parent_id, metrics=parent_metrics(rows), tags=[RunTag(NOTE, note)])
