"""The driver ends every trial's MLflow run, with the status Tune decided.

A trial logs its metrics and artifacts and reports its run id with every epoch; its end is not its own to
write: Tune stops a pruned trial by abandoning its thread and reuses the actor, and kills actors at the
end of an experiment, so an end written from the trial side can be lost and leave the run RUNNING.
`RunEnds` is a Tune `Callback` on the driver (as Ray's own `MLflowLoggerCallback` is) that ends each run
when Tune says the trial completed, was stopped, failed or is being retried.
"""

from __future__ import annotations

import logging

from mlflow.entities import RunTag
from mlflow.tracking import MlflowClient
from ray import tune

from studies.search import outcome
from studies.tracking import RUN_STATUS

log = logging.getLogger(__name__)


def end_run(client: MlflowClient, run_id: str, status: str, failure: str | None = None) -> None:
    """End one run with an outcome (completed | pruned | diverged | error | lost)."""
    tags = [RunTag("actstudy.status", status)]
    if failure:
        tags.append(RunTag("actstudy.failure", failure[:4000]))
    client.log_batch(run_id, tags=tags)
    client.set_terminated(run_id, RUN_STATUS.get(status, "FAILED"))


class RunEnds(tune.Callback):
    """Ends the run of each trial of one experiment: FINISHED, KILLED (pruned) or FAILED (diverged, error)."""

    def __init__(self, mlflow_uri: str, epochs: int) -> None:
        self.uri, self.epochs = mlflow_uri, epochs
        self.runs: dict[str, str] = {}  # Tune trial id → the run of its current attempt
        self._client: MlflowClient | None = None

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(self.uri)
        return self._client

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result.get("mlflow_run_id"):
            self.runs[trial.trial_id] = result["mlflow_run_id"]

    def _end(self, trial, status: str, failure: str | None = None) -> None:
        run_id = self.runs.pop(trial.trial_id, None)
        if run_id is None:
            return  # never reported: the phase's sweep ends its run, if it made one
        try:
            end_run(self.client, run_id, status, failure)
        except Exception as exc:  # noqa: BLE001 — MLflow away: the phase's sweep and the next driver settle it
            log.warning("could not end run %s (%s): %s", run_id, status, exc)

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        status = outcome(result, self.epochs)
        self._end(trial, status, f"non-finite loss at epoch {result.get('epoch')}" if status == "diverged" else None)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._end(trial, "error")  # the trial tagged its own exception as actstudy.failure

    def on_trial_recover(self, iteration, trials, trial, **info):
        # Tune runs the trial again (a worker died); the next attempt's run points back to this one.
        self._end(trial, "lost", "attempt lost: its worker died; the trial was run again")

    def __getstate__(self):  # pickled into Tune's tuner.pkl; the client is rebuilt on use
        return {"uri": self.uri, "epochs": self.epochs, "runs": {}, "_client": None}
