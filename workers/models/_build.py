"""build_model: a model by name, with `activation` built fresh at every site."""

from __future__ import annotations

from torch import nn

import activations
from workers.models._catalog import MODELS
from workers.models._small import CNN, MLP, CNN1d


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
) -> nn.Module:
    params = dict(activation_params or {})
    activations.check_params(activation, params)

    def act(num_features: int, spatial_dims: int) -> nn.Module:
        return activations.create(activation, num_features=num_features, spatial_dims=spatial_dims, **params)

    if name == "mlp":
        return MLP(input_shape, num_classes, act, hidden=tuple(hidden))
    if name == "cnn1d":
        return CNN1d(input_shape, num_classes, act)
    if name == "cnn":
        return CNN(input_shape, num_classes, act)
    if name == "resnet18":
        from workers.models._resnet import resnet18  # torchvision costs a trial actor ~2 CPU s to import

        return resnet18(input_shape, num_classes, act)
    raise ModelError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}")


def activation_sites(model: nn.Module) -> dict[str, nn.Module]:
    """The activations that report their shape (`state_snapshot`) by module path: the keys their evolution is logged under."""
    return {path: m for path, m in model.named_modules() if activations.reports_evolution(m)}
