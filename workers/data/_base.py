"""What every source loader returns: the dataset's own train and test sets, before the validation split."""

from __future__ import annotations

from typing import NamedTuple

import torch


class Base(NamedTuple):
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def normalise_images(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 images (N, C, H, W) → float32 standardised per channel."""
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return images.to(torch.float32).div_(255.0).sub_(m).div_(s)
