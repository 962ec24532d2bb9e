"""The models by name and the data each takes. No torch here: the CLI and the study spec read it."""

from __future__ import annotations

MODELS: tuple[str, ...] = ("mlp", "cnn1d", "cnn", "resnet18")
IMAGE_MODELS: tuple[str, ...] = ("cnn", "resnet18")  # (C, H, W) samples
SEQUENCE_MODELS: tuple[str, ...] = ("cnn1d",)  # (L,) samples: MNIST-1D
