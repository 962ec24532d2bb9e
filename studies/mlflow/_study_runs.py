"""The study's own MLflow runs: the experiment, the parent run and one child run per activation.

Opening is idempotent (runs are found by tag), so a resumed driver keeps writing to the same runs.
The experiment opens on its training runs; the parent run ends with the answer on its Overview page
(`studies.mlflow._summary`: the verdict, the ranking, the figures, results.json).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from mlflow.entities import Param, RunTag
from mlflow.tracking import MlflowClient

from studies.mlflow import layout
from studies.mlflow._notes import experiment_note, running_note
from studies.mlflow._recorder import MLFLOW_AWAY
from studies.mlflow._run_ends import end_run
from studies.mlflow._summary import StudyAnswer, StudyRunIds, write_answer
from studies.spec import MlflowLinks, RunLink, StudySpec

log = logging.getLogger(__name__)


@dataclass
class StudyRuns:
    client: MlflowClient
    uri: str
    experiment_id: str
    parent_id: str
    spec: StudySpec
    activation_runs: dict[str, str] = field(default_factory=dict)
    public_url: str | None = None  # how users reach the MLflow UI, when not at `uri`

    @classmethod
    def open(cls, uri: str, spec: StudySpec, study_id: str, *, public_url: str | None = None) -> StudyRuns:
        client = MlflowClient(uri)
        name = layout.experiment_name(spec.name, study_id)
        exp = client.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp else client.create_experiment(name, tags={layout.STUDY_ID: study_id})
        for key, value in {**layout.EXPERIMENT_KIND, layout.NOTE: experiment_note(spec, study_id)}.items():
            client.set_experiment_tag(exp_id, key, value)  # also on experiments made before these tags
        parent = _find_or_create(client, exp_id, layout.role_filter("study"), {layout.ROLE: "study", layout.STUDY_ID: study_id},
                                 spec.name)
        runs = cls(client, uri, exp_id, parent, spec, public_url=public_url)
        client.log_batch(parent, params=[Param(k, v) for k, v in _flat_spec(spec).items()],
                         tags=[RunTag(layout.STATUS, "running"), RunTag(layout.NOTE, running_note(spec, study_id))])
        client.log_text(parent, spec.model_dump_json(indent=2), layout.SPEC_FILE)
        report = spec.model_report()
        if report:
            client.log_batch(parent, params=[Param(layout.MODEL_PARAMETERS, str(report["parameters"])),
                                             Param(layout.MODEL_SITES, str(len(report["sites"]))),
                                             Param(layout.MODEL_CALLS, str(report["calls"]))],
                             tags=[RunTag(layout.MODEL_COVERAGE, layout.clip(report["coverage"], layout.FAILURE_CHARS))])
            client.log_dict(parent, report, layout.MODEL_SITES_FILE)
        # Found by tag in Python: a label is user text and never goes into a filter string.
        existing = {r.data.tags.get(layout.ACTIVATION): r.info.run_id
                    for r in client.search_runs([exp_id], layout.role_filter("activation"), max_results=1000)}
        for a in spec.activations:
            runs.activation_runs[a.label] = existing.get(a.label) or client.create_run(
                exp_id, tags={layout.ROLE: "activation", layout.ACTIVATION: a.label, layout.PARENT_RUN: parent,
                              layout.STUDY_ID: study_id}, run_name=a.label).info.run_id
        return runs

    def _running(self, kind: layout.Kind | None = None) -> list:
        return self.client.search_runs([self.experiment_id], f"{layout.status_filter('RUNNING')} AND {layout.kind_filter(kind)}",
                                       max_results=layout.SEARCH_PAGE)

    def close_interrupted(self, ended: dict[str, str]) -> int:
        """End the trial runs a dead driver left RUNNING: with the outcome the search store holds for their
        trial (`ended`: trial key → outcome), else FAILED (their trials run again and point back here)."""
        stale = self._running()
        for run in stale:
            status = ended.get(run.data.tags.get(layout.TRIAL_KEY, ""))
            if status:
                end_run(self.client, run.info.run_id, status)
            else:
                end_run(self.client, run.info.run_id, "lost", "interrupted: the study driver stopped; the trial runs again")
        return len(stale)

    def sweep(self, kind: layout.Kind) -> int:
        """After a phase nothing of it runs: a run still RUNNING lost its attempt before it reported."""
        stale = self._running(kind)
        for run in stale:
            end_run(self.client, run.info.run_id, "lost", "attempt ended without reporting a result")
        return len(stale)

    def finished_confirmations(self) -> dict[str, float]:
        """Test accuracy of every confirmation seed that has finished, by trial key (from earlier drivers)."""
        found = self.client.search_runs([self.experiment_id], f"{layout.kind_filter('confirm')} AND {layout.status_filter('FINISHED')}",
                                        max_results=layout.SEARCH_PAGE)
        return {r.data.tags[layout.TRIAL_KEY]: float(r.data.metrics[layout.TEST_ACC])
                for r in found if r.data.tags.get(layout.TRIAL_KEY) and layout.TEST_ACC in r.data.metrics}

    def _ui(self) -> str | None:
        """The MLflow UI's address as users reach it (`public_url` if set); None if not a server."""
        base = self.public_url or self.uri
        return base.rstrip("/") if base.startswith("http") else None

    def url(self, run_id: str) -> str | None:
        """The run in the MLflow UI."""
        ui = self._ui()
        return ui and f"{ui}/{layout.run_path(self.experiment_id, run_id)}"

    @property
    def parent_url(self) -> str | None:
        return self.url(self.parent_id)

    @property
    def experiment_url(self) -> str | None:
        """The experiment's runs table (with the parent on top) in the MLflow UI."""
        ui = self._ui()
        return ui and f"{ui}/{layout.experiment_path(self.experiment_id)}"

    def links(self) -> MlflowLinks:
        return MlflowLinks(tracking_uri=self.uri, experiment_id=self.experiment_id, parent_run_id=self.parent_id,
                           parent_run_url=self.parent_url, experiment_url=self.experiment_url,
                           activation_runs={k: RunLink(run_id=v, url=self.url(v)) for k, v in self.activation_runs.items()})

    def finish(self, answer: StudyAnswer) -> None:
        """Write the answer where MLflow's UI shows it (ending each activation run as it is written) and end the parent."""
        write_answer(self.client, StudyRunIds(self.experiment_id, self.parent_id, dict(self.activation_runs)), answer)
        winner = answer.results.best_activation
        self.client.log_batch(self.parent_id, tags=[RunTag(layout.STATUS, "succeeded"), RunTag(layout.BEST_ACTIVATION, winner or ""),
                                                    RunTag(layout.BEST_ACTIVATION_RUN, self.activation_runs.get(winner, ""))])
        self.client.set_terminated(self.parent_id, "FINISHED")

    def fail(self, reason: str, status: str = "FAILED") -> None:
        """End the study's runs as FAILED (or KILLED when it was stopped), with the reason."""
        try:
            label = "failed" if status == "FAILED" else "stopped"
            self.client.log_batch(self.parent_id, tags=[RunTag(layout.STATUS, label),
                                                        RunTag(layout.FAILURE, layout.clip(reason, layout.FAILURE_CHARS))])
            for run_id in [*self.activation_runs.values(), self.parent_id]:
                self.client.set_terminated(run_id, status)
        except MLFLOW_AWAY as exc:  # the failure is reported elsewhere too
            log.warning("could not mark the study's MLflow runs failed: %s", exc)


def _find_or_create(client: MlflowClient, exp_id: str, filter_string: str, tags: dict, name: str) -> str:
    found = client.search_runs([exp_id], filter_string, max_results=1)
    if found:
        return found[0].info.run_id
    return client.create_run(exp_id, tags=tags, run_name=name).info.run_id


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

