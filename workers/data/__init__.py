"""Datasets for one trial: whole splits as tensors, in-memory batching and CIFAR augmentation.

    >>> from workers.data import load_dataset, batches
    >>> ds = load_dataset("mnist1d", seed=0)          # 3,600 / 400 / 1,000 samples of length 40
    >>> for x, y in batches(ds.train, 128, generator=torch.Generator().manual_seed(0)): ...

MNIST-1D is generated locally (cached under `default_cache_dir()`), digits ships with scikit-learn;
MNIST, Fashion-MNIST and CIFAR are read from `default_data_root()` and never downloaded unless asked.
"""

from workers.data._augment import augment_cifar
from workers.data._batches import batches
from workers.data._load import DATASETS, load_dataset
from workers.data._locations import default_cache_dir, default_data_root
from workers.data._types import Dataset, DatasetError, MissingDataError, Split

__all__ = [
    "DATASETS",
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
