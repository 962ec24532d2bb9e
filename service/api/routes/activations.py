"""/api/v1/activations: the registry, with formulas and parameters."""

from fastapi import APIRouter

import activations
from service.models import ActivationPublic

router = APIRouter(prefix="/activations", tags=["activations"])


@router.get("", response_model=list[ActivationPublic], summary="Every registered activation")
def list_activations() -> list[ActivationPublic]:
    out = []
    for name in activations.names():
        e = activations.entry(name)
        out.append(ActivationPublic(name=name, formula=e.formula, source=e.source, learnable=e.learnable,
                                    parameters=activations.parameters(name)))
    return out
