"""Models from outside the built-in four: timm, torchvision, an installed plugin, or an import path.

Each is built with its own activations (no pretrained weights: a trial never downloads), then
`swap_activations` puts the candidate at every site. `count_parameters` builds on the meta device, so a
model over a cap is refused without allocating it.

A plugin (entry-point group `actstudy.models`) and an import path (`package.module:build`) name a callable
`build(input_shape, num_classes, **kwargs) -> nn.Module`.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
import os
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

import torch
from torch import nn

from workers.models._sites import ACTIVATION_TYPES

log = logging.getLogger(__name__)

PLUGIN_GROUP = "actstudy.models"
MAX_PARAMETERS_ENV = "ACTSTUDY_MAX_MODEL_PARAMETERS"
DEFAULT_MAX_PARAMETERS = 100_000_000


def max_model_parameters() -> int:
    """`$ACTSTUDY_MAX_MODEL_PARAMETERS`, else 100 million: the largest model a study may train (counted on the meta device)."""
    value = os.environ.get(MAX_PARAMETERS_ENV, "").strip()
    return int(value) if value else DEFAULT_MAX_PARAMETERS
# Arguments a trial sets itself, or that would fetch or read weights: refused in `kwargs`.
_RESERVED = {
    "timm": ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path", "num_classes", "in_chans"),
    "torchvision": ("weights", "weights_backbone", "num_classes", "progress"),
}


class ModelSourceError(ValueError):
    """A model that cannot be built as asked; the message starts with the spec field it is about."""


def _timm(name: str, kwargs: dict, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    import timm

    if len(input_shape) != 3:
        raise ModelSourceError(f"model.name: timm's {name!r} takes images (C, H, W); this dataset's samples are {input_shape}")
    if not timm.is_model(name):
        close = difflib.get_close_matches(name.split(".")[0], timm.list_models(), n=5, cutoff=0.7)
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise ModelSourceError(f"model.name: timm has no model {name!r}{hint}")
    return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=input_shape[0], **kwargs)


def _torchvision(name: str, kwargs: dict, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)  # classification models only
    if name not in known:
        raise ModelSourceError(f"model.name: torchvision has no classification model {name!r} (e.g. {', '.join(known[:6])}, ...)")
    if len(input_shape) != 3 or input_shape[0] != 3:
        raise ModelSourceError(f"model.name: torchvision's {name!r} takes 3-channel images (3, H, W); this dataset's samples are "
                               f"{input_shape} (timm's models take any channel count)")
    return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)


def plugin_models() -> dict[str, Any]:
    """Installed model plugins by name (entry points, not loaded)."""
    return {ep.name: ep for ep in entry_points(group=PLUGIN_GROUP)}


def _builder(source: str, name: str) -> Callable[..., nn.Module]:
    if source == "plugin":
        found = plugin_models()
        if name not in found:
            raise ModelSourceError(f"model.name: no installed model plugin {name!r} (entry-point group {PLUGIN_GROUP}; "
                                   f"installed: {', '.join(found) or 'none'})")
        try:
            fn = found[name].load()
        except Exception as exc:  # noqa: BLE001 — someone else's package
            raise ModelSourceError(f"model.name: the model plugin {name!r} does not load ({type(exc).__name__}: {exc})") from None
    else:
        module_name, _, attr = name.partition(":")
        if not module_name or not attr:
            raise ModelSourceError(f"model.name: {name!r} is not an import path `package.module:build`")
        try:
            fn = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ModelSourceError(f"model.name: cannot import {name!r} ({type(exc).__name__}: {exc})") from None
    if not callable(fn):
        raise ModelSourceError(f"model.name: {name!r} is not callable (a model is built by build(input_shape, num_classes, **kwargs))")
    return fn


def construct(source: str, name: str, kwargs: dict | None, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The model as its source builds it, with its own activations; ModelSourceError saying what is wrong."""
    kwargs = dict(kwargs or {})
    bad = [k for k in kwargs if k in _RESERVED.get(source, ())]
    if bad:
        raise ModelSourceError(f"model.kwargs.{bad[0]}: set by each trial (no pretrained weights, the data's classes and channels)")
    try:
        if source == "timm":
            model = _timm(name, kwargs, input_shape, num_classes)
        elif source == "torchvision":
            model = _torchvision(name, kwargs, input_shape, num_classes)
        else:
            model = _builder(source, name)(tuple(input_shape), num_classes, **kwargs)
    except ModelSourceError:
        raise
    except TypeError as exc:  # an argument the constructor does not take, or of the wrong type
        raise ModelSourceError(f"model.kwargs: {name!r} does not take these arguments ({exc})") from None
    except (ValueError, AssertionError, RuntimeError, KeyError) as exc:
        raise ModelSourceError(f"model: {name!r} does not build with these arguments ({type(exc).__name__}: {exc})") from None
    if not isinstance(model, nn.Module):
        raise ModelSourceError(f"model.name: {name!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def count_parameters(source: str, name: str, kwargs: dict | None, input_shape: tuple[int, ...], num_classes: int) -> int:
    """The model's parameter count, built on the meta device: no memory for its weights, no time initialising them."""
    with torch.device("meta"):
        model = construct(source, name, kwargs, input_shape, num_classes)
    return sum(p.numel() for p in model.parameters())


def activation_types(names: tuple[str, ...] | list[str] | None) -> tuple[type[nn.Module], ...]:
    """The module types to swap: by class name (`ReLU`, `GELU`, timm's `GELUTanh`), else the defaults (torch's
    activation modules and timm's own)."""
    known = _known_types()
    if not names:
        return tuple(dict.fromkeys(ACTIVATION_TYPES + tuple(t for n, t in known.items() if n.startswith("timm."))))
    chosen = []
    for n in names:
        matches = [t for full, t in known.items() if full == n or full.rsplit(".", 1)[1] == n]
        if not matches:
            raise ModelSourceError(f"model.swap: {n!r} is not an activation module type (e.g. {', '.join(sorted({f.rsplit('.', 1)[1] for f in known})[:12])})")
        chosen += matches
    return tuple(dict.fromkeys(chosen))


def _known_types() -> dict[str, type[nn.Module]]:
    """Activation module types by qualified name: torch.nn's (every module class of torch.nn.modules.activation
    but the gates and the attention) and timm's (timm.layers.activations)."""
    import torch.nn.modules.activation as torch_acts

    skip = {"MultiheadAttention", "Softmax", "Softmin", "LogSoftmax", "Softmax2d", "Sigmoid", "Hardsigmoid", "Tanh", "Threshold",
            "GLU", "Hardtanh", "Tanhshrink", "Softshrink", "Hardshrink", "LogSigmoid", "Softsign", "RReLU", "PReLU"}
    found = {f"torch.nn.{n}": t for n, t in vars(torch_acts).items()
             if inspect.isclass(t) and issubclass(t, nn.Module) and t.__module__ == torch_acts.__name__ and n not in skip}
    try:
        from timm.layers import activations as timm_acts
    except ImportError:  # timm is in the lock; without it only torch's types are known
        return found
    gates = {"Sigmoid", "Tanh", "HardSigmoid", "PReLU", "HardSigmoidMe"}
    found |= {f"timm.{n}": t for n, t in vars(timm_acts).items()
              if inspect.isclass(t) and issubclass(t, nn.Module) and t.__module__ == timm_acts.__name__ and n not in gates}
    return found
