"""MLflow: the study's layout (contract, see DESIGN.md) and the per-trial recorder that runs on workers.

experiment `study-<id>` → parent run (the study) → child run per activation (tag `activation`) →
grandchild runs per trial (`actstudy.kind=trial`) and per confirmation seed (`actstudy.kind=confirm`).
"""

from __future__ import annotations

import json
import logging
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from workers.config import TrialConfig
from workers.train import TrialResult
from workers.trainable import TrialRecorder

if TYPE_CHECKING:
    from studies.trial import TrialRun

log = logging.getLogger(__name__)

# In trial processes (see studies.runner.TRIAL_ENV) requests fail fast and this recorder buffers instead.
TRIAL_MLFLOW_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}

PARENT_RUN = "mlflow.parentRunId"
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /:]")
EPOCH_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "lr", "epoch_time")
MAX_BUFFERED = 100_000  # metrics held while the server is unreachable
# Epoch metrics go out at most this often, and all of them when the attempt ends: one request per epoch
# cost short epochs (MNIST-1D, ~30 ms) about as much again as the epoch itself (bench/orchestration.py).
FLUSH_EVERY_S = 1.0


def sanitize(name: str) -> str:
    """A module path as an MLflow-safe key part."""
    return _UNSAFE.sub("_", name)


def evolution_metrics(snapshots: dict[str, dict]) -> dict[str, float]:
    """Per-layer scalar series of the activations that report their shape, PWLU and LSLU (channel means where channel-wise)."""
    out: dict[str, float] = {}
    for layer, snap in snapshots.items():
        key = sanitize(layer)
        if "theta" in snap:
            for i, (t, w) in enumerate(zip(snap["theta"], snap["omega"])):
                out[f"lslu.{key}.theta_{i}"] = float(t)
                out[f"lslu.{key}.omega_{i}"] = float(w)
        elif "points" in snap:
            for name in ("left_bound", "right_bound", "left_slope", "right_slope"):
                v = snap[name]
                out[f"pwlu.{key}.{name}"] = float(sum(v) / len(v)) if isinstance(v, list) else float(v)
    return out


def activation_kind(snap: dict) -> str:
    return "lslu" if "theta" in snap else "pwlu"


def attempts_filter(kind: str, key: str) -> str:
    """An MLflow filter for the runs of one trial's attempts. The study builds keys of [a-z0-9-] only,
    so the key is safe inside the filter string."""
    return f"tags.`actstudy.trial_key` = '{key}' AND tags.`actstudy.kind` = '{kind}'"


class MlflowTrialRecorder(TrialRecorder):
    """Logs one trial attempt to its own grandchild run: per-epoch metrics in one batch, evolution artifacts.

    Where it records is the trial's `TrialRun`: nothing without an `mlflow_uri`. A restarted
    attempt marks the interrupted run FAILED, pointing to its retry, and re-logs the resumed epochs so the
    new run holds the whole curve. Epoch metrics are sent at most every FLUSH_EVERY_S seconds and in full
    when the attempt ends. The run's end (its status) is the driver's: it hears how the trial ended from
    Tune (`studies.run_ends.RunEnds`), with the run id this recorder reports with every epoch.
    """

    END_FLUSH_S = 300.0  # how long an ending attempt waits for an unreachable server before giving up

    def __init__(self, run: "TrialRun") -> None:
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
            PARENT_RUN: run.mlflow_parent_runs[run.label],
            "activation": run.label,
            "actstudy.kind": run.kind,
            "actstudy.trial_key": run.trial_key,
            "actstudy.node": socket.gethostname(),
            "actstudy.node_ip": _node_ip(),
            "actstudy.node_id": _node_id(),
            "actstudy.trial_id": _trial_id(),
            "actstudy.study_id": run.study_id,
        }
        if run.optuna_trial is not None:
            self._tags["actstudy.optuna_trial"] = str(run.optuna_trial)
        self._name = f"{run.label}-{run.kind}-{run.trial_key or self._tags['actstudy.trial_id'] or cfg.seed}"
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
        except Exception as exc:  # noqa: BLE001
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
        key = self._tags["actstudy.trial_key"]
        if key:
            found = self.client.search_runs(
                [self._experiment_id], attempts_filter(self._tags["actstudy.kind"], key), max_results=100)
            earlier |= {r.info.run_id for r in found if r.info.status in ("RUNNING", "FAILED")
                        and "actstudy.retried_as" not in r.data.tags and r.data.tags.get("actstudy.status") != "diverged"}
        earlier.discard(self.run_id)
        for old in sorted(earlier):
            self.client.set_tag(old, "actstudy.retried_as", self.run_id)
            self.client.set_terminated(old, "FAILED")
        if earlier:
            self.client.set_tag(self.run_id, "actstudy.retry_of", ",".join(sorted(earlier)))

    def epoch(self, record: dict) -> None:
        if self.client is None:
            return
        step, now = int(record["epoch"]), int(time.time() * 1000)
        values = {k: record[k] for k in EPOCH_METRICS if k in record}
        values.update(evolution_metrics(record.get("activations", {})))
        self._pending += [Metric(k, float(v), now, step) for k, v in values.items()]
        for layer, snap in record.get("activations", {}).items():
            self.evolution.setdefault(layer, []).append({"epoch": step, "state": snap})
        if time.monotonic() - self._last_flush >= FLUSH_EVERY_S:
            self.flush()

    def flush(self, attempts: int = 1, wait: float = 0.0) -> bool:
        """Send buffered metrics (MLflow takes at most 1000 per batch); keep what did not arrive."""
        self._last_flush = time.monotonic()
        for attempt in range(attempts):
            try:
                if not self._ensure_run():
                    raise ConnectionError("run not created yet")
                while self._pending:
                    self.client.log_batch(self.run_id, metrics=self._pending[:1000])
                    del self._pending[:1000]
                return True
            except Exception as exc:  # noqa: BLE001 — the server may be away; the trial goes on
                log.warning("mlflow unreachable, %d metrics buffered: %s", len(self._pending), exc)
                del self._pending[:-MAX_BUFFERED]
                if attempt + 1 < attempts:
                    time.sleep(wait)
        return False

    def _finish(self, tags: dict[str, str] | None = None) -> None:
        """Everything this attempt has to log, sent before the trial function returns (so before Tune hears it ended)."""
        if self.client is None:
            return
        if not self.flush(attempts=int(self.END_FLUSH_S / 2), wait=2.0):
            log.error("mlflow unreachable for %.0f s: this attempt's metrics were not recorded", self.END_FLUSH_S)
            return
        self._safe(self._log_evolution)
        if tags:
            self._safe(lambda: self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()]))

    def end(self, result: TrialResult) -> None:
        self._finish()

    def failed(self, error: BaseException) -> None:
        self._finish({"actstudy.failure": f"{type(error).__name__}: {error}"[:4000]})

    def stopped(self) -> None:
        self._finish()

    def state(self) -> dict:
        return {"run_id": self.run_id}

    def metrics(self) -> dict:
        return {"mlflow_run_id": self.run_id} if self.run_id else {}

    def _log_evolution(self) -> None:
        from studies.plots import plot_evolution, plt

        with tempfile.TemporaryDirectory() as tmp:
            for layer, history in self.evolution.items():
                key = sanitize(layer)
                path = Path(tmp) / f"{key}.json"
                path.write_text(json.dumps({"layer": layer, "kind": activation_kind(history[-1]["state"]), "history": history}))
                kind = activation_kind(history[-1]["state"])
                fig = plot_evolution(kind, history, f"{kind.upper()} at {layer}: its shape over training")
                fig.savefig(Path(tmp) / f"{key}.png", dpi=90)
                plt.close(fig)
            if self.evolution:
                self.client.log_artifacts(self.run_id, tmp, artifact_path="evolution")

    @staticmethod
    def _safe(fn) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001
            log.warning("mlflow call failed: %s", exc)


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
