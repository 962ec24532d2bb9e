"""The optimizers of a population's stacked parameters, one vectorised step for all members, each member with its own
learning rate and L2 coefficient — what `torch.optim.Adam`, `AdamW` or `SGD` (momentum, Nesterov) with
`weight_decay=l2` does to each member alone (the decayed tensors as in a single trial), checked against them in
tests/workers/test_population.py."""

from __future__ import annotations

import math
from typing import Literal

import torch

Kind = Literal["adam", "adamw", "sgd"]


class PopulationOptimizer:
    def __init__(self, params: dict[str, torch.Tensor], lr: torch.Tensor, l2: torch.Tensor, decayed: set[str], kind: Kind = "adam",
                 *, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, momentum: float = 0.9, nesterov: bool = False) -> None:
        if kind not in ("adam", "adamw", "sgd"):
            raise ValueError(f"optimizer {kind!r}: a population takes adam, adamw or sgd")
        self.params, self.decayed, self.kind = params, decayed, kind
        self.betas, self.eps, self.momentum, self.nesterov = betas, eps, momentum, nesterov
        self.lr, self.l2 = lr.double(), l2.double()
        self.exp_avg: dict[str, torch.Tensor] = {}  # Adam's first moment, SGD's momentum buffer
        self.exp_avg_sq: dict[str, torch.Tensor] = {}
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
        for name, p in self.params.items():
            if p.grad is None:
                continue
            self.steps[name] += 1
            decayed = name in self.decayed
            if self.kind == "sgd":
                self._sgd(name, p, decayed, scale)
            else:
                self._adam(name, p, decayed, scale)

    def _adam(self, name: str, p: torch.Tensor, decayed: bool, scale: float) -> None:
        b1, b2 = self.betas
        bias1, bias2 = 1 - b1 ** self.steps[name], 1 - b2 ** self.steps[name]
        grad = p.grad
        if decayed and self.kind == "adamw":  # decoupled: the weights shrink by lr·l2 before the step
            p.mul_(1 - self._per_member(self.lr * scale, p) * self._l2_of(p))
        elif decayed:
            grad = torch.addcmul(grad, p, self._l2_of(p))
        if name not in self.exp_avg:
            self.exp_avg[name], self.exp_avg_sq[name] = torch.zeros_like(p), torch.zeros_like(p)
        m, v = self.exp_avg[name], self.exp_avg_sq[name]
        m.lerp_(grad, 1 - b1)
        v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = (v.sqrt() / math.sqrt(bias2)).add_(self.eps)
        p.sub_(self._per_member(self.lr * scale / bias1, p) * m / denom)

    def _sgd(self, name: str, p: torch.Tensor, decayed: bool, scale: float) -> None:
        grad = torch.addcmul(p.grad, p, self._l2_of(p)) if decayed else p.grad
        if self.momentum:
            if name not in self.exp_avg:
                self.exp_avg[name] = grad.clone()
            else:
                self.exp_avg[name].mul_(self.momentum).add_(grad)
            grad = grad.add(self.exp_avg[name], alpha=self.momentum) if self.nesterov else self.exp_avg[name]
        p.sub_(self._per_member(self.lr * scale, p) * grad)

    def keep(self, rows: list[int], params: dict[str, torch.Tensor]) -> None:
        """Follow Members.keep: these members' state, learning rates and L2, on the members' new tensors."""
        index = torch.tensor(rows, dtype=torch.long)
        self.params = params
        self.lr, self.l2 = self.lr[index], self.l2[index]
        self._shaped = {}
        self.exp_avg = {k: v[index].clone() for k, v in self.exp_avg.items()}
        self.exp_avg_sq = {k: v[index].clone() for k, v in self.exp_avg_sq.items()}

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None


class PopulationAdam(PopulationOptimizer):
    """Adam with coupled L2 (`torch.optim.Adam(weight_decay=l2)`) on each member."""

    def __init__(self, params: dict[str, torch.Tensor], lr: torch.Tensor, l2: torch.Tensor, decayed: set[str], **kwargs) -> None:
        super().__init__(params, lr, l2, decayed, "adam", **kwargs)
