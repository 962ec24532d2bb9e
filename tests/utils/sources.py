"""Small models and data in the formats users bring: timm models made CPU-sized through their own arguments, an
image folder in torchvision's ImageFolder layout."""

from __future__ import annotations

import numpy as np

RESNET_KW = {"layers": [1, 1, 1, 1], "channels": [8, 16, 32, 64], "stem_width": 8}  # timm's resnet18, smaller
VIT_KW = {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 48, "num_heads": 3}


def write_image_folder(root, classes=("cat", "dog", "eel"), per_class=(6, 2), size=(10, 12)):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in zip(("train", "test"), per_class, strict=True):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    return root
