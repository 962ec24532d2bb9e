"""scikit-learn's 8×8 digits (1,797 images, shipped with the package), scaled to [0, 1]."""

from __future__ import annotations

import numpy as np
import torch

from workers.data._base import Base

TEST_SIZE = 0.2
_SPLIT_STATE = 0  # the train/test split is fixed; only the validation split follows the seed


def load() -> Base:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (np.asarray(digits.data, dtype=np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = np.asarray(digits.target, dtype=np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=TEST_SIZE, stratify=y, random_state=_SPLIT_STATE)
    return Base(
        torch.from_numpy(np.ascontiguousarray(x_train)),
        torch.from_numpy(np.ascontiguousarray(y_train)),
        torch.from_numpy(np.ascontiguousarray(x_test)),
        torch.from_numpy(np.ascontiguousarray(y_test)),
    )
