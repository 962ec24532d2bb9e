"""Try a formula before a study: the verdict of the numerical check, its findings, and its curve and
derivative (float64) — what `actstudy activations --check` and `POST /api/v1/activations/check` answer."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

import activations

CURVE_RANGE = (-6.0, 6.0)
CURVE_POINTS = 241


class FormulaRequest(BaseModel):
    """A formula as a spec's activation entry writes it (without `name`)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    expr: str = Field(max_length=activations.MAX_CHARS, examples=["x * tanh(softplus(x))"],
                      description="an expression in x (the language: GET /api/v1/activations, the `formula` entry)")
    params: dict[str, Any] | None = Field(None, examples=[{"beta": {"init": 1.0, "learnable": True, "per_channel": True}}],
                                          description="name -> a constant, or {init, learnable, per_channel, low, high}")
    label: str | None = Field(None, max_length=activations.MAX_LABEL, description="its name in a study (default: the expression)")


class FormulaFinding(BaseModel):
    dtype: str
    quantity: str
    kind: str
    where: str
    reason: str
    severity: str = Field(description="error: refuses the formula; note: ±inf only where |x| > 10⁴ (it grows faster than x)")
    message: str


class Curve(BaseModel):
    x: list[float]
    y: list[float | None] = Field(description="none where not finite")
    dy: list[float | None] = Field(description="dy/dx (autograd, float64); none where not finite")


class FormulaCheck(BaseModel):
    ok: bool = Field(description="true: a study may use it (finite value and gradients over the checked range, float32 and bfloat16; "
                                 "notes allowed)")
    expr: str = Field(description="the formula as read (canonical spacing and parentheses)")
    label: str
    learnable: list[str] = Field(description="the parameters that train with the model")
    findings: list[FormulaFinding]
    message: str | None = Field(description="why a study would refuse it; none when ok")
    checked: str = Field(description="what was checked")
    curve: Curve = Field(description=f"the formula and its derivative on [{CURVE_RANGE[0]:g}, {CURVE_RANGE[1]:g}] at the parameters' initial values")


CHECKED = ("x from −100 to 100 in steps of 0.05, 0, the tiniest numbers and ± powers of ten up to the largest finite value, "
           "in float32 and bfloat16, parameters at their initial values: the output, dy/dx and the gradient in each learnable parameter")


def check_formula_request(request: FormulaRequest) -> FormulaCheck:
    """The check of one formula; FormulaError (a ValueError naming expr, params.<name> or label) when it is not in the language."""
    module = activations.create(activations.FORMULA, expr=request.expr, params=request.params, label=request.label, num_features=1)
    report = activations.check_formula(module)
    return FormulaCheck(ok=report.ok, expr=module.parsed.text, label=module.label, learnable=list(module.learned),
                        findings=[FormulaFinding(**f.to_dict()) for f in report.findings],
                        message=None if report.ok else report.message(), checked=CHECKED, curve=curve(module))


def curve(module: activations.Formula) -> Curve:
    x = torch.linspace(*CURVE_RANGE, CURVE_POINTS, dtype=torch.float64, requires_grad=True)
    m = module.double()
    with torch.enable_grad():
        y = m(x.view(-1, 1)).view(-1)  # (N, C=1): per channel parameters see one channel
        dy = torch.autograd.grad(y.sum(), [x])[0] if y.requires_grad else torch.zeros_like(x)  # a step function: 0
    return Curve(x=_plain(x), y=_plain(y), dy=_plain(dy))


def _plain(t: torch.Tensor) -> list[float]:
    """JSON has no NaN: a value that is not finite becomes null (the findings say where)."""
    return [v if v == v and abs(v) != float("inf") else None for v in t.detach().tolist()]
