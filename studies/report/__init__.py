"""A study's answer: confirmation statistics (mean, CI, paired t-tests with Holm, "not testable" where no
test exists), the results, the ranking as tables and the verdict, and the figures."""

from studies.report._plots import (
    plot_activations,
    plot_evolution,
    plot_formula_check,
    plot_optuna,
    plot_test_accuracy,
    plot_val_curves,
    save,
)
from studies.report._results import best_trial, build_results
from studies.report._statistics import ALPHA, holm, not_testable, number, paired_vs_baseline, rank, summarize
from studies.report._tables import fmt, p_cell, ranking_csv, ranking_markdown, ranking_rows, study_markdown, untested_notes, verdict

__all__ = ["ALPHA", "best_trial", "build_results", "fmt", "holm", "not_testable", "number", "p_cell", "paired_vs_baseline",
           "plot_activations", "plot_evolution", "plot_formula_check", "plot_optuna", "plot_test_accuracy", "plot_val_curves", "rank", "ranking_csv",
           "ranking_markdown", "ranking_rows", "save", "study_markdown", "summarize", "untested_notes", "verdict"]
