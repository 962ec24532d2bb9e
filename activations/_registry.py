"""The activation registry: snake_case name → class, with formula and source for listings.

Three kinds: the built-ins below; plugins, classes an installed package declares in the entry-point group
`actstudy.activations` (listed like the built-ins); and `formula`, an expression the user writes (not a
fixed activation, so not in `names()`: `create("formula", expr=..., params=...)`).
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
import typing
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Literal

from torch import nn

from activations._classic import Logish, PReLU, Smish
from activations._formula import Formula
from activations._lslu import LSLU
from activations._pwlu import PWLU
from activations._telu import TeLU

log = logging.getLogger(__name__)

PLUGIN_GROUP = "actstudy.activations"
FORMULA = "formula"

# Site hints a model passes to every activation; a class receives only those its constructor takes.
_SITE_KEYWORDS = ("num_features", "spatial_dims")


@dataclass(frozen=True)
class Entry:
    cls: type[nn.Module]
    formula: str
    source: str
    learnable: bool = False  # has parameters that train with the model
    choices: dict[str, tuple] = field(default_factory=dict)  # parameters that take one of a few values
    # (low, high) a study may set a parameter to, inclusive; unlisted numbers: DEFAULT_RANGES by type.
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)


# What a study may set a parameter to, unless its entry says otherwise: bounded, so that no submitted value
# builds a module of unbounded size (e.g. 2³⁰ PWLU segments) or overflows float32.
DEFAULT_RANGES: dict[type, tuple[float, float]] = {int: (0, 1_000_000), float: (-1e6, 1e6)}


_REGISTRY: dict[str, Entry] = {
    "relu": Entry(nn.ReLU, "max(0, x)", "Nair & Hinton 2010"),
    "leaky_relu": Entry(nn.LeakyReLU, "max(0, x) + a·min(0, x)", "Maas et al. 2013"),
    "prelu": Entry(PReLU, "max(0, x) + a·min(0, x), a learnable per channel", "He et al. 2015", True),
    "elu": Entry(nn.ELU, "x if x > 0 else α(eˣ − 1)", "Clevert et al. 2015"),
    "selu": Entry(nn.SELU, "λ·(x if x > 0 else α(eˣ − 1))", "Klambauer et al. 2017"),
    "celu": Entry(nn.CELU, "max(0, x) + min(0, α(e^(x/α) − 1))", "Barron 2017"),
    "silu": Entry(nn.SiLU, "x·σ(x)", "Elfwing et al. 2017; Ramachandran et al. 2017"),
    "gelu": Entry(nn.GELU, "x·Φ(x)", "Hendrycks & Gimpel 2016", choices={"approximate": ("none", "tanh")}),
    "mish": Entry(nn.Mish, "x·tanh(ln(1 + eˣ))", "Misra 2019"),
    "logish": Entry(Logish, "x·ln(1 + σ(x))", "Zhu et al. 2021"),
    "smish": Entry(Smish, "x·tanh(ln(1 + σ(x)))", "Wang et al. 2022"),
    "tanh": Entry(nn.Tanh, "tanh(x)", "classic"),
    "sigmoid": Entry(nn.Sigmoid, "1 / (1 + e^(−x))", "classic"),
    "softplus": Entry(nn.Softplus, "ln(1 + e^(βx)) / β", "Dugas et al. 2001"),
    "telu": Entry(TeLU, "x·tanh(eˣ)", "Fernandez & Mali 2024, arXiv 2412.20269"),
    "pwlu": Entry(PWLU, "learnable piecewise linear on [B_L, B_R] with N intervals, tails K_L, K_R", "Zhu et al. 2021, arXiv 2104.03693", True,
                  ranges={"segments": (2, 1024), "bound_k": (1e-3, 100), "momentum": (1e-6, 1), "init_bound": (1e-3, 1e3)}),
    "lslu": Entry(LSLU, "BN(k ∗ ReLU(θ_n·ReLU(…θ_1·ReLU(x)+ω_1…)+ω_n))", "Feng et al. 2024, arXiv 2409.08283", True,
                  ranges={"terms": (1, 16), "eps": (1e-12, 1)}),
}


FORMULA_ENTRY = Entry(Formula, "your expression in x (docs/activations.md)", "you", True)


class UnknownActivationError(ValueError):
    """An activation name that is not registered, or a parameter it does not take."""


@functools.cache
def _registry() -> dict[str, Entry]:
    """The built-ins, then the installed plugins (read once per process)."""
    return {**_REGISTRY, **_plugins()}


def _plugins() -> dict[str, Entry]:
    """Activation classes declared by installed packages: `[project.entry-points."actstudy.activations"]
    my_act = "my_package.module:MyAct"`. The class may say `formula = "..."` and `source = "..."` (else its
    docstring's first line and the package's name) and `learnable = True`. A plugin that does not load, or
    takes a built-in's name, is left out with a warning (one broken package must not stop the service)."""
    out: dict[str, Entry] = {}
    for ep in entry_points(group=PLUGIN_GROUP):
        where = f"activation plugin {ep.name!r} ({ep.value}, from {ep.dist.name if ep.dist else 'an unknown package'})"
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", ep.name) or ep.name in _REGISTRY or ep.name == FORMULA:
            log.warning("%s left out: its name must be snake_case and not a built-in's", where)
            continue
        try:
            cls = ep.load()
        except Exception as exc:  # noqa: BLE001 — any error importing someone else's package
            log.warning("%s left out: it does not load (%s: %s)", where, type(exc).__name__, exc)
            continue
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            log.warning("%s left out: it is not a torch.nn.Module class", where)
            continue
        out[ep.name] = _entry_of(cls, ep.value, f"plugin: {ep.dist.name if ep.dist else ep.value}")
    return out


def _entry_of(cls: type[nn.Module], where: str, source: str) -> Entry:
    """A user's class (a plugin's, an import path's) as an entry: its `formula`, `source` and `learnable` if it
    says them, else its docstring's first line (or `where`), `source`, and not learnable."""
    doc = (cls.__doc__ or "").strip().splitlines()
    return Entry(cls, str(getattr(cls, "formula", doc[0] if doc else where)), str(getattr(cls, "source", source)),
                 bool(getattr(cls, "learnable", False)))


def builtin_names() -> list[str]:
    """The built-in activations (no plugins)."""
    return list(_REGISTRY)


def names() -> list[str]:
    """The activations a study can name: the built-ins in registry order, then the installed plugins."""
    return list(_registry())


IMPORT_PATH = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*")


def is_import_path(name: object) -> bool:
    """`package.module:Class`: an activation class from the user's own code (allowed where the caller allows it)."""
    return isinstance(name, str) and IMPORT_PATH.fullmatch(name) is not None


@functools.cache
def _imported(path: str) -> Entry:
    import importlib

    module_name, _, attr = path.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UnknownActivationError(f"activation {path!r}: cannot import it ({type(exc).__name__}: {exc})") from None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise UnknownActivationError(f"activation {path!r} is not a torch.nn.Module class")
    return _entry_of(cls, path, f"your code: {path}")


def entry(name: str) -> Entry:
    if is_import_path(name):
        return _imported(name)
    key = name.lower() if isinstance(name, str) else name
    if key == FORMULA:
        return FORMULA_ENTRY
    registry = _registry()
    if key not in registry:
        raise UnknownActivationError(f"unknown activation {name!r}; valid names: {', '.join(registry)}, or {FORMULA} (your own expression)")
    return registry[key]


def parameters(name: str) -> dict[str, object]:
    """The tunable constructor parameters of an activation and their defaults (site hints excluded)."""
    sig = inspect.signature(entry(name).cls.__init__)
    return {
        p.name: (None if p.default is inspect.Parameter.empty else p.default)
        for p in list(sig.parameters.values())[1:]
        # *args too: a class without its own __init__ shows nn.Module's (*args, **kwargs), which are not parameters.
        if p.name not in _SITE_KEYWORDS and p.name != "inplace" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def parameter_types(name: str) -> dict[str, tuple[Any, object, tuple[float, float] | None]]:
    """Each tunable parameter's type, default and allowed range: the type from the constructor's annotations
    (or `Entry.choices`), the range from `Entry.ranges` (or DEFAULT_RANGES for its type; None if not a number)."""
    e = entry(name)
    try:
        hints = typing.get_type_hints(e.cls.__init__)
    except (NameError, TypeError):  # a plugin's annotation that does not resolve here: its parameters are untyped
        hints = {}
    out = {}
    for p, default in parameters(name).items():
        kind = Literal[e.choices[p]] if p in e.choices else hints.get(p, Any)
        out[p] = (kind, default, e.ranges.get(p, DEFAULT_RANGES.get(kind)))
    return out


def check_params(name: str, params: dict) -> None:
    """Raise UnknownActivationError naming any parameter the activation does not take."""
    valid = parameters(name)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        listed = ", ".join(valid) or "none"
        raise UnknownActivationError(f"activation {name!r} takes no parameter {', '.join(unknown)}; valid parameters: {listed}")


def create(name: str | type[nn.Module], *, num_features: int | None = None, spatial_dims: int | None = None, **params) -> nn.Module:
    """Build a new activation module; classes pass through, so any nn.Module class works as a name."""
    if isinstance(name, type) and issubclass(name, nn.Module):
        cls = name
    else:
        check_params(name, params)
        cls = entry(name).cls
    accepted = inspect.signature(cls.__init__).parameters
    site = {"num_features": num_features, "spatial_dims": spatial_dims}
    kwargs = {k: v for k, v in site.items() if k in accepted and v is not None}
    try:
        return cls(**kwargs, **params)
    except TypeError as exc:  # e.g. a string where a float belongs
        raise UnknownActivationError(f"activation {getattr(name, '__name__', name)!r}: bad parameter ({exc})") from exc


def reports_evolution(module: nn.Module) -> bool:
    """True for modules that report their shape as they train (`state_snapshot()`: PWLU, LSLU, formulas with
    learnable parameters), whose
    evolution a study records. Not the same as learnable (`Entry.learnable`: has trained parameters),
    which PReLU is too."""
    return callable(getattr(module, "state_snapshot", None)) and getattr(module, "evolves", True)  # a formula: when it learns
