"""P members of one model trained as one batched computation (`torch.func`: the members' parameters and buffers
stacked `[P, …]`, the model's forward `vmap`-ed over them, the batch shared): linear layers become batched matmuls,
convolutions batched convolutions, and every activation module sees its own member's parameters and statistics.

The built-in MLP takes a faster path than vmap (measured in bench/population.py): its linear layers are batched matmuls
on the stacked weights (the first one broadcasting the shared batch), its parameter-free activations run once on the
stacked `[P, batch, C]` activations (one call of the fused kernel, not P), and only activations with parameters or
statistics (PReLU, PWLU, LSLU) are `vmap`-ed, each alone.

Members start from one model's weights (a study's trials share the seed's initial weights); what differs is what
the optimizer does with them (PopulationAdam: per-member learning rate and L2). A module's Python-level state is
shared by the members, which is right for the built-ins because they move together: PWLU's Phase I ends at the same
step for all (its statistics and realignment are per member, in the stacked buffers).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap


class Unbatchable(RuntimeError):
    """The model does not train as one batched computation of its members; the message says why."""


class Members(nn.Module):
    """`model` copied `size` times; `forward(x)` gives logits `[size, batch, classes]` for a batch shared by all."""

    def __init__(self, model: nn.Module, size: int) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"a population needs at least one member, got {size}")
        self.size = size
        params, buffers = stack_module_state([copy.deepcopy(model) for _ in range(size)])
        self.params = nn.ParameterDict({k.replace(".", "::"): nn.Parameter(v.detach()) for k, v in params.items()})
        self.stacked_buffers = {k: v for k, v in buffers.items()}
        self.base = [copy.deepcopy(model)]  # a list: not a submodule, its own weights are never used
        self.decayed = {name for name, _ in _penalised(model)}
        self.chain = _linear_chain(self.base[0])

    def _chain_forward(self, x: torch.Tensor) -> torch.Tensor:
        params, buffers = self.named_member_parameters(), self.stacked_buffers
        h, shared = x, True  # shared: one batch for all members, [batch, …]; else [P, batch, C]
        for name, layer in self.chain:
            if isinstance(layer, nn.Flatten):
                h = h.flatten(1) if shared else h.flatten(2)
            elif isinstance(layer, nn.Linear):
                weight = params[f"{name}.weight"]
                bias = params.get(f"{name}.bias")
                if bias is None:
                    bias = torch.zeros(weight.shape[:2], dtype=weight.dtype)
                h = torch.matmul(h, weight.transpose(1, 2)) + bias.unsqueeze(1) if shared else \
                    torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
                shared = False
            else:
                if shared:
                    h, shared = h.expand(self.size, *h.shape), False
                own = {k.removeprefix(f"{name}."): v for k, v in {**params, **buffers}.items() if k.startswith(f"{name}.")}
                if not own:  # an elementwise activation: once over every member
                    h = layer(h)
                else:
                    h = vmap(lambda state, xb, layer=layer: functional_call(layer, state, (xb,)), randomness="same")(own, h)
        return h

    def named_member_parameters(self) -> dict[str, torch.Tensor]:
        return {k.replace("::", "."): v for k, v in self.params.items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = self.base[0]
        base.train(self.training)
        if self.chain is not None:
            return self._chain_forward(x)

        def one(params, buffers, xb):
            return functional_call(base, (params, buffers), (xb,))

        return vmap(one, in_dims=(0, 0, None), randomness="same")(self.named_member_parameters(), self.stacked_buffers, x)

    def check(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Raise Unbatchable, saying why, if a training step of these members fails as one computation (data-dependent
        control flow, an in-place write vmap cannot batch, …); tried on a copy, so nothing here changes."""
        probe = copy.deepcopy(self)
        probe.train()
        try:
            population_loss(probe(x), y).backward()
        except Exception as exc:  # noqa: BLE001 — whatever the model does under vmap
            raise Unbatchable(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc

    def keep(self, rows: list[int]) -> None:
        """Only these members from now on (a diverged one leaves the batch, and the compute shrinks)."""
        index = torch.tensor(rows, dtype=torch.long)
        for k in list(self.params):
            self.params[k] = nn.Parameter(self.params[k].detach()[index].clone())
        self.stacked_buffers = {k: v[index].clone() for k, v in self.stacked_buffers.items()}
        self.size = len(rows)

    def member(self, i: int) -> nn.Module:
        """Member `i` as a model of its own (a copy: its weights, buffers and activation state)."""
        model = copy.deepcopy(self.base[0])
        state = {k: v[i].detach().clone() for k, v in {**self.named_member_parameters(), **self.stacked_buffers}.items()}
        model.load_state_dict(state, strict=True)
        return model


def _linear_chain(model: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """The built-in MLP's layers by name (Flatten, Linear, activations, in order), or None for any other model."""
    from workers.models._small import MLP

    if type(model) is not MLP:
        return None
    return [(f"net.{name}", layer) for name, layer in model.net.named_children()]


def _penalised(model: nn.Module):
    """What L2 applies to, as in a single trial (workers.train): the weights of linear and convolution layers."""
    for prefix, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            yield f"{prefix}.weight" if prefix else "weight", module.weight


def population_loss(logits: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """The members' mean cross-entropies, summed: each member's gradient is its own loss's, and a member whose loss
    is not finite leaves the others' gradients as they would be without it."""
    return member_losses(logits, y, label_smoothing).sum()


def member_losses(logits: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Each member's mean cross-entropy over the shared batch, `[P]`, in one call for all members."""
    size, batch, classes = logits.shape
    losses = F.cross_entropy(logits.reshape(size * batch, classes), y.repeat(size), reduction="none", label_smoothing=label_smoothing)
    return losses.view(size, batch).mean(1)
