"""build_model: a model by source and name, with `activation` built fresh at every site."""

from __future__ import annotations

import torch
from torch import nn

import activations
from workers.models._catalog import MODELS
from workers.models._sites import SwapReport, swap_activations
from workers.models._small import CNN, MLP, CNN1d
from workers.models._sources import activation_types, construct


class ModelError(ValueError):
    """An unknown model or an option it does not take."""


def build_model(
    name: str,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    activation: str = "relu",
    activation_params: dict | None = None,
    hidden: tuple[int, ...] | list[int] = (100, 100),
    source: str = "builtin",
    kwargs: dict | None = None,
    swap: tuple[str, ...] | list[str] = (),
) -> nn.Module:
    return build_model_reporting(name, input_shape=input_shape, num_classes=num_classes, activation=activation,
                                 activation_params=activation_params, hidden=hidden, source=source, kwargs=kwargs, swap=swap)[0]


def build_model_reporting(
    name: str,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    activation: str = "relu",
    activation_params: dict | None = None,
    hidden: tuple[int, ...] | list[int] = (100, 100),
    source: str = "builtin",
    kwargs: dict | None = None,
    swap: tuple[str, ...] | list[str] = (),
) -> tuple[nn.Module, SwapReport | None]:
    """The model and, for a model from outside (timm, torchvision, a plugin, an import path), what was swapped
    where. A built-in model takes `activation` at construction (no report: every site is its own)."""
    params = dict(activation_params or {})
    activations.check_params(activation, params)

    def act(num_features: int, spatial_dims: int) -> nn.Module:
        return activations.create(activation, num_features=num_features, spatial_dims=spatial_dims, **params)

    if source != "builtin":
        model = construct(source, name, kwargs, tuple(input_shape), num_classes)
        # The dry run's example is zeros and its RNG use is undone: the weights and batches after it are as without it.
        with torch.random.fork_rng(devices=[]):
            report = swap_activations(model, act, torch.zeros(2, *input_shape), activation_types(swap))
        return model, report
    if name == "mlp":
        return MLP(input_shape, num_classes, act, hidden=tuple(hidden)), None
    if name == "cnn1d":
        return CNN1d(input_shape, num_classes, act), None
    if name == "cnn":
        return CNN(input_shape, num_classes, act), None
    if name == "resnet18":
        from workers.models._resnet import resnet18  # torchvision costs a trial actor ~2 CPU s to import

        return resnet18(input_shape, num_classes, act), None
    raise ModelError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}")


def activation_sites(model: nn.Module) -> dict[str, nn.Module]:
    """The activations that report their shape (`state_snapshot`) by module path: the keys their evolution is logged under."""
    return {path: m for path, m in model.named_modules() if activations.reports_evolution(m)}
