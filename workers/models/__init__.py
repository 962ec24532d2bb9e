"""Models with the activation swapped in at every site, one new activation instance per site."""

from workers.models._build import MODELS, ModelError, build_model, activation_sites

__all__ = ["MODELS", "ModelError", "activation_sites", "build_model"]
