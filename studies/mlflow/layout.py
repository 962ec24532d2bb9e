"""The MLflow layout of a study (a contract, see DESIGN.md), spelled once: every writer and reader of a
study's runs takes its tag names, metric names, filters, artifact paths and value limits from here.

experiment `<name>-<id>` → parent run (`actstudy.role=study`) → child run per activation
(`actstudy.role=activation`, tag `activation`) → grandchild runs per search trial (`actstudy.kind=trial`)
and per confirmation seed (`actstudy.kind=confirm`), each found again by its `actstudy.trial_key`.
"""

from __future__ import annotations

import re
import zlib
from typing import Literal
from urllib.parse import quote

# --- MLflow's own tags -----------------------------------------------------------------------------------
PARENT_RUN = "mlflow.parentRunId"
NOTE = "mlflow.note.content"  # MLflow shows this tag as a run's (or experiment's) description
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}  # open on the training runs, not GenAI traces

# --- ours ------------------------------------------------------------------------------------------------
ACTIVATION = "activation"  # the activation's label, on activation runs and every run below them
ROLE = "actstudy.role"  # study | activation
KIND = "actstudy.kind"  # trial | confirm: a run of one training
TRIAL_KEY = "actstudy.trial_key"  # a training across attempts and drivers (checkpoints and runs are found by it)
STUDY_ID = "actstudy.study_id"
STATUS = "actstudy.status"  # a run's outcome (completed | pruned | diverged | error | lost) or the study's
FAILURE = "actstudy.failure"  # why a run or the study failed
RETRIED_AS = "actstudy.retried_as"  # on an interrupted attempt: the run of the attempt that replaced it
RETRY_OF = "actstudy.retry_of"  # on a retry: the runs of the attempts it replaced
OPTUNA_TRIAL = "actstudy.optuna_trial"
NODE, NODE_IP, NODE_ID, TUNE_TRIAL_ID = "actstudy.node", "actstudy.node_ip", "actstudy.node_id", "actstudy.trial_id"
RANK = "actstudy.rank"  # on activation runs
BEST_TRIAL_RUN = "actstudy.best_trial_run"  # on activation runs: the run its evolution figures come from
BEST_ACTIVATION, BEST_ACTIVATION_RUN = "best_activation", "best_activation_run"  # on the parent
MODEL_COVERAGE = "actstudy.model_coverage"  # on the parent, for a model from outside: what the activations replace
# Params on the parent for a model from outside: its parameters, the activation modules swapped (one instance per
# call site) and every activation call of a forward pass (the swapped ones and functional ones, left as they were).
MODEL_PARAMETERS, MODEL_SITES, MODEL_CALLS = "model.parameters", "model.activation_sites", "model.activation_calls"

Role = Literal["study", "activation"]
Kind = Literal["trial", "confirm"]

# --- metrics ---------------------------------------------------------------------------------------------
EPOCH_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "lr", "epoch_time")
TEST_ACC = "test_acc"  # per epoch on confirmation runs; per seed (step = the seed) on activation runs
# The parent's `<statistic>/<activation>` metrics ← the ranking table's column (studies.report.ranking_rows).
STATISTICS = {"test_acc_mean": "test_acc_mean", "test_acc_ci95_low": "ci95_low", "test_acc_ci95_high": "ci95_high",
              "test_acc_std": "test_acc_std", "best_val_acc": "best_val_acc", "diff_vs_baseline": "diff_vs_baseline",
              "p_holm": "p_holm"}
ACTIVATION_STATISTICS = ("test_acc_mean", "test_acc_std", "test_acc_ci95_low", "test_acc_ci95_high", "best_val_acc")

# --- artifacts -------------------------------------------------------------------------------------------
EVOLUTION_DIR = "evolution"  # <layer>.json and <layer>.png of PWLU and LSLU sites
PLOTS_DIR = "plots"
SPEC_FILE, RESULTS_FILE, RANKING_MD, RANKING_CSV = "spec.json", "results.json", "ranking.md", "ranking.csv"
ACTIVATION_SUMMARY_FILE = "activation_summary.json"
MODEL_SITES_FILE = "model/activation_sites.json"  # on the parent: every site (path, type, channels, calls) and coverage

# --- limits ----------------------------------------------------------------------------------------------
NOTE_CHARS = 7900  # a description (MLflow keeps 8000 characters of a tag; room for the UI's own)
FAILURE_CHARS = 4000  # a failure's text in a tag
BATCH_METRICS = 1000  # MLflow takes at most this many metrics in one log_batch
SEARCH_PAGE = 10000  # runs asked for at once when a study's runs are listed

# --- names -----------------------------------------------------------------------------------------------
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /:]")


def experiment_name(study_name: str, study_id: str) -> str:
    return f"study-{study_id}" if study_name in ("study", "") else f"{study_name}-{study_id}"


def sanitize(name: str) -> str:
    """A module path (or a label) as an MLflow-safe key part."""
    return _UNSAFE.sub("_", name)


def label_keys(labels: list[str]) -> dict[str, str]:
    """Each activation label as a metric key part: sanitized, and where two labels sanitize alike (formulas:
    `x * sigmoid(x)` and `x + sigmoid(x)`), each of those with a short hash of its own text."""
    keys = {label: sanitize(label) for label in labels}
    taken = [key for key in keys.values()]
    return {label: key if taken.count(key) == 1 else f"{key}-{zlib.crc32(label.encode()):08x}" for label, key in keys.items()}


def clip(text: str, chars: int) -> str:
    return text[:chars]


def evolution_metrics(snapshots: dict[str, dict]) -> dict[str, float]:
    """Per-layer scalar series of the activations that report their shape, PWLU, LSLU and learnable formulas
    (channel means where channel-wise): `lslu.<layer>.theta_<i>`, `pwlu.<layer>.left_bound`, `formula.<layer>.<param>`."""
    out: dict[str, float] = {}
    for layer, snap in snapshots.items():
        key = sanitize(layer)
        if "theta" in snap:
            for i, (t, w) in enumerate(zip(snap["theta"], snap["omega"], strict=True)):
                out[f"lslu.{key}.theta_{i}"] = float(t)
                out[f"lslu.{key}.omega_{i}"] = float(w)
        elif "formula" in snap:
            for name, v in snap["params"].items():
                out[f"formula.{key}.{name}"] = float(sum(v) / len(v)) if isinstance(v, list) else float(v)
        elif "points" in snap:
            for name in ("left_bound", "right_bound", "left_slope", "right_slope"):
                v = snap[name]
                out[f"pwlu.{key}.{name}"] = float(sum(v) / len(v)) if isinstance(v, list) else float(v)
    return out


def activation_kind(snap: dict) -> str:
    """Which learnable activation a state snapshot is of."""
    return "formula" if "formula" in snap else "lslu" if "theta" in snap else "pwlu"


# --- filters (every value put in one is built by the study from safe characters; a label never is) ---------


def role_filter(role: Role) -> str:
    return f"tags.`{ROLE}` = '{role}'"


def kind_filter(kind: Kind | None = None) -> str:
    """The runs of one kind of training, or (None) of every kind."""
    return f"tags.`{KIND}` = '{kind}'" if kind else f"tags.`{KIND}` != ''"


def attempts_filter(kind: Kind, key: str) -> str:
    """The runs of one training's attempts. The study builds keys of [a-z0-9-] only, so the key is safe
    inside the filter string."""
    return f"tags.`{TRIAL_KEY}` = '{key}' AND {kind_filter(kind)}"


def status_filter(status: str) -> str:
    return f"attributes.status = '{status}'"


def child_filter(parent_run: str) -> str:
    return f"tags.`{PARENT_RUN}` = '{parent_run}'"


# --- where the MLflow UI shows things (relative to the UI's root) -----------------------------------------
UI_VIEW = "?workflowType=machine_learning"  # the UI keeps the GenAI/model-training switch in the URL


def run_path(experiment_id: str, run_id: str, tab: str = "") -> str:
    """A run's page in the MLflow UI (`#/experiments/…`)."""
    return f"#/experiments/{experiment_id}/runs/{run_id}{'/' + tab if tab else ''}{UI_VIEW}"


def experiment_path(experiment_id: str) -> str:
    """The experiment's runs table in the MLflow UI."""
    return f"#/experiments/{experiment_id}/runs{UI_VIEW}"


def artifact_src(run_id: str, path: str) -> str:
    """An artifact's bytes from the MLflow server (what an `<img>` in a description needs)."""
    return f"get-artifact?path={quote(path)}&run_uuid={run_id}"
