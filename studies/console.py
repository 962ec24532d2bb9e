"""Terminal output for studies: a live per-activation progress table and the ranking table."""

from __future__ import annotations

import math

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

from studies import report
from studies.execution import ProgressSink
from studies.spec import PhaseProgress, StudyResults, StudySpec


def progress_table(progress: PhaseProgress, title: str = "") -> Table:
    confirm = progress.phase == "confirm"
    table = Table(title=title or progress.phase, expand=False)
    for col in ("activation", "seeds" if confirm else "trials", "progress", "running", "best test acc" if confirm else "best val acc"):
        table.add_column(col)
    for label, a in progress.activations.items():
        best = "-" if a.best is None else f"{a.best:.4f}"
        table.add_row(label, f"{a.done}/{a.total}", ProgressBar(total=max(1, a.total), completed=a.done, width=24),
                      str(a.running), best)
    return table


class RichProgress(ProgressSink):
    """Live table while the study runs (trials done / total and best so far, per activation)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.live: Live | None = None
        self.header = ""

    def started(self, spec: StudySpec, study_id: str, parent_url: str | None) -> None:
        self.header = (f"study {study_id} ({spec.name}): {len(spec.activations)} activations × {spec.search.trials_per_activation} trials, "
                       f"{spec.training.epochs} epochs, {spec.confirm.seeds} confirmation seeds")
        self.console.print(self.header)
        if parent_url:
            self.console.print(f"MLflow: {parent_url}")
        self.live = Live(console=self.console, refresh_per_second=2, transient=False)
        self.live.start()

    def update(self, progress: PhaseProgress) -> None:
        if self.live is not None:
            self.live.update(Group(progress_table(progress)))

    def _stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def finished(self, results: StudyResults) -> None:
        self._stop()

    def failed(self, reason: str) -> None:
        self._stop()


def ranking_table(results: StudyResults) -> Table:
    table = Table(title=f"{results.name} — ranking by test accuracy ({len(results.seeds)} seeds, baseline {results.baseline})")
    for col in ("#", "activation", "test acc", "95% CI", f"Δ vs {results.baseline}", "p (Holm)", "lr", "l2"):
        table.add_column(col, justify="right" if col not in ("activation",) else "left")
    for r in report.ranking_rows(results):
        diff = r["diff_vs_baseline"]
        table.add_row(
            str(r["rank"]), r["activation"], f"{r['test_acc_mean']:.4f} ± {r['test_acc_std']:.4f}",
            f"[{r['ci95_low']:.4f}, {r['ci95_high']:.4f}]",
            ("-" if math.isnan(diff) else f"{diff:+.4f}") + (" *" if r["significant"] else ""),
            "not testable" if r["not_testable"] else "-" if math.isnan(r["p_holm"]) else f"{r['p_holm']:.3g}",
            "-" if r["best_lr"] is None else f"{r['best_lr']:.3g}", "-" if r["best_l2"] is None else f"{r['best_l2']:.3g}",
        )
    return table


def print_results(console: Console, results: StudyResults) -> None:
    """The ranking, the winner and where to browse the study in MLflow."""
    console.print(ranking_table(results))
    for note in report.untested_notes(report.ranking_rows(results)):
        console.print(f"  {note}")
    console.print(f"best activation: [bold]{results.best_activation}[/bold]")
    console.print(report.verdict(results))
    if results.mlflow is not None:
        console.print(f"MLflow, the answer:  {results.mlflow.parent_run_url or results.mlflow.parent_run_id}")
        if results.mlflow.experiment_url:
            console.print(f"MLflow, every run:   {results.mlflow.experiment_url}")


def describe_model_report(report: dict) -> str:
    """One line for a model from outside (StudySpec.model_report): its size and what the activations replace."""
    return f"model: {report['parameters']:,} parameters; {report['coverage']}"
