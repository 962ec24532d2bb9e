"""CIFAR-10 and CIFAR-100, read from the python-pickle batches that torchvision's download unpacks.

The batches are read directly rather than through torchvision's classes, which insist on the md5 of
every batch file (so no small file in the real format could be read).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from workers.data._base import Base, normalise_images
from workers.data._types import DatasetError, MissingDataError


@dataclass(frozen=True)
class _Source:
    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    label_key: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    tv_class: str  # the torchvision class that downloads it

    @property
    def files(self) -> tuple[str, ...]:
        return (*self.train, *self.test)


SOURCES = {
    "cifar10": _Source(
        "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), "labels",
        (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), "CIFAR10",
    ),
    "cifar100": _Source(
        "cifar-100-python", ("train",), ("test",), "fine_labels",
        (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), "CIFAR100",
    ),
}

MISSING_HINT = (
    "Unpack the python version of the dataset there, or point the data root elsewhere with "
    "ACTSTUDY_DATA_ROOT or the spec's dataset data_root; downloading happens only when explicitly "
    "allowed (download=True)."
)


def folder(name: str, root: Path) -> Path:
    return root / SOURCES[name].folder


def load(name: str, root: Path, download: bool) -> Base:
    source = SOURCES[name]
    where = folder(name, root)
    if _missing(source, where) and download:
        _download(name, source, root)
    missing = _missing(source, where)
    if missing:
        raise MissingDataError(name, str(where), missing, MISSING_HINT)
    train_x, train_y = _read(name, source, [where / f for f in source.train])
    test_x, test_y = _read(name, source, [where / f for f in source.test])
    return Base(
        normalise_images(train_x, source.mean, source.std),
        train_y,
        normalise_images(test_x, source.mean, source.std),
        test_y,
    )


def _missing(source: _Source, where: Path) -> list[str]:
    return [f for f in source.files if not (where / f).is_file()]


def _download(name: str, source: _Source, root: Path) -> None:
    import torchvision.datasets

    try:
        getattr(torchvision.datasets, source.tv_class)(root=str(root), train=True, download=True)
    except Exception as exc:  # network, checksum, disk: all end the same way for the caller
        raise DatasetError(f"could not download {name} into {root}: {exc}") from exc


def _read(name: str, source: _Source, paths: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for path in paths:
        try:
            with open(path, "rb") as handle:
                # The batches are Python 2 pickles; latin1 maps their byte strings one to one.
                entry = pickle.load(handle, encoding="latin1")
            data = np.asarray(entry["data"], dtype=np.uint8)
            targets = np.asarray(entry[source.label_key], dtype=np.int64)
        except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"could not read {name} batch {path}: {exc!r}") from exc
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or targets.shape != (data.shape[0],):
            raise DatasetError(
                f"{name} batch {path} is malformed: data {data.shape}, {source.label_key} {targets.shape}; "
                "expected data (N, 3072) and N labels"
            )
        images.append(data.reshape(-1, 3, 32, 32))  # rows hold the red, green, blue planes in turn
        labels.append(targets)
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))
