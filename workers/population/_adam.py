"""Adam over a population's stacked parameters in one vectorised step, each member with its own learning rate and
L2 coefficient — what `torch.optim.Adam(weight_decay=l2)` does to each member alone (coupled L2 on the decayed
tensors), checked against it in tests/workers/test_population.py."""

from __future__ import annotations

import math

import torch


class PopulationAdam:
    def __init__(self, params: dict[str, torch.Tensor], lr: torch.Tensor, l2: torch.Tensor, decayed: set[str],
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params, self.decayed, self.betas, self.eps = params, decayed, betas, eps
        self.lr, self.l2 = lr.double(), l2.double()
        self.exp_avg = {k: torch.zeros_like(p) for k, p in params.items()}
        self.exp_avg_sq = {k: torch.zeros_like(p) for k, p in params.items()}
        self.steps = {k: 0 for k in params}  # per tensor, as torch's: PWLU's points start in Phase II, later than the weights
        self._shaped: dict[tuple, torch.Tensor] = {}

    def _per_member(self, values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return values.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))

    def _l2_of(self, like: torch.Tensor) -> torch.Tensor:
        """The members' L2 shaped to broadcast over `like` (kept: it changes only when members leave)."""
        key = (like.dtype, like.dim())
        if key not in self._shaped:
            self._shaped[key] = self._per_member(self.l2, like)
        return self._shaped[key]

    @torch.no_grad()
    def step(self, scale: float = 1.0) -> None:
        """One step; `scale` is the schedule's factor on every member's learning rate (warm-up, cosine)."""
        b1, b2 = self.betas
        for name, p in self.params.items():
            if p.grad is None:
                continue
            self.steps[name] += 1
            bias1, bias2 = 1 - b1 ** self.steps[name], 1 - b2 ** self.steps[name]
            grad = p.grad
            if name in self.decayed:
                grad = torch.addcmul(grad, p, self._l2_of(p))
            m, v = self.exp_avg[name], self.exp_avg_sq[name]
            m.lerp_(grad, 1 - b1)
            v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            denom = (v.sqrt() / math.sqrt(bias2)).add_(self.eps)
            p.sub_(self._per_member(self.lr * scale / bias1, p) * m / denom)

    def keep(self, rows: list[int], params: dict[str, torch.Tensor]) -> None:
        """Follow Members.keep: these members' moments, learning rates and L2, on the members' new tensors."""
        index = torch.tensor(rows, dtype=torch.long)
        self.params = params
        self.lr, self.l2 = self.lr[index], self.l2[index]
        self._shaped = {}
        self.exp_avg = {k: v[index].clone() for k, v in self.exp_avg.items()}
        self.exp_avg_sq = {k: v[index].clone() for k, v in self.exp_avg_sq.items()}

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None
