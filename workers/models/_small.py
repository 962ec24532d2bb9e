"""The small models: an MLP, the MNIST-1D paper's CNN, and a small conv net for 28×28 / 32×32 images."""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import nn

# act(num_features, spatial_dims) -> a new activation module for one site.
ActFactory = Callable[[int, int], nn.Module]


class MLP(nn.Module):
    """Flatten → [Linear → act] per hidden size → Linear. mnist1d's MLP is hidden=(100, 100)."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, act: ActFactory, hidden=(100, 100)) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for size in hidden:
            layers += [nn.Linear(width, size), act(size, 0)]
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class CNN1d(nn.Module):
    """The MNIST-1D paper's CNN: three Conv1d of 25 channels (stride 2), then Linear; ~5.2k parameters."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, act: ActFactory, channels: int = 25) -> None:
        super().__init__()
        length = input_shape[-1]
        self.features = nn.Sequential(
            nn.Unflatten(1, (1, length)) if len(input_shape) == 1 else nn.Identity(),
            nn.Conv1d(1 if len(input_shape) == 1 else input_shape[0], channels, 5, stride=2, padding=1),
            act(channels, 1),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1),
            act(channels, 1),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1),
            act(channels, 1),
            nn.Flatten(),
        )
        for _ in range(3):
            length = (length + 2 - (5 if _ == 0 else 3)) // 2 + 1
        self.head = nn.Linear(channels * length, num_classes)

    def forward(self, x):
        return self.head(self.features(x))


class CNN(nn.Module):
    """A small conv net for images: 3 blocks of Conv-BN-act (32/64/128 channels, max-pool), global pool, Linear."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, act: ActFactory, widths=(32, 64, 128)) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"cnn needs image inputs (C, H, W), got per-sample shape {input_shape}")
        blocks: list[nn.Module] = []
        c_in = input_shape[0]
        for i, c in enumerate(widths):
            blocks += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), act(c, 2)]
            if i < len(widths) - 1:
                blocks.append(nn.MaxPool2d(2))
            c_in = c
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes))

    def forward(self, x):
        return self.head(self.features(x))
