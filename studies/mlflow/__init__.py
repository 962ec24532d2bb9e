"""A study in MLflow: the layout's names (`studies.mlflow.layout`, a contract), the recorder each trial logs
with, the Tune callback by which the driver ends every trial's run (`RunEnds`), and the study's own runs with
the answer it writes when it ends (`StudyRuns`, `StudyAnswer`).

The study's runs and its answer load on first use: they need the report's SciPy and matplotlib, which a trial
process (the recorder's user) does not.
"""

import importlib

from studies.mlflow import layout
from studies.mlflow._recorder import FLUSH_EVERY_S, MLFLOW_AWAY, TRIAL_MLFLOW_ENV, MlflowTrialRecorder, ended_members
from studies.mlflow._run_ends import RUN_STATUS, RunEnds, close_study_runs, end_run

_LAZY = {"StudyRuns": "_study_runs", "StudyAnswer": "_summary", "StudyRunIds": "_summary", "write_answer": "_summary"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["FLUSH_EVERY_S", "MLFLOW_AWAY", "RUN_STATUS", "TRIAL_MLFLOW_ENV", "MlflowTrialRecorder", "RunEnds", "StudyAnswer", "ended_members",
           "StudyRunIds", "StudyRuns", "close_study_runs", "end_run", "layout", "write_answer"]
