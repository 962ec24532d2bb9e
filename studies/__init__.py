"""The study: every activation tuned fairly, confirmed over shared seeds, compared honestly, recorded in MLflow.

Its rooms, each a package whose `__init__` names what it offers (imports flow down this list):

- `spec/`       what a study is (the spec, its limits) and what it reports (typed status, progress, results)
- `report/`     the answer: statistics, results, the ranking as tables and a verdict, figures
- `mlflow/`     the MLflow layout (`mlflow.layout`, a contract), the trial recorder, run ends, the study's runs
- `execution/`  what both phases share: the Ray cluster, the study's folders, Tune experiments, progress
- `search/`     phase 1: Optuna storage and samplers, the per-activation searcher and scheduler, the search
- `confirm/`    phase 2: the best setting of each activation over the shared seeds
- `local/`      the embedded stack's processes (an `mlflow server`, a Ray head) on one machine
- `records/`    the study records in SQL (the service's and the driver's shared truth)

and the entry points: `runner` (`run_study`), `driver` (`python -m studies.driver ID`, the service's Ray
job), `cli` (`actstudy run | train | activations`), `console` (the terminal's tables), `settings` (what a
driver reads from its environment), `cli_options` (click options from a pydantic model), `trial_run` and
`trainable` (a study trial on a Ray worker).
"""

__all__ = ["confirm", "execution", "local", "mlflow", "records", "report", "search", "spec"]
