"""What the fast paths of TeLU and PWLU share: how large a block is, and one workspace of temporaries.

Both walk a large tensor a block at a time: a block's temporaries stay in the caches, so the dozen eager
ops per block cost much less than as many passes over the whole tensor, and never take more memory than
a few blocks; smaller blocks only add per-op overhead (bench/activations.py measures it). On a CPU a
fresh allocation per op costs more in page faults than the op itself, so each kind of temporary has one
buffer that every block reuses.
"""

from __future__ import annotations

import torch

CPU_BLOCK = 1 << 18  # elements
OTHER_BLOCK = 1 << 22  # a GPU: fewer, larger launches
# With several intra-op threads every op is a parallel region whose end waits for all of them; on a
# loaded machine a descheduled thread makes each wait a time slice, so there blocks are 4× larger.
THREADED_FACTOR = 4


def block_size(device: torch.device) -> int:
    if device.type != "cpu":
        return OTHER_BLOCK
    return CPU_BLOCK * (THREADED_FACTOR if torch.get_num_threads() > 1 else 1)


class Workspace:
    """One flat buffer per key, made on first use (the first block is the largest) and grown if ever short."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.buffers: dict = {}

    def flat(self, key, dtype: torch.dtype, n: int) -> torch.Tensor:
        """The first n elements of the `key` buffer."""
        buffer = self.buffers.get(key)
        if buffer is None or buffer.numel() < n or buffer.dtype != dtype:
            buffer = self.buffers[key] = torch.empty(n, dtype=dtype, device=self.device)
        return buffer[:n]

    def like(self, key, like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """A view of the `key` buffer with like's shape and its order of dimensions in memory."""
        order = sorted(range(like.dim()), key=lambda d: (like.stride(d), -d))
        strides, step = [0] * like.dim(), 1
        for d in order:
            strides[d] = step
            step *= like.shape[d]
        return self.flat(key, dtype, step).as_strided(like.shape, strides)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the fast paths compute in: float32 for half inputs (t and the lines need more bits), else dtype."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def flat_in_memory_order(t: torch.Tensor) -> torch.Tensor | None:
    """A 1-D view of t in memory order when t is dense (contiguous, channels-last, …), else None."""
    if t.is_contiguous():
        return t.view(-1)
    order = sorted(range(t.dim()), key=lambda d: -t.stride(d))
    permuted = t.permute(order)
    return permuted.view(-1) if permuted.is_contiguous() else None
