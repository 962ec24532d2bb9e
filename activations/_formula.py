"""Formula activations: `Formula("x * sigmoid(beta * x)", params={"beta": {"init": 1.0, "learnable": True}})`.

A parameter is a number (a constant) or {init, learnable, per_channel, low, high}: learnable ones train with
the model, per channel ones hold one value per channel of the input (dim 1: NCHW, (N, C), (N, C, L)), and
`low`/`high` clamp the value the formula sees.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from activations._expr import (
    BINARY_FUNCTIONS,
    COMPARISONS,
    FUNCTIONS,
    MAX_CHARS,
    MAX_CONSTANT,
    MAX_DEPTH,
    MAX_NODES,
    MAX_POWER,
    FormulaError,
    Parsed,
    parse,
)

MAX_PARAMS = 8
MAX_LABEL = 64
_PARAM_KEYS = {"init", "learnable", "per_channel", "low", "high"}


@dataclass(frozen=True)
class ParamSpec:
    init: float
    learnable: bool = False
    per_channel: bool = False
    low: float | None = None
    high: float | None = None

    def bounded(self, value: torch.Tensor) -> torch.Tensor:
        """The value the formula sees: clamped to [low, high] where bounds are given."""
        return value if self.low is None and self.high is None else value.clamp(self.low, self.high)


def param_specs(params: object) -> dict[str, ParamSpec]:
    """The declared parameters, checked; FormulaError naming the parameter and the problem."""
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise FormulaError(f"params: expected a mapping of name to number or {{init, learnable, ...}}, got {type(params).__name__}")
    if len(params) > MAX_PARAMS:
        raise FormulaError(f"params: {len(params)} parameters, the limit is {MAX_PARAMS}")
    out = {}
    for name, value in params.items():
        where = f"params.{name}"
        if not isinstance(name, str) or not name.isidentifier() or not name.isascii() or len(name) > 32:
            raise FormulaError(f"params: {name!r} is not a parameter name (letters, digits and _, at most 32)")
        if name == "x" or name in FUNCTIONS or name in BINARY_FUNCTIONS or name == "where":
            raise FormulaError(f"{where}: '{name}' is taken (the variable or a function)")
        if name.startswith("_") or hasattr(nn.ParameterDict, name):  # `forward`, `to`, `cuda`: the module's own names
            raise FormulaError(f"{where}: '{name}' is reserved (a name of torch modules); choose another")
        if _is_number(value):
            out[name] = ParamSpec(_finite(where, value))
            continue
        if not isinstance(value, dict) or "init" not in value:
            raise FormulaError(f"{where}: expected a number or {{init: number, learnable, per_channel, low, high}}")
        unknown = sorted(map(str, set(value) - _PARAM_KEYS))
        if unknown:
            raise FormulaError(f"{where}: unknown key {', '.join(map(str, unknown))}; valid: {', '.join(sorted(_PARAM_KEYS))}")
        for flag in ("learnable", "per_channel"):
            if not isinstance(value.get(flag, False), bool):
                raise FormulaError(f"{where}.{flag}: expected true or false")
        spec = ParamSpec(_finite(f"{where}.init", value["init"]), value.get("learnable", False), value.get("per_channel", False),
                         *(None if value.get(k) is None else _finite(f"{where}.{k}", value[k]) for k in ("low", "high")))
        if spec.low is not None and spec.high is not None and not spec.low < spec.high:
            raise FormulaError(f"{where}: low must be < high, got low={spec.low:g} high={spec.high:g}")
        if not (spec.low is None or spec.low <= spec.init) or not (spec.high is None or spec.init <= spec.high):
            raise FormulaError(f"{where}.init: {spec.init:g} is outside [low, high]")
        out[name] = spec
    return out


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _finite(where: str, value: object) -> float:
    if not _is_number(value) or abs(value) > MAX_CONSTANT or not math.isfinite(value):  # a huge int: compared, not converted
        raise FormulaError(f"{where}: expected a finite number with |v| ≤ {MAX_CONSTANT:g}, got {value!r}")
    return float(value)


def formula_label(expr: str, params: dict | None = None, label: str | None = None) -> str:
    """A formula's name in a study: its `label`, else its canonical expression (long ones cut, with a hash)."""
    if label is not None:
        if not isinstance(label, str) or not label.strip() or len(label) > MAX_LABEL or not label.isprintable():
            raise FormulaError(f"label: expected 1 to {MAX_LABEL} printable characters, got {label!r}")
        return label.strip()
    text = parse(expr, frozenset(param_specs(params))).text
    if len(text) <= MAX_LABEL:
        return text
    return f"{text[: MAX_LABEL - 10]}…{zlib.crc32(text.encode()):08x}"


def language() -> dict[str, Any]:
    """The formula language and its limits, as GET /api/v1/activations documents it."""
    return {
        "variable": "x",
        "operators": ["+", "-", "*", "/", f"** (a number exponent in [-{MAX_POWER}, {MAX_POWER}])", "unary -"],
        "functions": {f"{name}(a)": words for name, (_, words) in FUNCTIONS.items()}
        | {"min(a, b)": "the smaller, elementwise", "max(a, b)": "the larger, elementwise",
           "where(a < b, c, d)": f"c where the comparison holds, else d; comparisons: {', '.join(op for op, _ in COMPARISONS.values())}"},
        "numbers": f"integer or decimal literals, |c| ≤ {MAX_CONSTANT:g}",
        "params": "name -> a number (a constant), or {init, learnable (false), per_channel (false), low, high}: learnable ones train "
                  "with the model; per channel ones hold one value per channel (dim 1 of the input); low/high clamp the value used",
        "limits": {"characters": MAX_CHARS, "syntax_nodes": MAX_NODES, "nesting": MAX_DEPTH, "params": MAX_PARAMS, "label": MAX_LABEL},
        "refused": "anything else: attributes, subscripts, other calls, undeclared names, strings, lambdas, comprehensions",
        "check": "before any trial, the value and every gradient must be finite wherever x is, over x in [-100, 100] and up to "
                 "the largest finite float32 and bfloat16, at the parameters' initial values",
        "example": {"name": "formula", "expr": "x * sigmoid(beta * x)", "params": {"beta": {"init": 1.0, "learnable": True, "per_channel": True}}},
    }


class Formula(nn.Module):
    """An activation written as a formula in `x` (see activations._expr for the language)."""

    def __init__(self, expr: str | None = None, params: dict[str, Any] | None = None, label: str | None = None,
                 num_features: int | None = None) -> None:
        super().__init__()
        if expr is None:
            raise FormulaError("expr: a formula needs an expression in x, e.g. 'x * sigmoid(x)'")
        specs = param_specs(params)
        try:
            self.parsed: Parsed = parse(expr, frozenset(specs))
        except FormulaError as exc:
            raise FormulaError(f"expr: {exc}") from None
        unused = sorted(set(specs) - self.parsed.names)
        if unused:
            raise FormulaError(f"params: {', '.join(unused)} declared but not used in the formula")
        self.label = formula_label(expr, params, label)
        self.specs = specs
        self.num_features = num_features
        self.constants: dict[str, float] = {}
        self.learned = nn.ParameterDict()
        for name, spec in specs.items():
            if spec.per_channel and not num_features:
                raise FormulaError(f"params.{name}: per channel needs the input's channel count (num_features)")
            if spec.per_channel:
                value = torch.full((num_features,), spec.init)
                if spec.learnable:
                    self.learned[name] = nn.Parameter(value)
                else:
                    self.register_buffer(f"const_{name}", value)
            elif spec.learnable:
                self.learned[name] = nn.Parameter(torch.tensor(spec.init))
            else:
                self.constants[name] = spec.init

    def extra_repr(self) -> str:
        return repr(self.parsed.text)

    def __getstate__(self) -> dict:
        """Picklable (torch.save(model), multiprocessing): the evaluator's closures are rebuilt from the text."""
        state = self.__dict__.copy()
        state["parsed"] = self.parsed.text
        return state

    def __setstate__(self, state: dict) -> None:
        state["parsed"] = parse(state["parsed"], frozenset(state["specs"]))
        super().__setstate__(state)

    @property
    def evolves(self) -> bool:
        """Has learnable parameters, whose values a study records per epoch."""
        return len(self.learned) > 0

    def values(self, x: torch.Tensor) -> dict[str, torch.Tensor | float]:
        """Each parameter as the formula sees it for input `x`: clamped, per channel values shaped to dim 1."""
        out: dict[str, torch.Tensor | float] = dict(self.constants)
        for name, spec in self.specs.items():
            if name in self.constants:
                continue
            value = self.learned[name] if spec.learnable else getattr(self, f"const_{name}")
            value = spec.bounded(value)
            if spec.per_channel:
                if x.dim() < 2 or x.shape[1] != self.num_features:
                    raise ValueError(f"formula {self.label!r}: parameter {name!r} is per channel ({self.num_features}); "
                                     f"expected the channels in dim 1, got shape {tuple(x.shape)}")
                value = value.view(-1, *([1] * (x.dim() - 2)))
            out[name] = value.to(x.dtype) if value.dtype != x.dtype else value
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.parsed.root.evaluate({"x": x, **self.values(x)})
        return y if isinstance(y, torch.Tensor) and y.shape == x.shape else torch.as_tensor(y, dtype=x.dtype).expand_as(x)

    def state_snapshot(self) -> dict:
        """The formula, its learnable parameters' current values as the formula sees them (lists where per
        channel) and its constants: plain JSON, enough to draw the curve again."""
        params = {}
        for name, p in self.learned.items():
            params[name] = self.specs[name].bounded(p.detach()).float().cpu().tolist()
        constants = {name: spec.init for name, spec in self.specs.items() if not spec.learnable}
        return {"formula": self.parsed.text, "params": params, "constants": constants}


def curve_at(snapshot: dict, x: torch.Tensor) -> torch.Tensor:
    """A snapshot's formula at `x`, each per channel parameter at its channel mean. Whatever values training
    reached (huge, NaN) are drawn as they are: the values are not checked again, only the formula."""
    values = {k: (sum(v) / len(v) if isinstance(v, list) else v) for k, v in snapshot["params"].items()}
    env = {**snapshot.get("constants", {}), **values}
    with torch.no_grad():
        y = parse(snapshot["formula"], frozenset(env)).root.evaluate({"x": x, **{k: float(v) for k, v in env.items()}})
    return y if isinstance(y, torch.Tensor) else torch.full_like(x, y)
