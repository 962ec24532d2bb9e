"""`load_dataset`: name → Dataset, with a per-process cache of each source's train and test sets."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import torch

from workers.data import _cifar, _digits, _mnist, _mnist1d, _sources
from workers.data._base import Base
from workers.data._catalog import DATA_SOURCES, DATASETS, SHAPES
from workers.data._locations import default_cache_dir, default_data_root
from workers.data._split import check_seed, check_val_fraction, split_train_val
from workers.data._types import Dataset, DatasetError, Split


def load_dataset(
    name: str,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    data_root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = False,
    source: str = "builtin",
    path: str | None = None,
    image_size: int | None = None,
    grayscale: bool = False,
    stream_workers: int = 0,
) -> Dataset:
    """Load `name` as train / val / test splits on the CPU.

    The validation split is `val_fraction` of the dataset's training set, chosen by `seed`; the test
    split is the dataset's own. `data_root` (default `default_data_root()`) holds downloaded datasets,
    `cache_dir` (default `default_cache_dir()`) the generated MNIST-1D. Nothing is downloaded unless
    `download=True`; missing files raise `MissingDataError`, naming the folder and files expected.
    Repeated loads in one process reuse the source tensors; treat them as read-only.

    Other `source`s (workers.data._sources): `file` and `image_folder` read `path` (relative: below the data
    root), `torchvision` and `plugin` the dataset `name` from the data root. Above the memory cap an image folder or
    a tensor file streams: its splits' inputs are read batch by batch by `stream_workers` processes.
    """
    seed = check_seed(seed)
    if source != "builtin":
        check_val_fraction(val_fraction)
        base, info = _cached_source(source, name, _source_location(source, path, data_root), image_size, grayscale,
                                    _sources.max_dataset_bytes())
        train, val = split_train_val(base.train_x, base.train_y, seed=seed, val_fraction=val_fraction)
        label = Path(path).stem if path else name
        data = Dataset(label, train, val, Split(base.test_x, base.test_y), info.input_shape, info.num_classes)
        return data.with_stream_workers(stream_workers) if info.streamed else data
    key = canonical_name(name)
    val_fraction = check_val_fraction(val_fraction)
    if not isinstance(download, bool):
        raise DatasetError(f"download must be true or false, got {download!r}")
    if key == "mnist1d":
        location = _resolve(cache_dir, default_cache_dir)
    elif key == "digits":
        location = ""
    else:
        location = _resolve(data_root, default_data_root)
    base = _cached_base(key, location, download)
    train, val = split_train_val(base.train_x, base.train_y, seed=seed, val_fraction=val_fraction)
    input_shape, num_classes = SHAPES[key]
    return Dataset(key, train, val, Split(base.test_x, base.test_y), input_shape, num_classes)


def describe_dataset(source: str, name: str, *, path: str | None = None, data_root: str | os.PathLike | None = None,
                     image_size: int | None = None, grayscale: bool = False) -> _sources.DataInfo:
    """Sample shape, classes and sizes, read as lightly as the format allows (headers for tensor files, the first
    image for a folder); DatasetError naming the field when the data is not there or not usable."""
    if source == "builtin":
        shape, classes = SHAPES[canonical_name(name)]
        return _sources.DataInfo(shape, classes, 0, 0)
    return _describe(source, name, _source_location(source, path, data_root), image_size, grayscale)


def _source_location(source: str, path: str | None, data_root) -> str:
    if source not in DATA_SOURCES:
        raise DatasetError(f"dataset.source: {source!r} is not one of {', '.join(DATA_SOURCES)}")
    if source in ("file", "image_folder"):
        if not path:
            raise DatasetError(f"dataset.path: a {source} dataset needs a path")
        return str(_sources.resolve_path(path, data_root, default_data_root).resolve())
    return _resolve(data_root, default_data_root)


def _describe(source: str, name: str, location: str, image_size: int | None, grayscale: bool) -> _sources.DataInfo:
    where = Path(location)
    if source == "file":
        return _sources.describe_file(where)
    if source == "image_folder":
        return _sources.describe_image_folder(where, image_size, grayscale)
    if source == "torchvision":
        return _sources.describe_torchvision(name, where)
    return _sources.describe_plugin(name, where)


@functools.lru_cache(maxsize=2)
def _cached_source(source: str, name: str, location: str, image_size: int | None, grayscale: bool,
                   cap: int) -> tuple[Base, _sources.DataInfo]:  # the memory cap decides in memory or streamed: a key
    where = Path(location)
    info = _describe(source, name, location, image_size, grayscale)
    if info.streamed:  # above the memory cap: readers, not arrays (only the formats _describe let stream)
        from workers.data._stream import StreamedInputs

        readers = _sources.stream_file(where) if source == "file" else _sources.stream_image_folder(where, image_size, grayscale)
        y = {k: torch.from_numpy(readers[k].astype(np.int64)) for k in ("y_train", "y_test")}
        x = {k: StreamedInputs(readers[f"x_{k[2:]}"], torch.arange(len(y[k])), tuple(info.input_shape)) for k in ("y_train", "y_test")}
        return Base(x["y_train"], y["y_train"], x["y_test"], y["y_test"]), info
    if source == "file":
        arrays = _sources.load_file(where)
    elif source == "image_folder":
        arrays = _sources.load_image_folder(where, image_size, grayscale)
    elif source == "torchvision":
        arrays = _sources.load_torchvision(name, where)
    else:
        arrays = _sources.load_plugin(name, where)
    x = {k: torch.from_numpy(np.ascontiguousarray(arrays[k], dtype=np.float32)) for k in ("x_train", "x_test")}
    y = {k: torch.from_numpy(np.ascontiguousarray(arrays[k]).astype(np.int64)) for k in ("y_train", "y_test")}
    return Base(x["x_train"], y["y_train"], x["x_test"], y["y_test"]), info


def canonical_name(name: object) -> str:
    key = name.strip().lower().replace("-", "_") if isinstance(name, str) else name
    if key not in SHAPES:
        raise DatasetError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    return key


def _resolve(path: str | os.PathLike | None, default) -> str:
    return str((Path(path) if path is not None else default()).expanduser().resolve())


@functools.lru_cache(maxsize=4)
def _cached_base(key: str, location: str, download: bool) -> Base:
    if key == "mnist1d":
        base = _mnist1d.load(Path(location))
    elif key == "digits":
        base = _digits.load()
    elif key in _mnist.SOURCES:
        base = _mnist.load(key, Path(location), download)
    else:
        base = _cifar.load(key, Path(location), download)
    _check(key, base)
    return base


def _check(key: str, base: Base) -> None:
    input_shape, num_classes = SHAPES[key]
    for split, x, y in (("train", base.train_x, base.train_y), ("test", base.test_x, base.test_y)):
        if tuple(x.shape[1:]) != input_shape or x.dtype != torch.float32:
            shape = ", ".join(map(str, input_shape))
            raise DatasetError(f"{key} {split} inputs are {x.dtype} {tuple(x.shape)}, expected float32 (N, {shape})")
        if y.dtype != torch.int64 or y.shape != (x.shape[0],):
            raise DatasetError(f"{key} {split} labels are {y.dtype} {tuple(y.shape)}, expected int64 ({x.shape[0]},)")
        if y.numel() and not (0 <= int(y.min()) and int(y.max()) < num_classes):
            raise DatasetError(f"{key} {split} labels fall outside [0, {num_classes})")


def clear_memory_cache() -> None:
    """Forget the source tensors this process holds (the disk cache stays)."""
    _cached_base.cache_clear()
    _cached_source.cache_clear()
