"""The study's own MLflow runs: the experiment, the parent run and one child run per activation.

Opening is idempotent (runs are found by tag), so a resumed driver keeps writing to the same runs.
The experiment opens on its training runs; the parent run ends with the answer on its Overview page
(`studies.study_summary`: the verdict, the ranking, the figures, results.json).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from mlflow.entities import Param, RunTag
from mlflow.tracking import MlflowClient

from studies import study_summary
from studies.run_ends import end_run
from studies.schema import MlflowLinks, RunLink, StudyResults, TrialSummary
from studies.spec import StudySpec
from studies.tracking import PARENT_RUN

log = logging.getLogger(__name__)


def experiment_name(spec: StudySpec, study_id: str) -> str:
    return f"study-{study_id}" if spec.name in ("study", "") else f"{spec.name}-{study_id}"


@dataclass
class StudyRuns:
    client: MlflowClient
    uri: str
    experiment_id: str
    parent_id: str
    spec: StudySpec
    activation_runs: dict[str, str] = field(default_factory=dict)

    @classmethod
    def open(cls, uri: str, spec: StudySpec, study_id: str) -> "StudyRuns":
        client = MlflowClient(uri)
        name = experiment_name(spec, study_id)
        exp = client.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp else client.create_experiment(name, tags={"actstudy.study_id": study_id})
        for key, value in {**study_summary.EXPERIMENT_KIND, study_summary.NOTE: _experiment_note(spec, study_id)}.items():
            client.set_experiment_tag(exp_id, key, value)  # also on experiments made before these tags
        parent = _find_or_create(client, exp_id, "tags.`actstudy.role` = 'study'", {"actstudy.role": "study", "actstudy.study_id": study_id}, spec.name)
        runs = cls(client, uri, exp_id, parent, spec)
        client.log_batch(parent, params=[Param(k, v) for k, v in _flat_spec(spec).items()],
                         tags=[RunTag("actstudy.status", "running"), RunTag(study_summary.NOTE, study_summary.running_note(spec, study_id))])
        client.log_text(parent, spec.model_dump_json(indent=2), "spec.json")
        # Found by tag in Python: a label is user text and never goes into a filter string.
        existing = {r.data.tags.get("activation"): r.info.run_id
                    for r in client.search_runs([exp_id], "tags.`actstudy.role` = 'activation'", max_results=1000)}
        for a in spec.activations:
            runs.activation_runs[a.label] = existing.get(a.label) or client.create_run(
                exp_id, tags={"actstudy.role": "activation", "activation": a.label, PARENT_RUN: parent,
                              "actstudy.study_id": study_id}, run_name=a.label).info.run_id
        return runs

    def _running(self, kind: str | None = None) -> list:
        where = f"tags.`actstudy.kind` = '{kind}'" if kind else "tags.`actstudy.kind` != ''"
        return self.client.search_runs([self.experiment_id], f"attributes.status = 'RUNNING' AND {where}", max_results=10000)

    def close_interrupted(self, ended: dict[str, str]) -> int:
        """End the trial runs a dead driver left RUNNING: with the outcome the search store holds for their
        trial (`ended`: trial key → outcome), else FAILED (their trials run again and point back here)."""
        stale = self._running()
        for run in stale:
            status = ended.get(run.data.tags.get("actstudy.trial_key", ""))
            if status:
                end_run(self.client, run.info.run_id, status)
            else:
                end_run(self.client, run.info.run_id, "lost", "interrupted: the study driver stopped; the trial runs again")
        return len(stale)

    def sweep(self, kind: str) -> int:
        """After a phase nothing of it runs: a run still RUNNING lost its attempt before it reported."""
        stale = self._running(kind)
        for run in stale:
            end_run(self.client, run.info.run_id, "lost", "attempt ended without reporting a result")
        return len(stale)

    def finished_confirmations(self) -> dict[str, float]:
        """Test accuracy of every confirmation seed that has finished, by trial key (from earlier drivers)."""
        found = self.client.search_runs(
            [self.experiment_id], "tags.`actstudy.kind` = 'confirm' AND attributes.status = 'FINISHED'", max_results=10000)
        return {r.data.tags["actstudy.trial_key"]: float(r.data.metrics["test_acc"])
                for r in found if r.data.tags.get("actstudy.trial_key") and "test_acc" in r.data.metrics}

    def _ui(self) -> str | None:
        """The MLflow UI's address as users reach it ($ACTSTUDY_MLFLOW_PUBLIC_URL if set); None if not a server."""
        base = os.environ.get("ACTSTUDY_MLFLOW_PUBLIC_URL") or self.uri
        return base.rstrip("/") if base.startswith("http") else None

    def url(self, run_id: str) -> str | None:
        """The run in the MLflow UI."""
        ui = self._ui()
        return ui and f"{ui}/{study_summary.run_path(self.experiment_id, run_id)}"

    @property
    def parent_url(self) -> str | None:
        return self.url(self.parent_id)

    @property
    def experiment_url(self) -> str | None:
        """The experiment's runs table (with the parent on top) in the MLflow UI."""
        ui = self._ui()
        return ui and f"{ui}/{study_summary.experiment_path(self.experiment_id)}"

    def links(self) -> MlflowLinks:
        return MlflowLinks(tracking_uri=self.uri, experiment_id=self.experiment_id, parent_run_id=self.parent_id,
                           parent_run_url=self.parent_url, experiment_url=self.experiment_url,
                           activation_runs={k: RunLink(run_id=v, url=self.url(v)) for k, v in self.activation_runs.items()})

    def finish(self, results: StudyResults, trials: dict[str, list[TrialSummary]], best: dict[str, TrialSummary],
               scores: dict[str, dict[int, float]], optuna_studies: dict) -> None:
        """Write the answer where MLflow's UI shows it (`studies.study_summary`, which ends the activation runs as
        it writes them) and end the parent."""
        c = self.client
        study_summary.write_answer(c, self.experiment_id, self.parent_id, self.activation_runs, self.spec, results, trials,
                                   best, scores, optuna_studies)
        winner = results.best_activation
        c.log_batch(self.parent_id, tags=[RunTag("actstudy.status", "succeeded"), RunTag("best_activation", winner or ""),
                                          RunTag("best_activation_run", self.activation_runs.get(winner, ""))])
        c.set_terminated(self.parent_id, "FINISHED")

    def fail(self, reason: str, status: str = "FAILED") -> None:
        """End the study's runs as FAILED (or KILLED when it was stopped), with the reason."""
        try:
            label = "failed" if status == "FAILED" else "stopped"
            self.client.log_batch(self.parent_id, tags=[RunTag("actstudy.status", label), RunTag("actstudy.failure", reason[:4000])])
            for run_id in [*self.activation_runs.values(), self.parent_id]:
                self.client.set_terminated(run_id, status)
        except Exception as exc:  # noqa: BLE001 — the failure is reported elsewhere too
            log.warning("could not mark the study's MLflow runs failed: %s", exc)


def _find_or_create(client: MlflowClient, exp_id: str, filter_string: str, tags: dict, name: str) -> str:
    found = client.search_runs([exp_id], filter_string, max_results=1)
    if found:
        return found[0].info.run_id
    return client.create_run(exp_id, tags=tags, run_name=name).info.run_id


def _experiment_note(spec: StudySpec, study_id: str) -> str:
    return (f"actstudy study `{study_id}`: which activation should {spec.model.name} on {spec.dataset.name} use? "
            f"The run **{spec.name}** holds the answer (its Overview); beneath it one run per activation, and beneath "
            "those every search trial and confirmation seed.")


def _flat_spec(spec: StudySpec) -> dict[str, str]:
    """The whole spec as MLflow params, by dotted path (`training.epochs`, `search.lr.low`); the activations
    as their labels."""
    flat = {"activations": ",".join(spec.labels)}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}{key}.", inner)
        else:
            flat[prefix[:-1]] = ",".join(map(str, value)) if isinstance(value, list) else str(value)

    walk("", spec.model_dump(mode="json", exclude={"activations"}))
    return flat


__all__ = ["StudyRuns", "experiment_name"]
