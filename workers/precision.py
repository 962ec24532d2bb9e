"""Mixed precision, as `training.precision` asks: fp32, or autocast to bf16 / fp16 (fp16 with a grad scaler).

Under autocast the matrix products and convolutions run in the low-precision type and everything torch
keeps in float32 (losses, reductions, norms) stays there; the weights and the optimizer's state stay
float32. The activations take whatever dtype reaches them: TeLU and PWLU compute half inputs in float32
internally and return the input's dtype (tests/activations/test_autocast.py holds every activation to its
float32 result within the low-precision type's tolerance). fp16's narrow range needs the loss scaled
before the backward so that small gradients do not flush to zero; `torch.amp.GradScaler` does it and
skips the steps whose gradients overflowed. bf16 has float32's range and needs none.
"""

from __future__ import annotations

import contextlib
import typing

import torch

from workers.config import Precision

PRECISIONS = typing.get_args(Precision)
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(precision: str, device: torch.device):
    """The forward passes' context: torch.autocast for bf16 / fp16, nothing for fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AUTOCAST_DTYPES[precision])


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """A loss scaler, enabled for fp16 only (disabled, its scale/step/update pass straight through)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
