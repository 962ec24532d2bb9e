"""CIFAR augmentation on whole batches: random 32×32 crop of the padded image plus horizontal flip.

One gather does both for every image at once, on the batch's device; no per-sample Python.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_MODES = {"reflect": "reflect", "zeros": "constant"}


def augment_cifar(x: torch.Tensor, generator: torch.Generator, *, pad: int = 4, padding: str = "reflect") -> torch.Tensor:
    """A randomly cropped (from `x` padded by `pad`) and, with probability ½, mirrored copy of `x`.

    `x` is (N, C, H, W); `padding` is "reflect" or "zeros" (zeros of the normalised input, i.e. the
    mean colour). Offsets and flips come from `generator`, which may live on any device.
    """
    if x.dim() != 4:
        raise ValueError(f"augment_cifar expects a batch (N, C, H, W), got shape {tuple(x.shape)}")
    if padding not in _MODES:
        raise ValueError(f"padding must be one of {', '.join(_MODES)}, got {padding!r}")
    n, c, h, w = x.shape
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0 or (padding == "reflect" and pad >= min(h, w)):
        raise ValueError(f"pad must be an integer in [0, {min(h, w)}) for {h}×{w} images, got {pad!r}")
    if n == 0:
        return x.clone()
    device = generator.device
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=device).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=device).to(x.device)
    flip = (torch.rand(n, generator=generator, device=device) < 0.5).to(x.device)
    padded = F.pad(x, (pad, pad, pad, pad), mode=_MODES[padding]) if pad else x
    rows = dy[:, None] + torch.arange(h, device=x.device)  # (N, H)
    cols_ahead = torch.arange(w, device=x.device)
    cols = dx[:, None] + torch.where(flip[:, None], cols_ahead.flip(0), cols_ahead)  # (N, W), mirrored on flip
    return padded[
        torch.arange(n, device=x.device)[:, None, None, None],
        torch.arange(c, device=x.device)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]
