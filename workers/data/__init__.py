"""Datasets for one trial: whole splits as tensors, in-memory batching and CIFAR augmentation.

    >>> from workers.data import load_dataset, batches
    >>> ds = load_dataset("mnist1d", seed=0)          # 3,600 / 400 / 1,000 samples of length 40
    >>> for x, y in batches(ds.train, 128, generator=torch.Generator().manual_seed(0)): ...

MNIST-1D is generated locally (cached under `default_cache_dir()`), digits ships with scikit-learn;
MNIST, Fashion-MNIST and CIFAR are read from `default_data_root()` and never downloaded unless asked.
"""

import importlib

from workers.data._catalog import DATA_SOURCES, DATASETS, IMAGE_DATASETS
from workers.data._locations import default_cache_dir, default_data_root
from workers.data._types import Dataset, DatasetError, MissingDataError, Split

# The loaders need torch; they load on first use, so reading the names (the CLI, a spec) stays light.
_LAZY = {"augment_cifar": "_augment", "batches": "_batches", "load_dataset": "_load", "describe_dataset": "_load",
         "DataInfo": "_sources", "max_dataset_bytes": "_sources", "plugin_datasets": "_sources"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DATA_SOURCES",
    "DATASETS",
    "DataInfo",
    "describe_dataset",
    "max_dataset_bytes",
    "plugin_datasets",
    "IMAGE_DATASETS",
    "Dataset",
    "DatasetError",
    "MissingDataError",
    "Split",
    "augment_cifar",
    "batches",
    "default_cache_dir",
    "default_data_root",
    "load_dataset",
]
