"""The tree shows the architecture, and keeps showing it: layers import downward only, the rooms of `studies/`
form no cycle, each package names its public surface, the MLflow layout is spelled in one module, a trial
process imports only what it needs, and importing changes no global state."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["activations", "workers", "studies", "service"]  # each may import only those before it
PACKAGES = sorted(str(p.parent.relative_to(ROOT)).replace("/", ".") for layer in LAYERS for p in (ROOT / layer).rglob("__init__.py")
                  if "migrations" not in p.parts)


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Project modules a file imports (at any depth: the lazy ones count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {m for m in found if m.split(".")[0] in LAYERS}


SOURCES = {_module(p): _imports(p) for layer in LAYERS for p in (ROOT / layer).rglob("*.py") if "migrations" not in p.parts}


def test_layers_import_downward_only():
    wrong = [(module, target) for module, targets in SOURCES.items() for target in targets
             if LAYERS.index(target.split(".")[0]) > LAYERS.index(module.split(".")[0])]
    assert not wrong


def _room(module: str) -> str | None:
    """The room of `studies/` a module belongs to: its subpackage, or the top-level module itself."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "studies" and len(parts) > 1 else None


def test_the_rooms_of_studies_form_no_cycle():
    graph: dict[str, set[str]] = {}
    for module, targets in SOURCES.items():
        if (room := _room(module)) is not None:
            graph.setdefault(room, set()).update(t for t in map(_room, targets) if t and t != room)
    order, state = [], {}

    def visit(room: str, path: list[str]) -> None:
        if state.get(room) == "done":
            return
        assert state.get(room) != "open", f"import cycle: {' → '.join(path + [room])}"
        state[room] = "open"
        for target in sorted(graph.get(room, ())):
            visit(target, path + [room])
        state[room] = "done"
        order.append(room)

    for room in sorted(graph):
        visit(room, [])
    assert "studies.spec" in order and order.index("studies.spec") < order.index("studies.runner")


def test_other_packages_and_the_tests_import_studies_rooms_from_their_init():
    """A private module (`_name`) of a room is reached from inside that room only."""
    outside = {**SOURCES, **{_module(p): _imports(p) for p in (ROOT / "tests").rglob("*.py")}}
    private = [(module, target) for module, targets in outside.items() for target in targets
               if target.startswith("studies.") and any(part.startswith("_") and part != "__init__" for part in target.split("."))
               and _room(target) != _room(module)]
    assert not private


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_names_its_public_surface(package):
    module = importlib.import_module(package)
    assert module.__doc__, f"{package} says what it holds"
    names = getattr(module, "__all__", None)
    assert names, f"{package}.__all__ names its public surface"
    # A name is an attribute, or a submodule (a package whose surface is its modules, loaded on use).
    missing = [name for name in names if getattr(module, name, None) is None and importlib.util.find_spec(f"{package}.{name}") is None]
    assert not missing


def test_the_mlflow_layout_is_spelled_in_one_module():
    from studies.mlflow import layout

    tags = [v for k, v in vars(layout).items() if k.isupper() and isinstance(v, str) and v.startswith(("actstudy.", "mlflow."))]
    assert "actstudy.kind" in tags and "actstudy.trial_key" in tags and len(tags) >= 15
    spelled = [(str(p.relative_to(ROOT)), tag) for layer in ("studies", "service") for p in (ROOT / layer).rglob("*.py")
               if p.name != "layout.py" for tag in tags if f'"{tag}"' in p.read_text() or f"'{tag}'" in p.read_text()]
    assert not spelled


def _fresh(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120).stdout


def test_a_trial_process_imports_neither_optuna_nor_scipy_nor_matplotlib():
    """Tune's actors import the trainable's module for every trial process: the study layer's heavy parts stay out."""
    out = _fresh("import sys, studies.trainable; print(sorted(m for m in ('optuna', 'scipy.stats', 'matplotlib', 'studies.report', "
                 "'studies.search') if m in sys.modules))")
    assert out.strip() == "[]"


def test_importing_the_study_layer_changes_no_global_state():
    """Ours, that is: what a driver sets while a study runs (DRIVER_ENV, DRIVER_LOG_LEVELS, Optuna's verbosity) is
    untouched by imports (Ray and MLflow set variables of their own when imported: not ours to judge)."""
    from studies.execution import DRIVER_ENV, DRIVER_LOG_LEVELS

    out = _fresh(f"import logging, os, optuna; state = lambda: (optuna.logging.get_verbosity(), "
                 f"{{k: os.environ.get(k) for k in {sorted(DRIVER_ENV)!r}}}, "
                 f"{{n: logging.getLogger(n).level for n in {sorted(DRIVER_LOG_LEVELS)!r}}}); before = state(); "
                 "import studies.runner, studies.cli, service.main; "
                 "print(before == state(), 'matplotlib.pyplot' in __import__('sys').modules)")
    assert out.split() == ["True", "False"]
