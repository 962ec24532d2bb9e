"""/api/v1/activations: the registry (built-ins, plugins, and the formula language), and a formula's check."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Request
from fastapi.exceptions import RequestValidationError

import activations
from service.api.json_route import CheckedJsonRoute
from service.api.responses import documented
from service.auth import CurrentCaller
from service.models import ActivationPublic
from studies.spec import FormulaCheck, FormulaRequest, check_formula_request

router = APIRouter(prefix="/activations", tags=["activations"], route_class=CheckedJsonRoute)

_BUILTIN = set(activations.builtin_names())


@router.get("", response_model=list[ActivationPublic], summary="Every activation a study can name, and the formula language")
def list_activations() -> list[ActivationPublic]:
    out = []
    for name in activations.names():
        e = activations.entry(name)
        out.append(ActivationPublic(name=name, formula=e.formula, source=e.source, learnable=e.learnable,
                                    parameters=activations.parameters(name), kind="builtin" if name in _BUILTIN else "plugin"))
    e = activations.entry(activations.FORMULA)
    out.append(ActivationPublic(name=activations.FORMULA, formula=e.formula, source=e.source, learnable=e.learnable,
                                parameters=activations.parameters(activations.FORMULA), kind="formula", language=activations.language()))
    return out


@router.post("/check", response_model=FormulaCheck, summary="Check a formula before a study: verdict, findings, curve",
             responses=documented(400, 401, 413))
def check_formula(request: Annotated[FormulaRequest, Body()], http: Request, caller: CurrentCaller) -> FormulaCheck:
    """`ok: false` with findings when a study would refuse it for numbers that are not finite; 422 naming the
    field when it is not a formula at all. A token is needed (the check computes, a listing does not)."""
    try:
        return check_formula_request(request)
    except ValueError as exc:  # activations.FormulaError: its message starts with the key (expr, params.<name>, label)
        key, _, why = str(exc).partition(": ")
        loc = ("body", *key.split(".")) if key in ("expr", "label") or key.startswith("params") else ("body",)
        raise RequestValidationError([{"loc": loc, "type": "value_error", "msg": why if len(loc) > 1 else str(exc)}]) from None
