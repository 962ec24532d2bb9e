"""Swap the activations of any model, site by site: `swap_activations(model, make, example)`.

A dry run on an example input finds every call of a module of the model's own activation types (exact type:
a subclass, such as a learnable variant, is left alone; gates such as sigmoid are not activation types), the
shape it sees and the layer that produced its input. Each *call* becomes a site with a fresh instance (a
module called twice, as torchvision's BasicBlock calls its `relu`, becomes two), built for the site's channel
count and channel axis: dim 1 after convolutions and norms over channels, the last dim after linear layers
and layer norms (ConvNeXt's NHWC MLP, a ViT's (B, N, C) tokens), where the instance sees the channels moved to
dim 1. Activations called as functions (`F.gelu` in a forward, `nn.TransformerEncoderLayer`'s `activation`)
cannot be swapped: they are counted by module, and the coverage says so.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

# The model's own activation modules that are swapped (exactly these types).
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Mish, nn.LeakyReLU, nn.ELU, nn.CELU,
                                                 nn.SELU, nn.Hardswish, nn.Softplus)
# Functions that are activations when a model calls them itself (inside an activation module, they are its body).
FUNCTIONAL = {F.relu, F.relu_, torch.relu, torch.relu_, F.relu6, F.gelu, F.silu, F.mish, F.leaky_relu, F.elu, F.selu, F.celu,
              F.hardswish, F.softplus}
# Producers whose output has its channels last: what follows them is channel-wise over the last dim.
_CHANNELS_LAST = (nn.Linear, nn.LayerNorm)

Make = Callable[[int, int], nn.Module]  # (num_features, spatial_dims) -> a new activation module


class NoActivationSites(ValueError):
    """A model in which no activation module can be swapped."""


@dataclass(frozen=True)
class Site:
    path: str  # where the instance lives in the swapped model (a module called k times: path.0 … path.k-1)
    replaced: str  # the type it replaced
    shape: tuple[int, ...]  # the input it saw in the dry run (batch included)
    channel_axis: int  # 1, or -1 (channels last: the instance sees them moved to dim 1)


@dataclass
class SwapReport:
    sites: list[Site]
    functional: dict[str, int] = field(default_factory=dict)  # module path -> activation calls made as functions
    not_reached: list[str] = field(default_factory=list)  # activation modules the dry run never called (left as they were)

    @property
    def calls(self) -> int:
        return len(self.sites) + sum(self.functional.values())

    def coverage(self) -> str:
        """"22 of 24 activation calls swapped; 2 functional calls in `blocks.3.attn` were not"."""
        text = f"{len(self.sites)} of {self.calls} activation calls swapped"
        if self.functional:
            n = sum(self.functional.values())
            where = ", ".join(f"`{path or '(the model)'}`" + (f" ({k})" if len(self.functional) > 1 else "") for path, k in self.functional.items())
            text += f"; {n} functional call{'s' if n > 1 else ''} in {where} {'were' if n > 1 else 'was'} not"
        if self.not_reached:
            text += f"; {len(self.not_reached)} activation module(s) never called on this input left as they were"
        return text

    def to_dict(self) -> dict:
        return {"coverage": self.coverage(), "calls": self.calls, "sites": [vars(s) | {"shape": list(s.shape)} for s in self.sites],
                "functional": self.functional, "not_reached": self.not_reached}


class ChannelsLast(nn.Module):
    """An activation over the last dim of its input, for a channel-wise activation that expects dim 1."""

    def __init__(self, act: nn.Module) -> None:
        super().__init__()
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x.movedim(-1, 1)).movedim(1, -1)


class CallSites(nn.Module):
    """One instance per call of a module the model calls several times in one forward: call i uses `sites[i]`.
    The count restarts at each forward of the model (a pre-hook `swap_activations` puts on it)."""

    def __init__(self, sites: list[nn.Module]) -> None:
        super().__init__()
        self.sites = nn.ModuleList(sites)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calls >= len(self.sites):
            raise RuntimeError(f"called {self.calls + 1} times in one forward; the dry run saw {len(self.sites)} calls")
        site = self.sites[self.calls]
        self.calls += 1
        return site(x)


def _restart(model: nn.Module, _args) -> None:
    for m in model.modules():
        if isinstance(m, CallSites):
            m.calls = 0


class _Calls(TorchFunctionMode):
    """Counts activation functions called outside the model's activation modules, by the innermost module."""

    def __init__(self, where: list[str], inside: list[bool]) -> None:
        super().__init__()
        self.where, self.inside = where, inside
        self.counts: dict[str, int] = defaultdict(int)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in FUNCTIONAL and not self.inside[-1]:
            self.counts[self.where[-1]] += 1
        return func(*args, **(kwargs or {}))


def swap_activations(model: nn.Module, make: Make, example: torch.Tensor, types: tuple[type[nn.Module], ...] = ACTIVATION_TYPES) -> SwapReport:
    """Replace, in place, every call of a module of exactly one of `types` by `make(num_features, spatial_dims)`
    for that call's input; raise NoActivationSites when there is none. `example`: a batch of the data's shape."""
    paths = {m: p for p, m in model.named_modules()}
    is_target = {m: type(m) in types for m in paths}
    calls: dict[nn.Module, list[tuple[tuple[int, ...], int]]] = defaultdict(list)
    producer: dict[int, type[nn.Module]] = {}  # id(output tensor) -> the leaf module type that produced it
    where, inside = [""], [False]
    handles = []

    def pre(module, args):
        where.append(paths[module])
        inside.append(inside[-1] or is_target[module])
        if is_target[module] and args and isinstance(args[0], torch.Tensor):
            x = args[0]
            last = x.dim() >= 3 and issubclass(producer.get(id(x), nn.Module), _CHANNELS_LAST)
            calls[module].append((tuple(x.shape), -1 if last else 1))

    def post(module, args, output):
        where.pop()
        inside.pop()
        if isinstance(output, torch.Tensor) and not any(True for _ in module.children()):
            producer[id(output)] = type(module)

    for m in paths:
        handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    counter = _Calls(where, inside)
    # In training mode (eval mode sends nn.TransformerEncoderLayer down a fused path that calls no activation);
    # the running statistics the dry run moves are put back.
    was_training, buffers = model.training, {name: b.clone() for name, b in model.named_buffers()}
    try:
        model.train()
        with torch.no_grad(), counter:
            model(example)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(buffers[name])

    sites: list[Site] = []
    replacements: dict[nn.Module, nn.Module] = {}
    for module, seen in calls.items():
        instances = []
        for i, (shape, axis) in enumerate(seen):
            channels = shape[axis] if len(shape) >= 2 else 1
            act = make(channels, max(0, len(shape) - 2))
            instances.append(ChannelsLast(act) if axis == -1 else act)
            path = paths[module] if len(seen) == 1 else f"{paths[module]}.sites.{i}"
            sites.append(Site(path, type(module).__name__, shape, axis))
        replacements[module] = instances[0] if len(instances) == 1 else CallSites(instances)
    not_reached = [p for m, p in paths.items() if is_target[m] and m not in calls]
    report = SwapReport(sites, dict(counter.counts), not_reached)
    if not sites:
        names = ", ".join(t.__name__ for t in types)
        raise NoActivationSites(f"no activation module to swap ({names}, exact types) is called by this model: {report.coverage()}")
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if child in replacements:
                setattr(parent, name, replacements[child])
    if any(isinstance(r, CallSites) for r in replacements.values()):
        model.register_forward_pre_hook(_restart)
    return report
