"""The classic activations the TeLU paper compares against that torch has no module for."""

from __future__ import annotations

import torch
from torch import nn


class Logish(nn.Module):
    """Logish(x) = x·ln(1+σ(x)) — Zhu et al., "Logish: A new nonlinear nonmonotonic activation function"."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.log1p(torch.sigmoid(x))


class Smish(nn.Module):
    """Smish(x) = x·tanh(ln(1+σ(x))) — Wang et al., "Smish: A Novel Activation Function for Deep Learning"."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.tanh(torch.log1p(torch.sigmoid(x)))


class PReLU(nn.PReLU):
    """PReLU(x) = max(0,x) + a·min(0,x), one learnable a per channel when num_features is given (He et al. 2015)."""

    def __init__(self, num_features: int | None = None, init: float = 0.25) -> None:
        super().__init__(num_parameters=num_features or 1, init=init)


__all__ = ["Logish", "PReLU", "Smish"]
