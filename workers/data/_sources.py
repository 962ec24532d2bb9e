"""Datasets from outside the built-in six: a tensor file, an image folder, a torchvision dataset, a plugin.

- `file`: a `.npz` (read with pickle off) or `.safetensors` file holding `x_train`, `y_train`, `x_test`, `y_test`;
  inputs of any float or integer type become float32 as they are (normalise them yourself), labels integers
  from 0. `describe` reads the shapes from the file's headers and only the labels.
- `image_folder`: torchvision's ImageFolder layout, `train/<class>/*.png` and `test/<class>/*.png`; images
  decoded to RGB (or `L` with `grayscale`), resized to `image_size` if set (else all must share one size),
  standardised per channel with the training images' mean and std.
- `torchvision`: a classification dataset class of `torchvision.datasets` read from the data root, never
  downloaded.
- `plugin`: an installed package's entry point (group `actstudy.datasets`): `load(data_root) -> mapping` with
  the four arrays.

A dataset is held in memory, as the built-in ones are, up to `max_dataset_bytes()` decoded (float32); above it an
image folder, a `.safetensors` or an uncompressed `.npz` streams (workers.data._stream: read batch by batch), and
anything else is refused, naming the size, the setting and what would stream.
"""

from __future__ import annotations

import functools
import os
import zipfile
from dataclasses import dataclass, replace
from importlib.metadata import entry_points
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from workers.data._types import DatasetError, MissingDataError

PLUGIN_GROUP = "actstudy.datasets"
KEYS = ("x_train", "y_train", "x_test", "y_test")
MAX_BYTES_ENV = "ACTSTUDY_MAX_DATASET_BYTES"
DEFAULT_MAX_BYTES = 4 * 2**30
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def max_dataset_bytes() -> int:
    """`$ACTSTUDY_MAX_DATASET_BYTES`, else 4 GiB: the largest dataset a trial holds in memory (float32 inputs)."""
    value = os.environ.get(MAX_BYTES_ENV, "").strip()
    return int(value) if value else DEFAULT_MAX_BYTES


@dataclass(frozen=True)
class DataInfo:
    """What validation needs, read without loading the inputs where the format allows."""

    input_shape: tuple[int, ...]
    num_classes: int
    train_samples: int
    test_samples: int
    streamed: bool = False  # above the memory cap: read batch by batch (workers.data._stream)

    @property
    def nbytes(self) -> int:
        return (self.train_samples + self.test_samples) * int(np.prod(self.input_shape)) * 4

    def to_dict(self) -> dict:
        return {"input_shape": list(self.input_shape), "num_classes": self.num_classes, "train_samples": self.train_samples,
                "test_samples": self.test_samples, "bytes": self.nbytes,
                "streamed": self.streamed}


def resolve_path(path: str, data_root: str | os.PathLike | None, default_root) -> Path:
    """An absolute path as it is; a relative one below the data root. `..` is refused either way."""
    if ".." in PurePath(path).parts:
        raise DatasetError(f"dataset.path: {path!r} may not contain '..'")
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(data_root or default_root()).expanduser() / p


def _checked_size(info: DataInfo, what: str, *, not_streamed: str | None = None) -> DataInfo:
    """Above the memory cap a dataset streams if its format allows (`not_streamed`: why it cannot), else is refused."""
    cap = max_dataset_bytes()
    if info.nbytes > cap:
        if not_streamed is None:
            info = replace(info, streamed=True)
        else:
            raise DatasetError(f"dataset: {what} is {info.nbytes / 2**30:.2f} GiB as float32, above the in-memory limit of "
                               f"{cap / 2**30:.2f} GiB ({MAX_BYTES_ENV}), and {not_streamed}")
    if info.train_samples < 2 or info.test_samples < 1:
        raise DatasetError(f"dataset: {what} has {info.train_samples} training and {info.test_samples} test samples: too few")
    return info


def _num_classes(what: str, y_train: np.ndarray, y_test: np.ndarray) -> int:
    for split, y in (("y_train", y_train), ("y_test", y_test)):
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise DatasetError(f"dataset: {what}'s {split} must be a 1-d array of integer labels, got {y.dtype} {y.shape}")
        if y.size and y.min() < 0:
            raise DatasetError(f"dataset: {what}'s {split} has negative labels (classes are 0, 1, ...)")
    return int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1


# ---- tensor files ----

def _npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    out = {}
    with zipfile.ZipFile(path) as z:
        for key in KEYS:
            try:
                f = z.open(f"{key}.npy")
            except KeyError:
                continue
            with f:
                version = np.lib.format.read_magic(f)
                shape, _, dtype = (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(f)
            out[key] = (tuple(shape), dtype)
    return out


def _file_arrays(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in keys}
    from safetensors.numpy import safe_open

    with safe_open(str(path), framework="np") as f:
        return {k: f.get_tensor(k) for k in keys}


def _file_headers(path: Path) -> dict[str, tuple[tuple[int, ...], Any]]:
    if path.suffix == ".npz":
        return _npz_headers(path)
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        return {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys() if k in KEYS}


def describe_file(path: Path) -> DataInfo:
    if not path.is_file():
        raise MissingDataError("file", str(path.parent), [path.name])
    if path.suffix not in (".npz", ".safetensors"):
        raise DatasetError(f"dataset.path: {path.name} is neither .npz nor .safetensors")
    try:
        headers = _file_headers(path)
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise DatasetError(f"dataset.path: {path.name} cannot be read as {path.suffix} ({type(exc).__name__}: {exc})") from None
    missing = [k for k in KEYS if k not in headers]
    if missing:
        raise DatasetError(f"dataset.path: {path.name} lacks {', '.join(missing)} (it needs {', '.join(KEYS)})")
    (xs, _), (ts, _) = headers["x_train"], headers["x_test"]
    if len(xs) < 2 or xs[1:] != ts[1:]:
        raise DatasetError(f"dataset.path: x_train {xs} and x_test {ts} must be (N, ...) with the same sample shape")
    labels = _file_arrays(path, ("y_train", "y_test"))
    for split, x in (("train", xs), ("test", ts)):
        if labels[f"y_{split}"].shape[:1] != x[:1]:
            raise DatasetError(f"dataset.path: x_{split} has {x[0]} samples but y_{split} {labels[f'y_{split}'].shape}")
    info = DataInfo(xs[1:], _num_classes(path.name, labels["y_train"], labels["y_test"]), xs[0], ts[0])
    return _checked_size(info, path.name, not_streamed=_why_not_streamed(path))


def _why_not_streamed(path: Path) -> str | None:
    """None if the file's inputs can be read sample by sample: a .safetensors, or an .npz stored uncompressed."""
    if path.suffix == ".npz":
        with zipfile.ZipFile(path) as z:
            if any(z.getinfo(f"{k}.npy").compress_type != zipfile.ZIP_STORED for k in ("x_train", "x_test")):
                return "a compressed .npz cannot be streamed: save it with np.savez (not savez_compressed) or as .safetensors"
    return None


def load_file(path: Path) -> dict[str, np.ndarray]:
    describe_file(path)
    return _file_arrays(path, KEYS)


# ---- image folders ----

def _image_files(root: Path) -> tuple[list[str], list[tuple[Path, str]]]:
    if not root.is_dir():
        raise MissingDataError("image_folder", str(root.parent), [f"{root.name}/<class>/<image>"])
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files = [(f, c) for c in classes for f in sorted((root / c).iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DatasetError(f"dataset.path: {root} holds no images in class folders ({', '.join(IMAGE_SUFFIXES)})")
    return classes, files


def describe_image_folder(path: Path, image_size: int | None, grayscale: bool) -> DataInfo:
    from PIL import Image

    classes, train = _image_files(path / "train")
    test_classes, test = _image_files(path / "test")
    unknown = sorted(set(test_classes) - set(classes))
    if unknown:
        raise DatasetError(f"dataset.path: test/ has classes train/ lacks: {', '.join(unknown[:5])}")
    with Image.open(train[0][0]) as first:
        w, h = first.size
    size = (image_size, image_size) if image_size else (h, w)
    return _checked_size(DataInfo((1 if grayscale else 3, *size), len(classes), len(train), len(test)), str(path))


def decode_image(path: Path, image_size: int | None, grayscale: bool) -> np.ndarray:
    """One image as uint8 (H, W) or (H, W, 3), resized to image_size × image_size when given."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("L" if grayscale else "RGB")
        if image_size:
            im = im.resize((image_size, image_size), Image.Resampling.BILINEAR)
        return np.asarray(im, dtype=np.uint8)


def to_chw(images: np.ndarray, grayscale: bool) -> np.ndarray:
    """uint8 images (N, H, W[, 3]) as float32 (N, C, H, W) in [0, 1]."""
    x = images.astype(np.float32) / 255.0
    return x[:, None] if grayscale else x.transpose(0, 3, 1, 2)


def _channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.mean(axis=(0, 2, 3), keepdims=True), x.std(axis=(0, 2, 3), keepdims=True) + 1e-6


STATS_IMAGES = 1024  # a streamed folder's mean and std: from this many training images, evenly spaced (all, if fewer)


def _decoded(path: Path, files: list[tuple[Path, str]], image_size: int | None, grayscale: bool) -> np.ndarray:
    images = []
    for f, _ in files:
        a = decode_image(f, image_size, grayscale)
        if images and a.shape != images[0].shape:
            raise DatasetError(f"dataset.image_size: {f.relative_to(path)} is {a.shape[1]}×{a.shape[0]}, the first image "
                               f"{images[0].shape[1]}×{images[0].shape[0]}: set image_size to resize them all")
        images.append(a)
    return to_chw(np.stack(images), grayscale)


def load_image_folder(path: Path, image_size: int | None, grayscale: bool) -> dict[str, np.ndarray]:
    describe_image_folder(path, image_size, grayscale)
    classes, _ = _image_files(path / "train")
    index = {c: i for i, c in enumerate(classes)}
    out = {}
    for split in ("train", "test"):
        _, files = _image_files(path / split)
        out[f"x_{split}"] = _decoded(path, files, image_size, grayscale)
        out[f"y_{split}"] = np.asarray([index[c] for _, c in files], dtype=np.int64)
    mean, std = _channel_stats(out["x_train"])
    for split in ("train", "test"):
        out[f"x_{split}"] = ((out[f"x_{split}"] - mean) / std).astype(np.float32)
    return out


def stream_image_folder(path: Path, image_size: int | None, grayscale: bool) -> dict[str, Any]:
    """Readers of the images (workers.data._stream) and the labels in memory; the mean and std from STATS_IMAGES."""
    from workers.data._stream import ImageReader

    describe_image_folder(path, image_size, grayscale)
    classes, train = _image_files(path / "train")
    _, test = _image_files(path / "test")
    index = {c: i for i, c in enumerate(classes)}
    sample = [train[i] for i in np.linspace(0, len(train) - 1, min(len(train), STATS_IMAGES)).round().astype(int)]
    mean, std = _channel_stats(_decoded(path, sample, image_size, grayscale))
    out: dict[str, Any] = {}
    for split, files in (("train", train), ("test", test)):
        out[f"x_{split}"] = ImageReader([f for f, _ in files], image_size, grayscale, mean, std)
        out[f"y_{split}"] = np.asarray([index[c] for _, c in files], dtype=np.int64)
    return out


def stream_file(path: Path) -> dict[str, Any]:
    """Readers of a tensor file's inputs (memory-mapped or sliced) and its labels in memory."""
    from workers.data._stream import ArrayReader

    describe_file(path)
    labels = _file_arrays(path, ("y_train", "y_test"))
    return {"x_train": ArrayReader(path, "x_train"), "x_test": ArrayReader(path, "x_test"), **labels}


# ---- torchvision's datasets ----

def _torchvision_splits(name: str, root: Path):
    import torchvision.datasets as tvd
    from torchvision.datasets import VisionDataset

    cls = getattr(tvd, name, None)
    if not (isinstance(cls, type) and issubclass(cls, VisionDataset)):
        raise DatasetError(f"dataset.name: torchvision has no dataset {name!r} (e.g. KMNIST, QMNIST, SVHN, STL10, USPS)")
    splits = []
    for train, split in ((True, "train"), (False, "test")):
        try:
            try:
                splits.append(cls(str(root), train=train, download=False))
            except TypeError:  # datasets that name their splits (SVHN, STL10, ...)
                splits.append(cls(str(root), split=split, download=False))
        except TypeError:
            raise DatasetError(f"dataset.name: torchvision's {name} takes neither train= nor split= with download=False: "
                               "not a dataset with a train and a test split (an image folder takes source: image_folder)") from None
        except RuntimeError as exc:  # torchvision's "Dataset not found. You can use download=True ..."
            raise MissingDataError(name, str(root), [f"{name}'s files, as torchvision stores them"],
                                   "nothing is downloaded: put them under the data root") from exc
    return splits


@functools.lru_cache(maxsize=2)
def _torchvision_arrays(name: str, root: str) -> dict[str, np.ndarray]:
    out = {}
    for split, ds in zip(("train", "test"), _torchvision_splits(name, Path(root)), strict=True):
        images, labels = [], []
        for image, label in ds:
            a = np.asarray(image, dtype=np.float32) / 255.0
            images.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
            labels.append(int(label))
        out[f"x_{split}"] = np.stack(images)
        out[f"y_{split}"] = np.asarray(labels, dtype=np.int64)
    return out


def describe_torchvision(name: str, root: Path) -> DataInfo:
    train, test = _torchvision_splits(name, root)
    image, _ = train[0]
    a = np.asarray(image)
    shape = (1, *a.shape) if a.ndim == 2 else (a.shape[2], a.shape[0], a.shape[1])
    classes = len(getattr(train, "classes", []) or []) or int(max(int(t) for t in getattr(train, "targets", getattr(train, "labels", [0])))) + 1
    return _checked_size(DataInfo(shape, classes, len(train), len(test)), name,
                         not_streamed="torchvision datasets are held in memory (an image folder streams)")


def load_torchvision(name: str, root: Path) -> dict[str, np.ndarray]:
    describe_torchvision(name, root)
    return _torchvision_arrays(name, str(root))


# ---- plugins ----

def plugin_datasets() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=PLUGIN_GROUP)}


@functools.lru_cache(maxsize=2)
def _plugin_arrays(name: str, root: str) -> dict[str, np.ndarray]:
    found = plugin_datasets()
    if name not in found:
        raise DatasetError(f"dataset.name: no installed dataset plugin {name!r} (entry-point group {PLUGIN_GROUP}; "
                           f"installed: {', '.join(found) or 'none'})")
    try:
        data = found[name].load()(Path(root))
    except DatasetError:
        raise
    except Exception as exc:  # noqa: BLE001 — someone else's package
        raise DatasetError(f"dataset.name: the dataset plugin {name!r} failed ({type(exc).__name__}: {exc})") from None
    missing = [k for k in KEYS if k not in data]
    if missing:
        raise DatasetError(f"dataset.name: the dataset plugin {name!r} returned no {', '.join(missing)}")
    return {k: np.asarray(data[k]) for k in KEYS}


def describe_plugin(name: str, root: Path) -> DataInfo:
    a = _plugin_arrays(name, str(root))
    info = DataInfo(tuple(a["x_train"].shape[1:]), _num_classes(name, a["y_train"], a["y_test"]), len(a["x_train"]), len(a["x_test"]))
    return _checked_size(info, f"plugin {name!r}", not_streamed="a plugin's arrays are held in memory")


def load_plugin(name: str, root: Path) -> dict[str, np.ndarray]:
    describe_plugin(name, root)
    return _plugin_arrays(name, str(root))
