"""MNIST-1D (Greydanus 2020), generated locally and cached on disk keyed by the generator's arguments.

Generation takes about 2 s on one core; the cache makes every later load (any process on the node) a
file read. The published `get_dataset` downloads, so only `make_dataset` is ever called.
"""

from __future__ import annotations

import hashlib
import json
import random
import warnings
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from workers.data._base import Base
from workers.files import written_whole

# Bump when the cached file's layout changes, so stale files are never read.
_FORMAT = 1
_ARRAYS = ("x", "y", "x_test", "y_test")


def _arguments() -> dict:
    from mnist1d.data import get_dataset_args

    args = get_dataset_args(as_dict=True)
    args.pop("url", None)  # where the published copy lives; does not change what is generated
    return args


def cache_path(cache_dir: Path) -> Path:
    """The cache file for the default MNIST-1D arguments under `cache_dir`."""
    try:
        version = metadata.version("mnist1d")
    except metadata.PackageNotFoundError:
        version = "unknown"
    key = json.dumps({"args": _arguments(), "mnist1d": version, "format": _FORMAT}, sort_keys=True)
    return cache_dir / f"mnist1d-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def load(cache_dir: Path) -> Base:
    path = cache_path(cache_dir)
    arrays = _read(path)
    if arrays is None:
        arrays = _generate()
        _write(path, arrays)
    return Base(
        torch.from_numpy(np.ascontiguousarray(arrays["x"], dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(arrays["y"], dtype=np.int64)),
        torch.from_numpy(np.ascontiguousarray(arrays["x_test"], dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(arrays["y_test"], dtype=np.int64)),
    )


def _generate() -> dict[str, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    # make_dataset reseeds the global `random` and numpy generators; put the caller's state back.
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return {
        "x": np.asarray(data["x"], dtype=np.float32),
        "y": np.asarray(data["y"], dtype=np.int64),
        "x_test": np.asarray(data["x_test"], dtype=np.float32),
        "y_test": np.asarray(data["y_test"], dtype=np.int64),
    }


def _read(path: Path) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in _ARRAYS}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        warnings.warn(f"ignoring unreadable MNIST-1D cache {path} ({exc}); regenerating", stacklevel=3)
        return None


def _write(path: Path, arrays: dict[str, np.ndarray]) -> None:
    # Write to a private temporary file, then rename over the target: concurrent workers on one node
    # each rename a complete file, so a reader never sees a partial one.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with written_whole(path) as handle:
            np.savez(handle, **arrays)
    except OSError as exc:
        warnings.warn(f"could not cache MNIST-1D in {path.parent} ({exc}); it will be regenerated next time", stacklevel=3)
