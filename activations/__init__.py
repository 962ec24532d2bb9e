"""Activation functions as torch modules, behind one registry.

    >>> import activations
    >>> act = activations.create("pwlu", num_features=64)   # a new instance on every call
"""

from activations._classic import Logish, PReLU, Smish
from activations._lslu import LSLU
from activations._pwlu import PWLU
from activations._registry import (
    UnknownActivationError,
    check_params,
    create,
    entry,
    names,
    parameter_types,
    parameters,
    reports_evolution,
)
from activations._telu import TeLU, telu

__all__ = [
    "LSLU",
    "PWLU",
    "Logish",
    "PReLU",
    "Smish",
    "TeLU",
    "UnknownActivationError",
    "check_params",
    "create",
    "entry",
    "names",
    "parameter_types",
    "parameters",
    "reports_evolution",
    "telu",
]
