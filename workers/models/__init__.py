"""Models with the activation swapped in at every site, one new activation instance per site."""

import importlib

from workers.models._catalog import IMAGE_MODELS, MODEL_SOURCES, MODELS, SEQUENCE_MODELS

# The builders need torch; they load on first use, so reading the names (the CLI, a spec) stays light.
_LAZY = {"ModelError": "_build", "activation_sites": "_build", "build_model": "_build", "build_model_reporting": "_build",
         "ModelSourceError": "_sources", "construct": "_sources", "count_parameters": "_sources", "activation_types": "_sources",
         "plugin_models": "_sources", "max_model_parameters": "_sources", "swap_activations": "_sites",
         "SwapReport": "_sites", "Site": "_sites", "NoActivationSites": "_sites", "ACTIVATION_TYPES": "_sites"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ACTIVATION_TYPES", "IMAGE_MODELS", "MODEL_SOURCES", "MODELS", "SEQUENCE_MODELS", "ModelError", "NoActivationSites", "Site", "SwapReport",
           "ModelSourceError", "activation_sites", "activation_types", "build_model",
           "build_model_reporting", "construct", "count_parameters", "max_model_parameters", "plugin_models", "swap_activations"]
