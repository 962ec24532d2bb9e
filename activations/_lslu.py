"""LSLU, learnable series linear units (Feng et al., arXiv 2409.08283; official code vontran2021/
Learnable-series-linear-units-LSLU), whose series part follows VanillaNet's activation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_CONV = {1: F.conv1d, 2: F.conv2d}


class LSLU(nn.Module):
    """LSLU(x) = BN(k ∗ ReLU(s_n(…s_1(x)))), s_i(x) = θ_i·ReLU(x) + ω_i, k a depthwise (2n+1) kernel — arXiv 2409.08283.

    θ starts at 1 and ω at 0, so a fresh LSLU is BN(k ∗ ReLU(x)). For (N, C) inputs the kernel is a
    per-channel scale; for (N, C, L) a 1-D kernel; for (N, C, H, W) a 2-D one (`spatial_dims`).
    """

    def __init__(self, num_features: int | None = None, spatial_dims: int = 2, terms: int = 3, eps: float = 1e-6) -> None:
        super().__init__()
        if not num_features:
            raise ValueError("lslu: num_features (the channel count of the input) is required")
        if spatial_dims not in (0, 1, 2):
            raise ValueError(f"lslu: spatial_dims must be 0, 1 or 2, got {spatial_dims!r}")
        if not isinstance(terms, int) or terms < 1:
            raise ValueError(f"lslu: terms must be an integer >= 1, got {terms!r}")
        self.num_features, self.spatial_dims, self.terms = num_features, spatial_dims, terms
        self.theta = nn.Parameter(torch.ones(terms))
        self.omega = nn.Parameter(torch.zeros(terms))
        if spatial_dims == 0:
            self.weight = nn.Parameter(torch.ones(num_features))
        else:
            size = (2 * terms + 1,) * spatial_dims
            self.weight = nn.Parameter(torch.empty(num_features, 1, *size))
            nn.init.trunc_normal_(self.weight, std=0.02)  # as the official code
        self.bn = nn.BatchNorm1d(num_features, eps=eps) if spatial_dims < 2 else nn.BatchNorm2d(num_features, eps=eps)
        self.fused = False

    def extra_repr(self) -> str:
        return f"{self.num_features}, spatial_dims={self.spatial_dims}, terms={self.terms}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.num_features:
            raise ValueError(
                f"lslu: expected ({self.spatial_dims + 2}-d input with {self.num_features} channels in dim 1, "
                f"got shape {tuple(x.shape)}"
            )
        for i in range(self.terms):
            x = torch.addcmul(self.omega[i], F.relu(x), self.theta[i])
        x = F.relu(x)
        if self.fused and not self.training:
            return self._mix(x, *self._fused_kernel())
        return self.bn(self._mix(x, self.weight, None))

    def _mix(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.spatial_dims == 0:
            y = x * weight
            return y if bias is None else y + bias
        return _CONV[self.spatial_dims](x, weight, bias, padding=self.terms, groups=self.num_features)

    def fuse(self) -> LSLU:
        """Inference with the BatchNorm folded into the kernel and a bias (one pass instead of two); eval mode.

        The folded kernel is derived from the weights and running statistics at each call (a few ops on C
        numbers), not stored: it moves with `.to()`, follows `load_state_dict`, and the state_dict stays
        that of the unfused module. `train()` leaves the fused path."""
        self.fused = True
        return self.eval()

    def train(self, mode: bool = True) -> LSLU:
        if mode:
            self.fused = False
        return super().train(mode)

    def _fused_kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        bn = self.bn
        scale = bn.weight / (bn.running_var + bn.eps).sqrt()
        weight = self.weight * scale.view(-1, *([1] * (self.weight.dim() - 1)))
        return weight, bn.bias - bn.running_mean * scale

    def state_snapshot(self) -> dict:
        """θ and ω of the series, as lists of plain floats."""
        return {"theta": self.theta.detach().cpu().tolist(), "omega": self.omega.detach().cpu().tolist()}
