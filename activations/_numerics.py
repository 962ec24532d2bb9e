"""The numerical check of a formula before any trial: its value and its gradients (in x and in each learnable
parameter, at their initial values) must be finite wherever x is, over `grid` in float32 and bfloat16.

A finding names the dtype, the quantity, the range of x (its ends refined by bisection) and a reason: the
innermost sub-expression whose value stops being finite there ("exp(x) overflows to inf"), or whose
derivative does. NaN anywhere, or ±inf within |x| ≤ STRICT_WITHIN, refuses the formula; ±inf only beyond it
(a formula that grows faster than x, such as 2·x at 1.7·10³⁸) is a note: no trained network feeds it such
inputs, and a trial that diverges there is recorded as diverged. The work is bounded whatever the formula:
at most MAX_STRETCHES stretches described per quantity, at most BISECTIONS evaluations refining them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from activations._expr import Node, constants
from activations._formula import Formula

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
STRICT_WITHIN = 1e4
MAX_STRETCHES = 3
BISECTIONS = 400
_HINTS = {"tanh(exp(": "the built-in 'telu' computes x·tanh(eˣ) without overflow",
          "log(1+exp(": "softplus(y) is ln(1 + eʸ) without overflow"}


def grid(dtype: torch.dtype, near: tuple[float, ...] = ()) -> torch.Tensor:
    """−100…100 in steps of 0.05, 0, the tiniest numbers, ± powers of ten up to the dtype's largest, and each
    of `near` (the formula's numbers and parameters' initial values), negated, and their neighbours in dtype."""
    info = torch.finfo(dtype)
    dense = torch.linspace(-100, 100, 4001, dtype=torch.float64)
    far = torch.logspace(2, float(torch.log10(torch.tensor(info.max, dtype=torch.float64))), 80, dtype=torch.float64)
    small = torch.tensor([info.tiny, info.smallest_normal * 1e-3, 1e-30, 1e-10, 1e-5], dtype=torch.float64)
    positive = torch.cat([small, far, torch.tensor([info.max], dtype=torch.float64)])
    points = torch.tensor(sorted({c for v in near for c in (v, -v)}), dtype=torch.float64).to(dtype)
    neighbours = torch.cat([points, torch.nextafter(points, torch.full_like(points, float("inf"))),
                            torch.nextafter(points, torch.full_like(points, -float("inf")))]).double() if len(points) else points.double()
    x = torch.cat([dense, positive, -positive, torch.zeros(1, dtype=torch.float64), neighbours]).to(dtype)
    return torch.unique(x[torch.isfinite(x)])  # sorted; bfloat16 merges neighbours


@dataclass(frozen=True)
class Finding:
    dtype: str
    quantity: str  # "the output", "the gradient", "the gradient in beta"
    kind: str  # "NaN", "inf" or "NaN/inf"
    where: str  # "x ≥ 88.72"
    reason: str
    severity: str = "error"  # "error" refuses the formula; "note": ±inf only where |x| > STRICT_WITHIN

    def __str__(self) -> str:
        return f"{self.quantity} is {self.kind} for {self.where} in {self.dtype}" + (f": {self.reason}" if self.reason else "")

    def to_dict(self) -> dict:
        return {**asdict(self), "message": str(self)}


@dataclass(frozen=True)
class NumericsReport:
    findings: tuple[Finding, ...]
    hint: str | None
    errors: tuple[Finding, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "errors", tuple(f for f in self.findings if f.severity == "error"))

    @property
    def ok(self) -> bool:
        return not self.errors

    def message(self, limit: int = 4) -> str:
        """The errors, those with the same quantity and reason in one phrase across dtypes; at most `limit`."""
        groups: dict[tuple[str, str], list[Finding]] = {}
        for f in self.errors:
            groups.setdefault((f.quantity, f.reason), []).append(f)
        phrases = [f"{quantity} is " + ", ".join(f"{f.kind} for {f.where} in {f.dtype}" for f in fs) + (f": {reason}" if reason else "")
                   for (quantity, reason), fs in groups.items()]
        more = f"; and {len(phrases) - limit} more" if len(phrases) > limit else ""
        text = "; ".join(phrases[:limit]) + more
        return text + (f" ({self.hint})" if self.hint else "") + " — rewrite it so that every intermediate value stays finite (docs/activations.md)"


def check_formula(module: Formula) -> NumericsReport:
    near = tuple(constants(module.parsed.root) | {spec.init for spec in module.specs.values()})
    budget = [BISECTIONS]
    findings: list[Finding] = []
    for name, dtype in DTYPES.items():
        findings += _check(module, name, dtype, near, budget)
    hint = next((h for pattern, h in _HINTS.items() if pattern in module.parsed.text.replace(" ", "")), None)
    return NumericsReport(tuple(findings), hint if any(f.severity == "error" for f in findings) else None)


def _evaluate(module: Formula, x: torch.Tensor, trace: list | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """y(x) with x and each learnable parameter as leaves of x's shape (so each point has its own gradient)."""
    env: dict[str, torch.Tensor | float] = {"x": x}
    leaves = {"x": x}
    for name, spec in module.specs.items():
        value = torch.full_like(x, spec.init)
        if spec.learnable:
            value.requires_grad_(True)
            leaves[name] = value
        env[name] = spec.bounded(value)
    y = module.parsed.root.evaluate(env, trace)
    y = y if isinstance(y, torch.Tensor) else torch.full_like(x, y)
    return y, leaves


def _gradients(y: torch.Tensor, leaves: list[torch.Tensor]) -> list[torch.Tensor]:
    """d(sum y)/d leaf per point; zeros where the output does not depend on a leaf (a step function: where(x < 0, 0, 1))."""
    if not y.requires_grad:
        return [torch.zeros_like(leaf) for leaf in leaves]
    return list(torch.autograd.grad(y.sum(), leaves, allow_unused=True, materialize_grads=True))


def _quantities(module: Formula, x: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.enable_grad():
        y, leaves = _evaluate(module, x)
        grads = _gradients(y, list(leaves.values()))
    out = {"the output": y.detach()}
    for name, g in zip(leaves, grads, strict=True):
        out["the gradient" if name == "x" else f"the gradient in {name}"] = g
    return out


def _check(module: Formula, dtype_name: str, dtype: torch.dtype, near: tuple[float, ...], budget: list[int]) -> list[Finding]:
    x = grid(dtype, near).requires_grad_(True)
    quantities = _quantities(module, x)
    x = x.detach()
    out = []
    for quantity, values in quantities.items():
        runs = _runs(~torch.isfinite(values))
        for lo, hi in runs[:MAX_STRETCHES]:
            points = values[lo : hi + 1]
            kind = "NaN" if torch.isnan(points).all() else "inf" if torch.isinf(points).all() else "NaN/inf"
            where, at = _describe(module, x, lo, hi, quantity, dtype, budget)
            far = bool((x[lo : hi + 1].abs() > STRICT_WITHIN).all()) and kind == "inf"
            out.append(Finding(dtype_name, quantity, kind, where, _reason(module, at, dtype), "note" if far else "error"))
        if len(runs) > MAX_STRETCHES:
            rest = torch.cat([torch.arange(lo, hi + 1) for lo, hi in runs[MAX_STRETCHES:]])
            span = f"{float(x[rest[0]]):.4g} ≤ x ≤ {float(x[rest[-1]]):.4g}"
            out.append(Finding(dtype_name, quantity, "NaN/inf", f"{len(runs) - MAX_STRETCHES} more stretches of x in {span}", ""))
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
    value = _quantities(module, torch.tensor([point], dtype=dtype, requires_grad=True))[quantity]
    return not bool(torch.isfinite(value).all())


def _boundary(module: Formula, good: float, bad: float, quantity: str, dtype: torch.dtype, budget: list[int]) -> float:
    """The first bad x between a good and a bad grid point (bisection in float64, evaluated in `dtype`), within
    the check's budget of evaluations (spent: the bad grid point itself)."""
    while budget[0] > 0:
        mid = (good + bad) / 2
        if float(torch.tensor(mid, dtype=dtype)) in (float(torch.tensor(good, dtype=dtype)), float(torch.tensor(bad, dtype=dtype))):
            break
        budget[0] -= 1
        if _is_bad(module, mid, quantity, dtype):
            bad = mid
        else:
            good = mid
    return float(torch.tensor(bad, dtype=dtype))


def _describe(module: Formula, x: torch.Tensor, lo: int, hi: int, quantity: str, dtype: torch.dtype,
              budget: list[int]) -> tuple[str, float]:
    """The stretch in words, and the x where its reason is read (the bad end next to a good region)."""
    last = len(x) - 1
    start = float(x[lo]) if lo == 0 else _boundary(module, float(x[lo - 1]), float(x[lo]), quantity, dtype, budget)
    end = float(x[hi]) if hi == last else _boundary(module, float(x[hi + 1]), float(x[hi]), quantity, dtype, budget)
    at = start if lo > 0 else end
    if lo == 0 and hi == last:
        return "every x", float(x[lo])
    if lo == 0:
        return f"x ≤ {end:.4g}", at
    if hi == last:
        return f"x ≥ {start:.4g}", at
    return (f"x = {start:.4g}" if start == end else f"{start:.4g} ≤ x ≤ {end:.4g}"), at


def _reason(module: Formula, point: float, dtype: torch.dtype) -> str:
    """Why at `point`: the innermost node whose value is not finite while its operands are, else the innermost
    node whose own derivative is not (its incoming gradient finite, an operand's not)."""
    x = torch.tensor([point], dtype=dtype, requires_grad=True)
    trace: list[tuple[Node, torch.Tensor | float]] = []
    with torch.enable_grad():
        y, _ = _evaluate(module, x, trace)
        for _, v in trace:
            if isinstance(v, torch.Tensor) and v.requires_grad and not v.is_leaf:
                v.retain_grad()
        if y.requires_grad:
            y.sum().backward()
    values = {id(node): v for node, v in trace}

    def finite(v) -> bool:
        return bool(torch.isfinite(torch.as_tensor(v)).all())

    for node, value in trace:  # operands come before the node that uses them
        if not finite(value) and all(finite(values[id(k)]) for k in node.kids):
            return _why(node, torch.as_tensor(value), [torch.as_tensor(values[id(k)]) for k in node.kids])
    for node, value in reversed(trace):  # from the output down: where a finite gradient stops being finite
        grad = value.grad if isinstance(value, torch.Tensor) and value.requires_grad else None
        if grad is None or not finite(grad):
            continue
        for k in node.kids:
            kv = values[id(k)]
            if isinstance(kv, torch.Tensor) and kv.grad is not None and not finite(kv.grad):
                return f"the derivative of {node.text} is not finite there"
    return ""


def _why(node: Node, value: torch.Tensor, operands: list[torch.Tensor]) -> str:
    """What a node whose finite operands gave a value that is not finite did, in words."""
    if torch.isnan(value).any():
        return f"{node.text} is NaN"
    sign = "-" if bool((value < 0).any()) else ""
    if node.op == "/" and bool((operands[1] == 0).any()):
        return f"{node.text} divides by zero"
    if node.op == "log" and bool((operands[0] == 0).any()):
        return f"{node.text} is -inf (the log of 0)"
    return f"{node.text} overflows to {sign}inf"
