"""MNIST and Fashion-MNIST, read through torchvision from `<root>/<Class>/raw` in the idx-ubyte format.

torchvision reads only the decompressed files; where only the `.gz` ones are present they are
decompressed in place first, as torchvision's own download would have done.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import torch

from workers.data._base import Base, normalise_images
from workers.data._types import DatasetError, MissingDataError
from workers.files import written_whole

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# name → (torchvision class, per-channel mean, std of the training images in [0, 1])
SOURCES = {
    "mnist": ("MNIST", (0.1307,), (0.3081,)),
    "fashion_mnist": ("FashionMNIST", (0.2860,), (0.3530,)),
}

MISSING_HINT = (
    "Put the files there (each may also be gzip-compressed, with .gz), or point the data root elsewhere "
    "with ACTSTUDY_DATA_ROOT or the spec's dataset data_root; downloading happens only when explicitly "
    "allowed (download=True)."
)


def raw_folder(name: str, root: Path) -> Path:
    return root / SOURCES[name][0] / "raw"


def load(name: str, root: Path, download: bool) -> Base:
    import torchvision.datasets

    class_name, mean, std = SOURCES[name]
    folder = raw_folder(name, root)
    _decompress_missing(name, folder)
    cls = getattr(torchvision.datasets, class_name)
    try:
        train = cls(root=str(root), train=True, download=download)
        test = cls(root=str(root), train=False, download=download)
    except RuntimeError as exc:
        if "not found" in str(exc).lower():
            raise MissingDataError(name, str(folder), FILES, MISSING_HINT) from exc
        raise DatasetError(f"could not {'download' if download else 'read'} {name} under {folder}: {exc}") from exc
    except (OSError, ValueError, TypeError) as exc:
        raise DatasetError(f"could not read {name} from {folder}: {exc}") from exc
    # .data / .targets hold the whole split as tensors; no per-sample __getitem__.
    return Base(
        normalise_images(train.data.unsqueeze(1), mean, std),
        train.targets.to(dtype=torch.int64),
        normalise_images(test.data.unsqueeze(1), mean, std),
        test.targets.to(dtype=torch.int64),
    )


def _decompress_missing(name: str, folder: Path) -> None:
    for file in FILES:
        target, packed = folder / file, folder / f"{file}.gz"
        if target.is_file() or not packed.is_file():
            continue
        try:
            with written_whole(target) as out, gzip.open(packed, "rb") as src:
                shutil.copyfileobj(src, out)
        except (OSError, EOFError) as exc:
            raise DatasetError(
                f"{name}: found {packed} but could not decompress it next to itself ({exc}); "
                f"decompress the .gz files in {folder} or point the data root at a writable copy"
            ) from exc
