"""The models by name and the data each takes. No torch here: the CLI and the study spec read it."""

from __future__ import annotations

MODELS: tuple[str, ...] = ("mlp", "cnn1d", "cnn", "resnet18")
IMAGE_MODELS: tuple[str, ...] = ("cnn", "resnet18")  # (C, H, W) samples
SEQUENCE_MODELS: tuple[str, ...] = ("cnn1d",)  # (L,) samples: MNIST-1D
# Where a model comes from: the four above, timm.create_model, torchvision.models.get_model, an installed
# package's entry point (group actstudy.models), or an import path `package.module:build`.
MODEL_SOURCES: tuple[str, ...] = ("builtin", "timm", "torchvision", "plugin", "import")
