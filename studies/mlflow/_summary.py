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
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

import activations
from studies import report
from studies.mlflow import layout
from studies.mlflow._notes import activation_note
from studies.spec import StudyOutcome, StudyResults, StudySpec, TrialSummary

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudyAnswer:
    """Everything the summary is written from: the spec, the results, what the phases produced, and each
    activation's Optuna study (for its history and importance plots)."""

    spec: StudySpec
    results: StudyResults
    produced: StudyOutcome
    optuna_studies: dict = field(default_factory=dict)


@dataclass(frozen=True)
class StudyRunIds:
    """Where a study's runs are: its experiment, its parent run and each activation's run (by label)."""

    experiment_id: str
    parent_id: str
    activation_runs: dict[str, str]


def statistics(row: dict) -> dict[str, float]:
    """A ranking row's statistics that exist, by metric name (a missing CI or p-value is left out)."""
    return {name: float(row[column]) for name, column in layout.STATISTICS.items()
            if row[column] is not None and not math.isnan(row[column])}


def parent_metrics(rows: list[dict]) -> list[Metric]:
    """`<statistic>/<activation>`, by statistic, then by rank: how MLflow lists them."""
    by_label = {row["activation"]: statistics(row) for row in rows}
    keys = layout.label_keys(list(by_label))
    return [Metric(f"{name}/{keys[label]}", values[name], 0, 0)
            for name in layout.STATISTICS for label, values in by_label.items() if name in values]


def activation_params(spec: StudySpec, label: str, results: StudyResults) -> list[Param]:
    """The activation, every parameter it takes (the spec's value or its default) and its best lr and l2."""
    act = spec.activation(label)
    values = {"activation": act.name, **{f"activation.{k}": v for k, v in {**activations.parameters(act.name), **act.params}.items()}}
    best = results.activations[label].best_params
    if best is not None:
        values |= {"best_lr": best.lr, "best_l2": best.l2}
    return [Param(k, str(v)) for k, v in values.items()]


def definition(act) -> str | None:
    """What a formula or a user's activation is, in the activation run's description (a built-in's name says it)."""
    if act.name == activations.FORMULA:
        module = activations.create(activations.FORMULA, num_features=1, **act.params)
        params = [f"{name} = {spec.init:g}" + (" (learnable" + (", per channel" if spec.per_channel else "") + ")" if spec.learnable else "")
                  for name, spec in module.specs.items()]
        return f"Formula: `{module.parsed.text}`" + (f"; {', '.join(params)}" if params else "") + "."
    entry = activations.entry(act.name)
    return None if act.name in activations.builtin_names() else f"{entry.formula} — {entry.source}."


def write_answer(client: MlflowClient, ids: StudyRunIds, answer: StudyAnswer) -> None:
    """Everything a finished study writes into its runs: each activation run, ended as soon as it is written,
    then the parent (which the caller ends)."""
    rows = {row["activation"]: row for row in report.ranking_rows(answer.results)}
    best_runs = {}
    for label, run_id in ids.activation_runs.items():
        best_runs[label] = write_activation_run(client, ids, answer, label, rows[label])
        client.set_terminated(run_id, "FINISHED")
    write_parent(client, ids, answer, list(rows.values()), best_runs)


def write_activation_run(client: MlflowClient, ids: StudyRunIds, answer: StudyAnswer, label: str, row: dict) -> str | None:
    """Its params, metrics, plots, the best trial's evolution and its description; the best trial's run id."""
    run_id, results = ids.activation_runs[label], answer.results
    metrics = [Metric(k, v, 0, 0) for k, v in statistics(row).items() if k in layout.ACTIVATION_STATISTICS]
    metrics += [Metric(layout.TEST_ACC, float(acc), 0, seed) for seed, acc in sorted(answer.produced.scores.get(label, {}).items())]
    client.log_batch(run_id, metrics=metrics, params=activation_params(answer.spec, label, results),
                     tags=[RunTag(layout.RANK, str(row["rank"]))])
    trials = answer.produced.trials.get(label, [])
    client.log_dict(run_id, {"summary": results.activations[label].plain(), "trials": [x.plain() for x in trials]},
                    layout.ACTIVATION_SUMMARY_FILE)
    optuna_plots = _log_optuna_plots(client, run_id, answer.optuna_studies.get(label), label)
    best = answer.produced.best.get(label)
    trial_run = best_trial_run(client, ids.experiment_id, run_id, best) if best is not None else None
    evolution = _copy_evolution(client, trial_run, run_id) if trial_run else []
    client.set_tag(run_id, layout.NOTE, activation_note(results, label, row, run_id, evolution, optuna_plots,
                                                        definition(answer.spec.activation(label))))
    return trial_run


def _log_optuna_plots(client: MlflowClient, run_id: str, optuna_study, label: str) -> list[str]:
    """Optuna's history and importance plots of one activation's search, onto its run; their paths."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / layout.PLOTS_DIR
        folder.mkdir()
        for kind in ("history", "importance"):
            try:
                fig = report.plot_optuna(optuna_study, kind, label)
            except Exception as exc:  # noqa: BLE001 — e.g. importance needs two finished trials
                log.info("no optuna %s plot for %s: %s", kind, label, exc)
                continue
            report.save(fig, folder / f"optuna_{kind}.png")
        paths = sorted(f"{layout.PLOTS_DIR}/{f.name}" for f in folder.iterdir())
        if paths:
            client.log_artifacts(run_id, str(folder), artifact_path=layout.PLOTS_DIR)
    return paths


def best_trial_run(client: MlflowClient, experiment_id: str, activation_run: str, best: TrialSummary) -> str | None:
    """The finished MLflow run of an activation's best search trial (by its trial key)."""
    found = client.search_runs([experiment_id], f"{layout.child_filter(activation_run)} AND "
                               f"{layout.attempts_filter('trial', best.key)} AND {layout.status_filter('FINISHED')}", max_results=1)
    return found[0].info.run_id if found else None


def _copy_evolution(client: MlflowClient, source: str, run_id: str) -> list[str]:
    """A trial's evolution figures and histories (PWLU, LSLU), onto the activation run; the figures' paths."""
    client.set_tag(run_id, layout.BEST_TRIAL_RUN, source)
    found = client.list_artifacts(source, layout.EVOLUTION_DIR)
    if not found:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        local = client.download_artifacts(source, layout.EVOLUTION_DIR, tmp)
        client.log_artifacts(run_id, local, artifact_path=layout.EVOLUTION_DIR)
    return sorted(a.path for a in found if a.path.endswith(".png"))


def write_parent(client: MlflowClient, ids: StudyRunIds, answer: StudyAnswer, rows: list[dict], best_runs: dict[str, str | None]) -> None:
    """The ranking files, the summary figures, the `<statistic>/<activation>` metrics and the description."""
    parent_id, experiment_id, results = ids.parent_id, ids.experiment_id, answer.results
    client.log_text(parent_id, results.model_dump_json(indent=2), layout.RESULTS_FILE)
    client.log_text(parent_id, report.ranking_markdown(results), layout.RANKING_MD)
    client.log_text(parent_id, report.ranking_csv(results), layout.RANKING_CSV)
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        report.save(report.plot_test_accuracy(results), Path(tmp) / "test_acc_ci.png")
        figures.append(("Test accuracy: mean and 95% CI per activation, seeds as dots", f"{layout.PLOTS_DIR}/test_acc_ci.png"))
        # val_acc per epoch of each activation's best search trial
        curves = {label: sorted((m.step, m.value) for m in client.get_metric_history(run, "val_acc"))
                  for label, run in best_runs.items() if run}
        if curves:
            report.save(report.plot_val_curves(curves), Path(tmp) / "best_val_curves.png")
            figures.append(("Validation accuracy per epoch of each activation's best search trial",
                            f"{layout.PLOTS_DIR}/best_val_curves.png"))
        client.log_artifacts(parent_id, tmp, artifact_path=layout.PLOTS_DIR)
    links = [(f"{label}: its trials, seeds, Optuna plots and evolution", layout.run_path(experiment_id, run_id))
             for label, run_id in ids.activation_runs.items()]
    links += [("all runs, to compare (chart view)", layout.experiment_path(experiment_id)),
              ("results.json, ranking.csv, plots", layout.run_path(experiment_id, parent_id, "artifacts"))]
    spec_yaml = yaml.safe_dump(answer.spec.model_dump(mode="json"), sort_keys=False, default_flow_style=None)
    note = report.study_markdown(results, spec_yaml, [(title, layout.artifact_src(parent_id, path)) for title, path in figures],
                                 links, limit=layout.NOTE_CHARS)
    client.log_batch(parent_id, metrics=parent_metrics(rows), tags=[RunTag(layout.NOTE, note)])
