"""Activations from the user's own code: the example plugin (examples/activation-plugin) installed with pip, so
the registry reads it from real entry-point metadata; a broken plugin left out with a warning; import paths
(`package.module:Class`) for `actstudy run`, and a service that refuses them unless its administrator allowed them.

Each check runs in a subprocess with the install on PYTHONPATH: this test process's registry stays as it is.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "examples" / "activation-plugin"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The example plugin pip-installed into a folder of its own (a copy is built: the example stays clean)."""
    tmp = tmp_path_factory.mktemp("plugin")
    shutil.copytree(PLUGIN, tmp / "src")
    target = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(target), str(tmp / "src")], check=True, timeout=300)
    return target


def python(code: str, *paths: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *map(str, paths)]), **env}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=environ, timeout=120, cwd=ROOT)


def test_the_installed_plugin_is_in_the_registry_like_a_builtin(site):
    assert list(site.glob("actstudy_serf-*.dist-info/entry_points.txt"))  # real metadata, as pip writes it
    done = python("""
        import json, torch, activations
        from studies.spec import StudySpec, parse_spec, SpecError
        e = activations.entry("serf")
        x = torch.linspace(-3, 3, 7, dtype=torch.float64)
        m = activations.create("serf", num_features=4, beta=2.0).double()
        ok = torch.allclose(m(x), x * torch.erf(torch.nn.functional.softplus(x, beta=2.0)))
        spec = parse_spec({"activations": ["relu", "serf", {"name": "serf", "beta": 2.0}]})
        try:
            parse_spec({"activations": [{"name": "serf", "beta": -1.0}]})
            refused = None
        except SpecError as exc:
            refused = str(exc)
        variants = [v.get("title") for v in StudySpec.model_json_schema()["$defs"]["ActivationSpec"]["oneOf"]]
        print(json.dumps({"names": activations.names(), "builtin": activations.builtin_names(), "formula": e.formula,
                          "source": e.source, "ok": ok, "labels": spec.labels, "refused": refused, "schema": variants}))
    """, site)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert "serf" in out["names"] and "serf" not in out["builtin"] and out["names"][-1] == "serf"
    assert out["formula"] == "x·erf(ln(1 + eˣ))" and "actstudy-serf" in out["source"] and out["ok"]
    assert out["labels"] == ["relu", "serf", "serf(beta=2.0)"]
    assert "beta must be > 0" in out["refused"] and "serf" in out["schema"]


def test_the_plugin_is_listed_by_the_cli_and_the_api(site):
    listing = subprocess.run([str(Path(sys.executable).with_name("actstudy")), "activations"], capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(site), "COLUMNS": "200"}, timeout=120)
    assert listing.returncode == 0 and "serf" in listing.stdout and "x·erf(ln(1 + eˣ))" in listing.stdout
    done = python("""
        import json
        from fastapi.testclient import TestClient
        from service.main import create_app
        from service.settings import Settings
        app = create_app(Settings(database_url="sqlite://", reconcile_interval_s=0))
        print(json.dumps(TestClient(app).get("/api/v1/activations").json()))
    """, site)
    assert done.returncode == 0, done.stderr
    by_name = {a["name"]: a for a in json.loads(done.stdout.strip().splitlines()[-1])}
    assert by_name["serf"]["kind"] == "plugin" and by_name["serf"]["parameters"] == {"beta": 1.0}
    assert by_name["relu"]["kind"] == "builtin"


def test_a_broken_plugin_is_left_out_with_a_warning(tmp_path):
    dist = tmp_path / "broken_acts-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-acts\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[actstudy.activations]\nbroken = broken_acts:Missing\nrelu = broken_acts:Relu\n")
    (tmp_path / "broken_acts.py").write_text("import torch\nclass Relu(torch.nn.ReLU):\n    pass\n")
    done = python("import activations; print(activations.names()[-1])", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "lslu"  # neither was added
    assert "activation plugin 'broken'" in done.stderr and "does not load" in done.stderr
    assert "activation plugin 'relu'" in done.stderr and "not a built-in's" in done.stderr


USER_MODULE = '''
import torch

class Square(torch.nn.Module):
    """x·|x| clipped: a user's own activation"""
    formula = "clamp(x·|x|, -4, 4)"

    def forward(self, x):
        return (x * x.abs()).clamp(-4, 4)
'''


def test_import_paths_only_where_user_code_is_allowed(tmp_path):
    (tmp_path / "my_acts.py").write_text(USER_MODULE)
    done = python("""
        import json
        from studies.spec import parse_spec, allow_user_code, SpecError
        out = {}
        try:
            parse_spec({"activations": ["relu", "my_acts:Square"]})
        except SpecError as exc:
            out["refused"] = str(exc)
        allow_user_code(True)
        out["labels"] = parse_spec({"activations": ["relu", "my_acts:Square"]}).labels
        try:
            parse_spec({"activations": ["my_acts:Nothing"]})
        except SpecError as exc:
            out["missing"] = str(exc)
        print(json.dumps(out))
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert "'my_acts:Square' is an import path" in out["refused"] and "ACTSTUDY_ALLOW_USER_CODE" in out["refused"]
    assert out["labels"] == ["relu", "my_acts:Square"]
    assert "cannot import it" in out["missing"]


@pytest.mark.parametrize("allowed", [False, True])
def test_the_service_takes_import_paths_only_when_its_administrator_allowed_them(tmp_path, allowed):
    (tmp_path / "my_acts.py").write_text(USER_MODULE)
    done = python("""
        import json
        from fastapi.testclient import TestClient
        from service.main import create_app
        from service.settings import Settings
        app = create_app(Settings(database_url="sqlite:///%s", reconcile_interval_s=0, admin_token="admin-x"))
        with TestClient(app) as client:
            r = client.post("/api/v1/studies", json={"activations": ["relu", "my_acts:Square"]}, headers={"Authorization": "Bearer admin-x"})
        print(json.dumps({"status": r.status_code, "body": r.json()}))
    """ % (tmp_path / "r.db"), tmp_path, ACTSTUDY_ALLOW_USER_CODE="1" if allowed else "0")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    if allowed:  # validated and stored; no Ray cluster is configured here, so it is not started
        assert out["status"] == 503 and "stored but not started" in out["body"]["detail"], out
    else:
        assert out["status"] == 422
        (error,) = out["body"]["detail"]
        assert error["loc"] == ["body", "activations", 1] and "ACTSTUDY_ALLOW_USER_CODE=1" in error["msg"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_local_study_runs_the_plugin_and_an_import_path(site, tmp_path, mlflow_server):
    """`actstudy run` on a local Ray it starts: the plugin and the user's class reach every trial (the workers
    inherit the environment), and both are ranked beside relu."""
    (tmp_path / "my_acts.py").write_text(USER_MODULE)
    spec = tmp_path / "mine.yaml"
    spec.write_text(json.dumps({"name": "mine", "activations": ["relu", "serf", "my_acts:Square"],
                                "model": {"name": "mlp", "hidden": [16, 16]}, "search": {"trials_per_activation": 1, "pruner": "none"},
                                "training": {"epochs": 1}, "confirm": {"seeds": 1}, "resources": {"cpus_per_trial": 1}}))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "ACTSTUDY_RAY_ADDRESS")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(site), str(tmp_path)])
    done = subprocess.run([str(Path(sys.executable).with_name("actstudy")), "run", str(spec), "--mlflow-uri", mlflow_server.url,
                           "--data-dir", str(tmp_path / "data")], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=540)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server.url)
    (exp,) = [e for e in client.search_experiments() if e.name.startswith("mine-")]
    runs = client.search_runs([exp.experiment_id], "tags.`actstudy.role` = 'activation'")
    assert {r.data.tags["activation"] for r in runs} == {"relu", "serf", "my_acts:Square"}
    assert all(r.info.status == "FINISHED" and "test_acc_mean" in r.data.metrics for r in runs)


def test_a_plugin_with_parameter_types_a_spec_cannot_hold_is_refused_and_the_schema_still_builds(tmp_path):
    dist = tmp_path / "odd_acts-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: odd-acts\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[actstudy.activations]\nodd = odd_acts:Odd\nneeds = odd_acts:Needs\nloose = odd_acts:Loose\n")
    (tmp_path / "odd_acts.py").write_text(textwrap.dedent('''
        import torch

        class Odd(torch.nn.Module):
            def __init__(self, scale: torch.Tensor = None):
                super().__init__()

            def forward(self, x):
                return x

        class Loose(torch.nn.Module):
            def __init__(self, other: "Undefined" = 1.0):  # does not resolve here: taken untyped
                super().__init__()

            def forward(self, x):
                return x

        class Needs(torch.nn.Module):
            """A plugin that needs an argument."""
            def __init__(self, k: float):
                super().__init__()
                self.k = k

            def forward(self, x):
                return self.k * x
    '''))
    done = python("""
        import json
        from studies.spec import StudySpec, parse_spec, SpecError
        from studies.report import plot_activations
        variants = [v.get("title") for v in StudySpec.model_json_schema()["$defs"]["ActivationSpec"]["oneOf"]]
        refused = None
        try:
            parse_spec({"activations": ["odd"]})
        except SpecError as exc:
            refused = str(exc)
        assert parse_spec({"activations": [{"name": "loose", "other": 2.0}]}).labels == ["loose(other=2.0)"]
        plot_activations("%s")
        print(json.dumps({"schema": variants, "refused": refused}))
    """ % (tmp_path / "all.png"), tmp_path)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert "odd" not in out["schema"] and {"needs", "loose", "relu"} <= set(out["schema"])
    assert "activation 'odd' cannot be used in a study" in out["refused"]
    assert "activation 'needs' left out of the figure" in done.stderr and (tmp_path / "all.png").exists()
