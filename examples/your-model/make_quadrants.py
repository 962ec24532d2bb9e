"""A tiny image dataset as a tensor file, in the format `dataset: {source: file}` reads: x_train, y_train, x_test,
y_test in one .npz (samples first, float images (C, H, W), integer labels from 0). A class is a brighter quadrant.

    .venv/bin/python examples/your-model/make_quadrants.py [PATH]   # default: $ACTSTUDY_DATA_ROOT/quadrants.npz
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np


def quadrants(n_train: int = 512, n_test: int = 256, size: int = 32, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    half = size // 2

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 4, n)
        x = rng.normal(0, 1, (n, 3, size, size)).astype(np.float32)
        for i, c in enumerate(y):
            x[i, :, (c // 2) * half:(c // 2 + 1) * half, (c % 2) * half:(c % 2 + 1) * half] += 1.5
        return x, y.astype(np.int64)

    (x_train, y_train), (x_test, y_test) = split(n_train), split(n_test)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


if __name__ == "__main__":
    root = Path(os.environ.get("ACTSTUDY_DATA_ROOT") or Path.home() / ".actstudy" / "data")
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "quadrants.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **quadrants())
    print(path)
