"""The datasets by name, with each sample's shape and the number of classes. No torch here: the CLI and
the study spec read the names without loading any data code."""

from __future__ import annotations

SHAPES: dict[str, tuple[tuple[int, ...], int]] = {
    "mnist1d": ((40,), 10),
    "digits": ((1, 8, 8), 10),
    "mnist": ((1, 28, 28), 10),
    "fashion_mnist": ((1, 28, 28), 10),
    "cifar10": ((3, 32, 32), 10),
    "cifar100": ((3, 32, 32), 100),
}

DATASETS: tuple[str, ...] = tuple(SHAPES)
IMAGE_DATASETS: tuple[str, ...] = tuple(name for name, (shape, _) in SHAPES.items() if len(shape) == 3)
# Where a dataset comes from: the six above, a tensor file (.npz, .safetensors), an ImageFolder tree, a
# torchvision dataset class, or an installed package's entry point (group actstudy.datasets).
DATA_SOURCES: tuple[str, ...] = ("builtin", "file", "image_folder", "torchvision", "plugin")
