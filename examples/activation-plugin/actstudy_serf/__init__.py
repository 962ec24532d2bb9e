"""SERF (Nag, Bhattacharyya & Wu, arXiv 2108.09598): x·erf(ln(1 + eˣ)), a smooth, non-monotonic activation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SERF(nn.Module):
    """x·erf(softplus(x)); `beta` sharpens the softplus (1: the paper's)."""

    # What actstudy lists; without them it shows the first docstring line and the package name.
    formula = "x·erf(ln(1 + eˣ))"
    source = "Nag et al. 2023, arXiv 2108.09598 (plugin: actstudy-serf)"
    learnable = False

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        if not beta > 0:
            raise ValueError(f"serf: beta must be > 0, got {beta!r}")
        self.beta = beta

    def extra_repr(self) -> str:
        return f"beta={self.beta}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.erf(F.softplus(x, beta=self.beta))
