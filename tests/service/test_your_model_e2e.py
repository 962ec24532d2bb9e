"""Your model and your data, end to end with real processes: `actstudy serve` (uvicorn), the session's Ray head and
`mlflow server`, on SQLite.

- Over REST: a timm ResNet and a small timm ViT (32×32) on a tensor file, comparing relu, gelu, channel-wise PWLU
  and LSLU: every site its own instance (the count on the parent MLflow run is the model's sites), PWLU's
  evolution recorded per site, every trial and seed FINISHED.
- `actstudy submit --code DIR`, on a service that allows user code: a model from that folder (`source: import`) on
  an image-folder dataset runs to the end.
- `actstudy run --code SITE`: a model and a dataset from an installed plugin package (real entry-point metadata:
  examples/model-plugin pip-installed into SITE), shipped to the trials as Ray's working_dir.

    .venv/bin/python -m pytest tests/service/test_your_model_e2e.py -q      # ~8 min on 2 cores
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from studies.local import free_port
from tests.utils.factories import auth
from tests.utils.runs import start_study, tail, wait_for
from tests.utils.serve import ServeProcess
from tests.utils.sources import RESNET_KW, VIT_KW, write_image_folder

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
LABELS = {"relu", "gelu", "pwlu(channelwise=True,stats_steps=2)", "lslu"}
TINY = {"search": {"trials_per_activation": 1, "lr": {"low": 1e-3, "high": 1e-2}, "pruner": "none"},
        "training": {"epochs": 1, "batch_size": 32}, "confirm": {"seeds": 1}}


def _stack(tmp_path: Path, ray_jobs, mlflow_server, data_root: Path, **env: str) -> ServeProcess:
    data_dir = tmp_path / "data"
    environ = {**os.environ, "ACTSTUDY_DATABASE_URL": f"sqlite:///{tmp_path / 'records.db'}",
               "MLFLOW_TRACKING_URI": mlflow_server.url, "ACTSTUDY_RAY_JOBS_URL": ray_jobs.dashboard_url,
               "ACTSTUDY_RAY_AUTH_TOKEN": ray_jobs.token, "ACTSTUDY_ADMIN_TOKEN": f"admin-{os.urandom(16).hex()}",
               "ACTSTUDY_DATA_DIR": str(data_dir), "ACTSTUDY_RECONCILE_INTERVAL_S": "1", "PYTHONUNBUFFERED": "1",
               "ACTSTUDY_DATA_ROOTS": json.dumps([str(data_root)]), **env}
    stack = ServeProcess(env=environ, data_dir=data_dir, log=tmp_path / "serve.log", port=free_port(), ray_head=ray_jobs)
    stack.start()
    return stack


def _runs(mlflow_uri: str, study_name: str, study_id: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name(f"{study_name}-{study_id}")
    assert exp is not None
    return client, client.search_runs([exp.experiment_id], max_results=1000)


def _check_study_runs(mlflow_uri: str, study_name: str, study_id: str, labels: set[str], sites: int) -> None:
    client, runs = _runs(mlflow_uri, study_name, study_id)
    [parent] = [r for r in runs if r.data.tags.get("actstudy.role") == "study"]
    assert parent.info.status == "FINISHED" and parent.data.tags["actstudy.status"] == "succeeded"
    assert int(parent.data.params["model.activation_sites"]) == sites
    assert parent.data.tags["actstudy.model_coverage"] == f"{sites} of {sites} activation calls swapped"
    stored = json.loads(Path(client.download_artifacts(parent.info.run_id, "model/activation_sites.json")).read_text())
    assert len(stored["sites"]) == sites
    trainings = [r for r in runs if r.data.tags.get("actstudy.kind") in ("trial", "confirm") and "actstudy.retried_as" not in r.data.tags]
    assert sorted(r.data.tags["activation"] for r in trainings) == sorted(list(labels) * 2)  # one trial, one seed each
    assert all(r.info.status == "FINISHED" for r in trainings), [(r.data.tags["activation"], r.info.status) for r in trainings]
    for run in trainings:
        label = run.data.tags["activation"]
        if label.startswith(("pwlu", "lslu")):  # learnable: their evolution, one file per site
            found = [a.path for a in client.list_artifacts(run.info.run_id, "evolution") if a.path.endswith(".json")]
            assert len(found) == sites, (label, found)


def _tensor_file(root: Path, n_train: int = 96, n_test: int = 32) -> Path:
    rng = np.random.default_rng(0)
    y_train, y_test = rng.integers(0, 4, n_train), rng.integers(0, 4, n_test)
    # A class is a brighter quadrant: learnable in an epoch or two.
    def images(y):
        x = rng.normal(0, 1, (len(y), 3, 32, 32)).astype(np.float32)
        for i, c in enumerate(y):
            x[i, :, (c // 2) * 16:(c // 2) * 16 + 16, (c % 2) * 16:(c % 2) * 16 + 16] += 1.5
        return x
    path = root / "quadrants.npz"
    np.savez(path, x_train=images(y_train), y_train=y_train, x_test=images(y_test), y_test=y_test)
    return path


@pytest.mark.timeout(1500)
def test_timm_resnet_and_vit_over_rest_on_a_tensor_file(tmp_path, ray_jobs, mlflow_server):
    from workers.models import build_model_reporting

    data_root = tmp_path / "datasets"
    data_root.mkdir()
    path = _tensor_file(data_root)
    stack = _stack(tmp_path, ray_jobs, mlflow_server, data_root)
    try:
        token = stack.mint("researcher")
        activations = ["relu", "gelu", {"name": "pwlu", "channelwise": True, "stats_steps": 2}, "lslu"]
        models = {"resnet": ("resnet18", RESNET_KW), "vit": ("vit_tiny_patch16_224", VIT_KW)}
        submitted = {}
        for short, (name, kwargs) in models.items():
            body = {"name": f"timm-{short}", "dataset": {"source": "file", "path": str(path)},
                    "model": {"source": "timm", "name": name, "kwargs": kwargs}, "activations": activations, **TINY}
            r = stack.http.post("/api/v1/studies", json=body, headers=auth(token))
            assert r.status_code == 201, r.text
            report = r.json()["model_report"]
            _, expected = build_model_reporting(name, source="timm", kwargs=kwargs, input_shape=(3, 32, 32), num_classes=4)
            assert len(report["sites"]) == len(expected.sites) and report["coverage"] == expected.coverage()
            submitted[short] = (r.json()["id"], len(expected.sites))
        for short, (study_id, sites) in submitted.items():
            study = stack.wait_for(study_id, auth(token), lambda s: s["status"] in ("succeeded", "failed"), 900, "ended")
            assert study["status"] == "succeeded", study["error"]
            results = stack.http.get(f"/api/v1/studies/{study_id}/results", headers=auth(token)).json()
            assert set(results["ranking"]) == LABELS
            _check_study_runs(mlflow_server.url, f"timm-{short}", study_id, LABELS, sites)
        assert {s for _, s in submitted.values()} == {9, 2}  # ResNet: stem + 4 blocks × 2; ViT: one GELU per block
    finally:
        stack.stop()


MY_MODEL = '''
from torch import nn


def build(input_shape, num_classes, width=8):
    """A small CNN of my own: its two ReLU modules are swapped for the activation under study."""
    return nn.Sequential(nn.Conv2d(input_shape[0], width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(width, num_classes))
'''


@pytest.mark.timeout(1200)
def test_submit_code_runs_my_model_on_an_image_folder(tmp_path, ray_jobs, mlflow_server):
    data_root = tmp_path / "datasets"
    folder = write_image_folder(data_root / "pets", per_class=(16, 4), size=(12, 12))
    code = tmp_path / "mycode"
    (code / "mymodels").mkdir(parents=True)
    (code / "mymodels" / "__init__.py").write_text("")
    (code / "mymodels" / "net.py").write_text(MY_MODEL)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "my-model", "dataset": {"source": "image_folder", "path": str(folder)},
                                    "model": {"source": "import", "name": "mymodels.net:build", "kwargs": {"width": 6}},
                                    "activations": ["relu", {"name": "pwlu", "stats_steps": 2}], **TINY}))
    stack = _stack(tmp_path, ray_jobs, mlflow_server, data_root)  # user code off: the default
    try:
        token = stack.mint("researcher")
        refused = stack.cli("submit", str(spec), "--code", str(code), token=token)
        assert refused.returncode == 1 and "422" in refused.stderr and "ACTSTUDY_ALLOW_USER_CODE" in refused.stderr, refused.stderr
        refused = stack.cli("submit", str(spec), token=token)
        assert refused.returncode == 1 and "model.name" in refused.stderr and "ACTSTUDY_ALLOW_USER_CODE" in refused.stderr
        stack.stop()
        stack.env["ACTSTUDY_ALLOW_USER_CODE"] = "1"
        stack.start()
        checked = stack.cli("submit", str(spec), "--code", str(code), "--check", token=token)
        assert checked.returncode == 0, checked.stderr
        assert "dataset: samples (3, 12, 12), 3 classes, 48 training and 12 test samples" in checked.stdout, checked.stdout
        assert "held in memory" in checked.stdout and "valid: nothing submitted" in checked.stdout
        done = stack.cli("submit", str(spec), "--code", str(code), token=token)
        assert done.returncode == 0, done.stderr
        assert "code: " in done.stdout and "uploaded (2 files" in done.stdout
        study_id = yaml.safe_load(done.stdout[done.stdout.index("id:"):])["id"]
        study = stack.wait_for(study_id, auth(token), lambda s: s["status"] in ("succeeded", "failed"), 900, "ended")
        assert study["status"] == "succeeded", study["error"]
        _check_study_runs(mlflow_server.url, "my-model", study_id, {"relu", "pwlu(stats_steps=2)"}, 2)
    finally:
        stack.stop()


@pytest.mark.timeout(1200)
def test_a_plugin_model_and_dataset_shipped_with_run_code(tmp_path, ray_head, mlflow_server):
    site = tmp_path / "site"
    shutil.copytree(ROOT / "examples" / "model-plugin", tmp_path / "src")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(site), str(tmp_path / "src")], check=True, timeout=300)
    assert list(site.glob("actstudy_rings-*.dist-info/entry_points.txt"))  # real metadata, as pip writes it
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "rings", "dataset": {"source": "plugin", "name": "rings"},
                                    "model": {"source": "plugin", "name": "ringnet", "kwargs": {"width": 6}},
                                    "activations": ["relu", {"name": "lslu"}], **TINY}))
    log = tmp_path / "run.log"
    proc = start_study(spec, ray_address=ray_head.address, mlflow_uri=mlflow_server.url, study_id="rings-1",
                       data_dir=tmp_path / "data", log=log, extra=["--code", str(site)])
    wait_for(lambda: proc.poll() is not None, 900, "the study ended", log=log)
    assert proc.returncode == 0, tail(log)
    assert "model: " in log.read_text() and "3 of 3 activation calls swapped" in log.read_text()
    _check_study_runs(mlflow_server.url, "rings", "rings-1", {"relu", "lslu"}, 3)
