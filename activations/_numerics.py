"""The numerical check of a formula before any trial: its value and its gradients (in x and in each learnable
parameter, at their initial values) must be finite wherever x is, over GRID in float32 and bfloat16.

A finding names the dtype, the quantity, the range of x (its ends refined by bisection) and a reason: the
innermost sub-expression whose value stops being finite there ("exp(x) overflows to inf"), or whose
derivative does ("the derivative of sqrt(x) is inf").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from activations._expr import Node
from activations._formula import Formula

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
_HINTS = {"tanh(exp(": "the built-in 'telu' computes x·tanh(eˣ) without overflow",
          "log(1 + exp(": "softplus(y) is ln(1 + eʸ) without overflow"}


def grid(dtype: torch.dtype) -> torch.Tensor:
    """−100…100 in steps of 0.05, 0 and the tiniest numbers, and ± powers of ten up to the dtype's largest."""
    info = torch.finfo(dtype)
    dense = torch.linspace(-100, 100, 4001, dtype=torch.float64)
    far = torch.logspace(2, float(torch.log10(torch.tensor(info.max, dtype=torch.float64))), 80, dtype=torch.float64)
    small = torch.tensor([info.tiny, info.smallest_normal * 1e-3, 1e-30, 1e-10, 1e-5], dtype=torch.float64)
    edge = torch.tensor([info.max], dtype=torch.float64)
    positive = torch.cat([small, far, edge])
    x = torch.cat([dense, positive, -positive, torch.zeros(1, dtype=torch.float64)]).to(dtype)
    x = torch.unique(x[torch.isfinite(x)])  # sorted; bfloat16 merges neighbours
    return x


@dataclass(frozen=True)
class Finding:
    dtype: str
    quantity: str  # "the output", "the gradient", "the gradient in beta"
    kind: str  # "NaN", "inf" or "NaN/inf"
    where: str  # "x ≥ 88.72"
    reason: str

    def __str__(self) -> str:
        return f"{self.quantity} is {self.kind} for {self.where} in {self.dtype}" + (f": {self.reason}" if self.reason else "")

    def to_dict(self) -> dict:
        return {**asdict(self), "message": str(self)}


@dataclass(frozen=True)
class NumericsReport:
    findings: tuple[Finding, ...]
    hint: str | None

    @property
    def ok(self) -> bool:
        return not self.findings

    def message(self, limit: int = 4) -> str:
        """The findings, those with the same quantity and reason in one phrase across dtypes; at most `limit`."""
        groups: dict[tuple[str, str], list[Finding]] = {}
        for f in self.findings:
            groups.setdefault((f.quantity, f.reason), []).append(f)
        phrases = [f"{quantity} is " + ", ".join(f"{f.kind} for {f.where} in {f.dtype}" for f in fs) + (f": {reason}" if reason else "")
                   for (quantity, reason), fs in groups.items()]
        more = f"; and {len(phrases) - limit} more" if len(phrases) > limit else ""
        text = "; ".join(phrases[:limit]) + more
        return text + (f" ({self.hint})" if self.hint else "") + " — rewrite it so that every intermediate value stays finite (docs/activations.md)"


def check_formula(module: Formula) -> NumericsReport:
    findings: list[Finding] = []
    for name, dtype in DTYPES.items():
        findings += _check(module, name, dtype)
    hint = next((h for pattern, h in _HINTS.items() if pattern in module.parsed.text.replace(" ", "")), None)
    return NumericsReport(tuple(findings), hint if findings else None)


def _evaluate(module: Formula, x: torch.Tensor, trace: list | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """y(x) with x and each learnable parameter as leaves of x's shape (so each point has its own gradient)."""
    env: dict[str, torch.Tensor | float] = {"x": x}
    leaves = {"x": x}
    for name, spec in module.specs.items():
        value = torch.full_like(x, spec.init)
        if spec.learnable:
            value.requires_grad_(True)
            leaves[name] = value
        env[name] = value.clamp(spec.low, spec.high) if spec.low is not None or spec.high is not None else value
    y = module.parsed.root.evaluate(env, trace)
    y = y if isinstance(y, torch.Tensor) else torch.full_like(x, y)
    return y, leaves


def _check(module: Formula, dtype_name: str, dtype: torch.dtype) -> list[Finding]:
    x = grid(dtype).requires_grad_(True)
    with torch.enable_grad():
        y, leaves = _evaluate(module, x)
        grads = torch.autograd.grad(y.sum(), list(leaves.values()), allow_unused=True, materialize_grads=True)
    quantities = {"the output": y.detach()}
    for name, g in zip(leaves, grads, strict=True):
        quantities["the gradient" if name == "x" else f"the gradient in {name}"] = g
    out = []
    for quantity, values in quantities.items():
        bad = ~torch.isfinite(values)
        for lo, hi in _runs(bad):
            points = values[lo : hi + 1]
            kind = "NaN" if torch.isnan(points).all() else "inf" if torch.isinf(points).all() else "NaN/inf"
            where = _describe(module, x.detach(), lo, hi, quantity, dtype)
            out.append(Finding(dtype_name, quantity, kind, where, _reason(module, x.detach()[lo], dtype)))
    return out


def _runs(bad: torch.Tensor) -> list[tuple[int, int]]:
    idx = torch.nonzero(bad).flatten().tolist()
    runs: list[tuple[int, int]] = []
    for i in idx:
        if runs and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def _is_bad(module: Formula, point: float, quantity: str, dtype: torch.dtype) -> bool:
    x = torch.tensor([point], dtype=dtype, requires_grad=True)
    with torch.enable_grad():
        y, leaves = _evaluate(module, x)
        if quantity == "the output":
            value = y
        else:
            leaf = "x" if quantity == "the gradient" else quantity.removeprefix("the gradient in ")
            value = torch.autograd.grad(y.sum(), [leaves[leaf]], allow_unused=True, materialize_grads=True)[0]
    return not bool(torch.isfinite(value).all())


def _boundary(module: Formula, good: float, bad: float, quantity: str, dtype: torch.dtype) -> float:
    """The first bad x between a good and a bad grid point (bisection in float64, evaluated in `dtype`)."""
    for _ in range(60):
        mid = (good + bad) / 2
        if float(torch.tensor(mid, dtype=dtype)) in (float(torch.tensor(good, dtype=dtype)), float(torch.tensor(bad, dtype=dtype))):
            break
        if _is_bad(module, mid, quantity, dtype):
            bad = mid
        else:
            good = mid
    return float(torch.tensor(bad, dtype=dtype))


def _describe(module: Formula, x: torch.Tensor, lo: int, hi: int, quantity: str, dtype: torch.dtype) -> str:
    last = len(x) - 1
    start = float(x[lo]) if lo == 0 else _boundary(module, float(x[lo - 1]), float(x[lo]), quantity, dtype)
    end = float(x[hi]) if hi == last else _boundary(module, float(x[hi + 1]), float(x[hi]), quantity, dtype)
    if lo == 0 and hi == last:
        return "every x"
    if lo == 0:
        return f"x ≤ {end:.4g}"
    if hi == last:
        return f"x ≥ {start:.4g}"
    return f"x = {start:.4g}" if start == end else f"{start:.4g} ≤ x ≤ {end:.4g}"


def _reason(module: Formula, point: torch.Tensor, dtype: torch.dtype) -> str:
    """Why at `point`: the innermost node whose value is not finite while its operands are, else the innermost
    node whose own derivative is not (its incoming gradient finite, an operand's not)."""
    x = point.detach().reshape(1).to(dtype).requires_grad_(True)
    trace: list[tuple[Node, torch.Tensor | float]] = []
    with torch.enable_grad():
        y, _ = _evaluate(module, x, trace)
        tensors = [v for _, v in trace if isinstance(v, torch.Tensor) and v.requires_grad]
        for v in tensors:
            if not v.is_leaf:
                v.retain_grad()
        if y.requires_grad:
            y.sum().backward()
    values = {id(node): v for node, v in trace}

    def finite(v) -> bool:
        return bool(torch.isfinite(torch.as_tensor(v)).all())

    for node, value in trace:  # operands come before the node that uses them
        if not finite(value) and all(finite(values[id(k)]) for k in node.kids):
            overflow = torch.isinf(torch.as_tensor(value)).any()
            return f"{node.text} {'overflows to inf' if overflow else 'is NaN'}"
    for node, value in reversed(trace):  # from the output down: where a finite gradient stops being finite
        grad = value.grad if isinstance(value, torch.Tensor) and value.requires_grad else None
        if grad is None or not finite(grad):
            continue
        for k in node.kids:
            kv = values[id(k)]
            if isinstance(kv, torch.Tensor) and kv.grad is not None and not finite(kv.grad):
                return f"the derivative of {node.text} is not finite there"
    return ""
