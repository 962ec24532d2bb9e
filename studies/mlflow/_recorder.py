"""The per-trial MLflow recorder that runs on workers: one grandchild run per attempt of a trial."""

from __future__ import annotations

import json
import logging
import socket
import tempfile
import time
from pathlib import Path

import requests
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from tenacity import RetryError, Retrying, before_sleep_log, retry_if_exception_type, stop_after_delay, wait_fixed

from studies.mlflow import layout
from studies.trial_run import TrialRun
from workers import TrialConfig, TrialRecorder, TrialResult

log = logging.getLogger(__name__)

# In trial processes (see studies.execution.TRIAL_ENV) requests fail fast and this recorder buffers instead.
TRIAL_MLFLOW_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
MAX_BUFFERED = 100_000  # metrics held while the server is unreachable
# Epoch metrics go out at most this often, and all of them when the attempt ends: one request per epoch
# cost short epochs (MNIST-1D, ~30 ms) about as much again as the epoch itself (bench/orchestration.py).
FLUSH_EVERY_S = 1.0
# What an unreachable or failing MLflow server raises through the client (its REST layer wraps connection
# errors in MlflowException), and what this recorder raises itself while its run does not exist yet.
MLFLOW_AWAY = (MlflowException, requests.RequestException, OSError)


class RunNotCreated(ConnectionError):
    """The attempt's run could not be created yet (the server is away)."""


class MlflowTrialRecorder(TrialRecorder):
    """Logs one trial attempt to its own grandchild run: per-epoch metrics in one batch, evolution artifacts.

    Where it records is the trial's `TrialRun`: nothing without an `mlflow_uri`. A restarted
    attempt marks the interrupted run FAILED, pointing to its retry, and re-logs the resumed epochs so the
    new run holds the whole curve. Epoch metrics are sent at most every FLUSH_EVERY_S seconds and in full
    when the attempt ends. The run's end (its status) is the driver's: it hears how the trial ended from
    Tune (`studies.mlflow.RunEnds`), with the run id this recorder reports with every epoch.
    """

    END_FLUSH_S = 300.0  # how long an ending attempt waits for an unreachable server before giving up

    def __init__(self, run: TrialRun) -> None:
        self.trial_run = run
        self.client: MlflowClient | None = None
        self.run_id: str | None = None
        self.evolution: dict[str, list[dict]] = {}
        self._pending: list[Metric] = []
        self._last_flush = float("-inf")

    def start(self, cfg: TrialConfig, previous: dict | None, history: list[dict] | None = None) -> None:
        run = self.trial_run
        if not run.mlflow_uri:
            return
        self.client = MlflowClient(run.mlflow_uri)
        self._experiment_id = run.mlflow_experiment_id
        self._tags = {
            layout.PARENT_RUN: run.mlflow_parent_runs[run.label],
            layout.ACTIVATION: run.label,
            layout.KIND: run.kind,
            layout.TRIAL_KEY: run.trial_key,
            layout.NODE: socket.gethostname(),
            layout.NODE_IP: _node_ip(),
            layout.NODE_ID: _node_id(),
            layout.TUNE_TRIAL_ID: _trial_id(),
            layout.STUDY_ID: run.study_id,
        }
        if run.optuna_trial is not None:
            self._tags[layout.OPTUNA_TRIAL] = str(run.optuna_trial)
        self._name = f"{run.label}-{run.kind}-{run.trial_key or self._tags[layout.TUNE_TRIAL_ID] or cfg.seed}"
        self._params = cfg.params()
        self._previous = (previous or {}).get("run_id")
        self._ensure_run()
        for record in history or []:
            self.epoch(record)

    def _ensure_run(self) -> bool:
        """Create this attempt's run; while MLflow is unreachable, keep trying at each epoch (the trial trains on)."""
        if self.run_id is not None:
            return True
        try:
            run = self.client.create_run(self._experiment_id, tags=self._tags, run_name=self._name)
        except MLFLOW_AWAY as exc:
            log.warning("mlflow unreachable, run not created yet: %s", exc)
            return False
        self.run_id = run.info.run_id
        self._safe(lambda: self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in self._params.items()]))
        self._safe(self._link_retries)
        return True

    def _link_retries(self) -> None:
        """Earlier attempts of this trial (a lost node, a dead driver) end FAILED and point to this run."""
        earlier = set()
        if self._previous:
            earlier.add(self._previous)
        key = self._tags[layout.TRIAL_KEY]
        if key:
            found = self.client.search_runs(
                [self._experiment_id], layout.attempts_filter(self._tags[layout.KIND], key), max_results=100)
            earlier |= {r.info.run_id for r in found if r.info.status in ("RUNNING", "FAILED")
                        and layout.RETRIED_AS not in r.data.tags and r.data.tags.get(layout.STATUS) != "diverged"}
        earlier.discard(self.run_id)
        for old in sorted(earlier):
            self.client.set_tag(old, layout.RETRIED_AS, self.run_id)
            self.client.set_terminated(old, "FAILED")
        if earlier:
            self.client.set_tag(self.run_id, layout.RETRY_OF, ",".join(sorted(earlier)))

    def epoch(self, record: dict) -> None:
        if self.client is None:
            return
        step, now = int(record["epoch"]), int(time.time() * 1000)
        values = {k: record[k] for k in layout.EPOCH_METRICS if k in record}
        values.update(layout.evolution_metrics(record.get("activations", {})))
        self._pending += [Metric(k, float(v), now, step) for k, v in values.items()]
        for layer, snap in record.get("activations", {}).items():
            self.evolution.setdefault(layer, []).append({"epoch": step, "state": snap})
        if time.monotonic() - self._last_flush >= FLUSH_EVERY_S:
            self.flush()

    def flush(self) -> bool:
        """Send buffered metrics (in batches MLflow takes); keep what did not arrive. False while MLflow is away."""
        self._last_flush = time.monotonic()
        try:
            self._send()
            return True
        except MLFLOW_AWAY as exc:  # the server may be away; the trial goes on
            log.warning("mlflow unreachable, %d metrics buffered: %s", len(self._pending), exc)
            del self._pending[:-MAX_BUFFERED]
            return False

    def _send(self) -> None:
        if not self._ensure_run():
            raise RunNotCreated("run not created yet")
        while self._pending:
            self.client.log_batch(self.run_id, metrics=self._pending[:layout.BATCH_METRICS])
            del self._pending[:layout.BATCH_METRICS]

    def _finish(self, tags: dict[str, str] | None = None) -> None:
        """Everything this attempt has to log, sent before the trial function returns (so before Tune hears it
        ended); an unreachable server is waited for up to END_FLUSH_S."""
        if self.client is None:
            return
        try:
            Retrying(stop=stop_after_delay(self.END_FLUSH_S), wait=wait_fixed(2), retry=retry_if_exception_type(MLFLOW_AWAY),
                     before_sleep=before_sleep_log(log, logging.WARNING))(self._send)
        except RetryError:
            log.error("mlflow unreachable for %.0f s: this attempt's metrics were not recorded", self.END_FLUSH_S)
            return
        self._safe(self._log_evolution)
        if tags:
            self._safe(lambda: self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()]))

    def end(self, result: TrialResult) -> None:
        self._finish()

    def failed(self, error: BaseException) -> None:
        self._finish({layout.FAILURE: layout.clip(f"{type(error).__name__}: {error}", layout.FAILURE_CHARS)})

    def stopped(self) -> None:
        self._finish()

    def state(self) -> dict:
        return {"run_id": self.run_id}

    def metrics(self) -> dict:
        return {"mlflow_run_id": self.run_id} if self.run_id else {}

    def _log_evolution(self) -> None:
        if not self.evolution:
            return
        from studies.report import plot_evolution, save  # matplotlib: only where a learnable activation trained

        with tempfile.TemporaryDirectory() as tmp:
            for layer, history in self.evolution.items():
                key = layout.sanitize(layer)
                kind = layout.activation_kind(history[-1]["state"])
                (Path(tmp) / f"{key}.json").write_text(json.dumps({"layer": layer, "kind": kind, "history": history}))
                try:  # one layer's figure failing (values training pushed anywhere) loses that figure only
                    save(plot_evolution(kind, history, f"{kind.upper()} at {layer}: its shape over training"), Path(tmp) / f"{key}.png", dpi=90)
                except Exception as exc:  # noqa: BLE001
                    log.warning("evolution figure of %s not drawn: %s: %s", layer, type(exc).__name__, exc)
            self.client.log_artifacts(self.run_id, tmp, artifact_path=layout.EVOLUTION_DIR)

    @staticmethod
    def _safe(fn) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 — best effort: a figure or a tag missing never fails the trial
            log.warning("mlflow call failed: %s", exc)


def ended_members(runs: list[TrialRun]) -> dict[str, dict[int, float]]:
    """The members among `runs` (a population's) that an earlier attempt of the population saw to their end (a run
    FINISHED, pruned or diverged), each with its validation accuracy by epoch: Tune runs a population again when its
    worker died, and those members must not train twice, while their values still count at the rungs. Empty when
    MLflow is unreachable (then every member trains again, each with a new run)."""
    ended: dict[str, dict[int, float]] = {}
    clients: dict[str, MlflowClient] = {}  # one per server (the members share theirs)
    try:
        for run in runs:
            if not run.mlflow_uri or not run.trial_key:
                continue
            if run.mlflow_uri not in clients:
                clients[run.mlflow_uri] = MlflowClient(run.mlflow_uri)
            client = clients[run.mlflow_uri]
            found = client.search_runs([run.mlflow_experiment_id], layout.attempts_filter(run.kind, run.trial_key), max_results=100)
            done = [r for r in found if r.data.tags.get(layout.STATUS) in ("completed", "pruned", "diverged")
                    and layout.RETRIED_AS not in r.data.tags]
            if done:
                ended[run.trial_key] = {m.step: m.value for m in client.get_metric_history(done[0].info.run_id, "val_acc")}
    except MLFLOW_AWAY as exc:
        log.warning("mlflow unreachable, every member of the population trains: %s", exc)
        return {}
    return ended


def _trial_id() -> str:
    try:
        from ray import tune

        return tune.get_context().get_trial_id() or ""
    except Exception:  # noqa: BLE001 — outside Tune
        return ""


def _node_id() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_node_id() or ""
    except Exception:  # noqa: BLE001
        return ""


def _node_ip() -> str:
    try:
        import ray

        return ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001
        return ""
