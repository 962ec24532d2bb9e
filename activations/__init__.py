"""Activation functions as torch modules, behind one registry.

    >>> import activations
    >>> act = activations.create("pwlu", num_features=64)   # a new instance on every call
    >>> mine = activations.create("formula", expr="x * sigmoid(beta * x)", params={"beta": {"init": 1.0, "learnable": True}})
    >>> activations.check_formula(mine).ok                  # finite value and gradients, float32 and bfloat16
    True
"""

from activations._classic import Logish, PReLU, Smish
from activations._expr import MAX_CHARS, MAX_CONSTANT, FormulaError, functions_listed
from activations._formula import MAX_LABEL, MAX_PARAMS, Formula, ParamSpec, curve_at, formula_label, language
from activations._lslu import LSLU
from activations._numerics import Finding, NumericsReport, check_formula
from activations._pwlu import PWLU
from activations._registry import (
    FORMULA,
    PLUGIN_GROUP,
    UnknownActivationError,
    builtin_names,
    check_params,
    create,
    entry,
    is_import_path,
    names,
    parameter_types,
    parameters,
    reports_evolution,
)
from activations._telu import TeLU, telu

FORMULA_FUNCTIONS = functions_listed()

__all__ = [
    "FORMULA",
    "FORMULA_FUNCTIONS",
    "MAX_CHARS",
    "MAX_CONSTANT",
    "MAX_LABEL",
    "MAX_PARAMS",
    "PLUGIN_GROUP",
    "Finding",
    "Formula",
    "FormulaError",
    "NumericsReport",
    "ParamSpec",
    "check_formula",
    "curve_at",
    "formula_label",
    "functions_listed",
    "language",
    "LSLU",
    "PWLU",
    "Logish",
    "PReLU",
    "Smish",
    "TeLU",
    "UnknownActivationError",
    "builtin_names",
    "check_params",
    "create",
    "entry",
    "is_import_path",
    "names",
    "parameter_types",
    "parameters",
    "reports_evolution",
    "telu",
]
