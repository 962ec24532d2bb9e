"""A model plugin (`ringnet`) and a dataset plugin (`rings`) for actstudy.

`build(input_shape, num_classes, **kwargs)` returns any `torch.nn.Module`; actstudy swaps its activations site by
site (each `nn.ReLU` call site gets its own instance of the activation under study). `load(data_root)` returns the
arrays of a dataset: `x_train`, `y_train`, `x_test`, `y_test` (samples first, integer labels from 0).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn


class _Block(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        self.conv2, self.bn2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        self.act = nn.ReLU()  # called twice: two sites, each swapped with an instance of its own

    def forward(self, x):
        out = self.act(self.bn1(self.conv1(x)))
        return self.act(x + self.bn2(self.conv2(out)))


def build(input_shape: tuple[int, ...], num_classes: int, *, width: int = 8, blocks: int = 1) -> nn.Module:
    """A small residual CNN for images (C, H, W): a stem, `blocks` residual blocks, global pooling, a linear head."""
    if len(input_shape) != 3:
        raise ValueError(f"ringnet takes images (C, H, W), not samples of shape {tuple(input_shape)}")
    return nn.Sequential(
        nn.Conv2d(input_shape[0], width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
        *[_Block(width) for _ in range(blocks)],
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes),
    )


def load(data_root: Path, *, size: int = 12, train: int = 384, test: int = 128, seed: int = 0) -> dict[str, np.ndarray]:
    """Rings of three radii on noise, one channel of size×size: generated, so it needs nothing under `data_root`."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    radius = np.hypot(yy, xx)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 3, n)
        target = np.array([1.5, 3.0, 4.5])[y][:, None, None] + rng.normal(0, 0.3, (n, 1, 1))
        x = np.exp(-((radius[None] - target) ** 2)) + rng.normal(0, 0.3, (n, size, size))
        return x[:, None].astype(np.float32), y.astype(np.int64)

    x_train, y_train = make(train)
    x_test, y_test = make(test)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
