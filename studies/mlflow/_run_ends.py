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
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from studies.mlflow import layout
from studies.mlflow._recorder import MLFLOW_AWAY
from studies.spec import outcome
from studies.trial_run import MEMBER_ENDS, is_population, member_runs, members_of, run_of

log = logging.getLogger(__name__)
# outcome → MLflow status ("lost" and anything else: FAILED)
RUN_STATUS = {"completed": "FINISHED", "pruned": "KILLED", "diverged": "FAILED", "error": "FAILED", "cancelled": "KILLED"}


def end_run(client: MlflowClient, run_id: str, status: str, failure: str | None = None) -> None:
    """End one run with an outcome (completed | pruned | diverged | error | lost)."""
    tags = [RunTag(layout.STATUS, status)]
    if failure:
        tags.append(RunTag(layout.FAILURE, layout.clip(failure, layout.FAILURE_CHARS)))
    client.log_batch(run_id, tags=tags)
    client.set_terminated(run_id, RUN_STATUS.get(status, "FAILED"))


def close_study_runs(uri: str, study_name: str, study_id: str, reason: str) -> int:
    """End every run of a study that is still open (its parent, activation and trial runs) as cancelled (KILLED),
    with `reason`; how many were. The service calls it once a cancelled study's driver is gone."""
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(layout.experiment_name(study_name, study_id))
    if experiment is None:
        return 0
    running = client.search_runs([experiment.experiment_id], layout.status_filter("RUNNING"), max_results=layout.SEARCH_PAGE)
    for run in running:
        end_run(client, run.info.run_id, "cancelled", reason)
    return len(running)


class RunEnds(tune.Callback):
    """Ends the run of each trial of one experiment: FINISHED, KILLED (pruned) or FAILED (diverged, error).
    A population's members each have their run: one that a report says was pruned or diverged is ended there,
    the others when the population ends.

    An end that cannot be written (MLflow away) is kept and tried again at every later event, and at the
    end of the experiment for up to END_WAIT_S, before the phase's sweep takes what is still RUNNING as lost.
    """

    END_WAIT_S = 300.0

    def __init__(self, mlflow_uri: str, epochs: int) -> None:
        self.uri, self.epochs = mlflow_uri, epochs
        self.runs: dict[str, str] = {}  # Tune trial id (a member's: "<trial id>/<key>") → the run of its current attempt
        self.ended: set[str] = set()  # members whose runs were ended by a report
        # Ends not written yet: (run id, or (experiment id, kind, trial key) to find it by, outcome, failure).
        self.pending: list[tuple[str | tuple[str, str, str], str, str | None]] = []
        self._client: MlflowClient | None = None

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(self.uri)
        return self._client

    def _write_pending(self) -> bool:
        """Write what can be written; True when nothing is left."""
        left = []
        for run, status, failure in self.pending:
            try:
                run_id = run if isinstance(run, str) else self._find(*run)
                if run_id is None:
                    # Not created yet (MLflow was away when the trial started), or never: an attempt that
                    # failed before its first epoch may have none, and nothing waits for it.
                    if status not in ("error", "lost"):
                        left.append((run, status, failure))
                    continue
                end_run(self.client, run_id, status, failure)
            except MLFLOW_AWAY as exc:  # try again later
                log.warning("could not end the run of %s (%s) yet: %s", run, status, exc)
                left.append((run, status, failure))
        self.pending = left
        return not left

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result.get("mlflow_run_id"):
            self.runs[trial.trial_id] = result["mlflow_run_id"]
        reported = members_of(result)
        for key, member in reported.items():
            if member.get("mlflow_run_id"):
                self.runs[f"{trial.trial_id}/{key}"] = member["mlflow_run_id"]
        ended = {key for key, member in reported.items() if member.get("status") in MEMBER_ENDS}
        if ended:
            self._end_members(trial, lambda m: m["status"], reported=reported, only=ended)
        if self.pending:
            self._write_pending()

    def _find(self, experiment_id: str, kind: str, key: str) -> str | None:
        found = self.client.search_runs(
            [experiment_id], f"{layout.attempts_filter(kind, key)} AND {layout.status_filter('RUNNING')}", max_results=1)
        return found[0].info.run_id if found else None

    def _end_members(self, trial, status_of, failure: str | None = None, *, reported: dict | None = None,
                     only: set[str] | None = None, final: bool = True) -> None:
        """End the runs of a population's members not ended yet (those in `only`, if given), each with
        `status_of(its last report)`; `final=False` (an attempt lost, its members trained again) leaves them to end
        again with their next attempt."""
        reported = members_of(trial.last_result) if reported is None else reported
        for where in member_runs(trial.config):
            slot = f"{trial.trial_id}/{where.trial_key}"
            if slot in self.ended or (only is not None and where.trial_key not in only):
                continue
            member = reported.get(where.trial_key, {})
            status = status_of(member)
            why = failure or (f"non-finite loss at epoch {member.get('epoch')}" if status == "diverged" else None)
            if final:
                self.ended.add(slot)
            self._end(trial, status, why, slot=slot, where=where)

    def _end(self, trial, status: str, failure: str | None = None, *, slot: str | None = None, where=None) -> None:
        run = self.runs.pop(slot or trial.trial_id, None)
        if run is None:  # no epoch reported its run (MLflow was away): find it by the trial's key
            where = where or run_of(trial.config)
            if not where.trial_key or not where.mlflow_experiment_id:
                return
            run = (where.mlflow_experiment_id, where.kind, where.trial_key)
        self.pending.append((run, status, failure))
        self._write_pending()

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        if is_population(trial.config):
            self._end_members(trial, lambda m: m["status"] if m.get("status") in MEMBER_ENDS else outcome(m, self.epochs))
            return
        status = outcome(result, self.epochs)
        self._end(trial, status, f"non-finite loss at epoch {result.get('epoch')}" if status == "diverged" else None)

    def on_trial_error(self, iteration, trials, trial, **info):
        if is_population(trial.config):
            self._end_members(trial, lambda _: "error")
            return
        self._end(trial, "error")  # the trial tagged its own exception as actstudy.failure

    def on_trial_recover(self, iteration, trials, trial, **info):
        # Tune runs the trial again (a worker died); the next attempt's run points back to this one.
        lost = "attempt lost: its worker died; the trial was run again"
        if is_population(trial.config):
            self._end_members(trial, lambda _: "lost", lost, final=False)
            return
        self._end(trial, "lost", lost)

    def on_experiment_end(self, trials, **info):
        # Every 2 s until everything is written, for at most END_WAIT_S (then the phase's sweep takes over).
        Retrying(stop=stop_after_delay(self.END_WAIT_S), wait=wait_fixed(2), retry=retry_if_result(lambda written: not written),
                 retry_error_callback=lambda _: False)(self._write_pending)
        if self.pending:
            log.error("MLflow unreachable for %.0f s: %d run(s) not ended", self.END_WAIT_S, len(self.pending))

    def __getstate__(self):  # pickled into Tune's tuner.pkl; the client is rebuilt on use
        return {"uri": self.uri, "epochs": self.epochs, "runs": {}, "ended": set(), "pending": [], "_client": None}
