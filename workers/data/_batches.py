"""Mini-batches: one index permutation per epoch on the split's device; in memory, no DataLoader (streamed inputs
are read by one, in the same order)."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from workers.data._stream import StreamedInputs
from workers.data._types import Split


def batches(
    split: Split,
    batch_size: int,
    *,
    generator: torch.Generator | None,
    shuffle: bool = True,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield `(x, y)` batches covering the split once (one epoch).

    With `shuffle`, the order is a permutation drawn from `generator` (the global generator if None),
    so the same seeded generator gives the same epochs. The generator may live on any device; the
    permutation is moved to the split's device. Without `shuffle`, batches are views in source order.
    `drop_last` leaves out a final batch smaller than `batch_size`.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    n = len(split)
    stop = n - n % batch_size if drop_last else n
    if isinstance(split.x, StreamedInputs):  # the same batches as in memory, read as they come
        device = generator.device if generator is not None else torch.device("cpu")
        order = torch.randperm(n, generator=generator, device=device) if shuffle else torch.arange(n)
        plan = [order[start : start + batch_size].cpu() for start in range(0, stop, batch_size)]
        for idx, xb in zip(plan, split.x.batches(plan), strict=True):
            yield xb, split.y[idx.to(split.y.device)]
        return
    if not shuffle:
        for start in range(0, stop, batch_size):
            yield split.x[start : start + batch_size], split.y[start : start + batch_size]
        return
    device = generator.device if generator is not None else torch.device("cpu")
    order = torch.randperm(n, generator=generator, device=device).to(split.x.device)
    for start in range(0, stop, batch_size):
        idx = order[start : start + batch_size]
        yield split.x[idx], split.y[idx]
