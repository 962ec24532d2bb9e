"""workers.data: every dataset through the real loaders (tiny files in the real on-disk formats where
the real data would need a download), the validation split, the caches, batching and augmentation.

    .venv/bin/python -m pytest tests/workers/test_data.py -q      # ~10 s on one core
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import mnist1d.data
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import workers.data
from workers.data import (
    DATASETS,
    Dataset,
    DatasetError,
    MissingDataError,
    Split,
    _load,
    _mnist1d,
    augment_cifar,
    batches,
    default_cache_dir,
    default_data_root,
    load_dataset,
)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path_factory):
    # No test reads or writes the user's ~/.actstudy, and none sees another's in-memory cache.
    monkeypatch.setenv("ACTSTUDY_DATA_ROOT", str(tmp_path_factory.mktemp("empty-data-root")))
    monkeypatch.setenv("ACTSTUDY_CACHE_DIR", str(tmp_path_factory.mktemp("unused-cache")))
    _load.clear_memory_cache()
    yield
    _load.clear_memory_cache()


@pytest.fixture(scope="module")
def mnist1d_cache(tmp_path_factory) -> Path:
    """One cache folder for the module, so MNIST-1D is generated once, not per test."""
    return tmp_path_factory.mktemp("mnist1d-cache")


# --- writers for the real on-disk formats ---------------------------------------------------------


def write_idx(folder: Path, n_train: int = 20, n_test: int = 10, *, gz: bool = False) -> dict[str, np.ndarray]:
    """MNIST-format files: image i is filled with (7·i) mod 256, its label is i mod 10."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = ((7 * np.arange(n)) % 256).astype(np.uint8)[:, None, None] * np.ones((1, 28, 28), np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        files = {
            f"{prefix}-images-idx3-ubyte": struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes(),
            f"{prefix}-labels-idx1-ubyte": struct.pack(">II", 2049, n) + labels.tobytes(),
        }
        for name, payload in files.items():
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(payload))
            else:
                (folder / name).write_bytes(payload)
        arrays[prefix] = images, labels
    return arrays


def _cifar_images(n: int, offset: int) -> np.ndarray:
    """(n, 3072) uint8 rows in CIFAR's layout; plane c of image i is filled with 50·c + i + offset."""
    planes = 50 * np.arange(3)[None, :, None] + (np.arange(n) + offset)[:, None, None]
    return (planes * np.ones((1, 1, 1024), np.int64)).reshape(n, 3072).astype(np.uint8)


def write_cifar10(root: Path, per_batch: int = 4, n_test: int = 6) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for b in range(1, 6):
        entry = {
            "batch_label": f"training batch {b} of 5",
            "labels": [(b + i) % 10 for i in range(per_batch)],
            "data": _cifar_images(per_batch, offset=10 * b),
            "filenames": [f"img_{b}_{i}.png" for i in range(per_batch)],
        }
        (folder / f"data_batch_{b}").write_bytes(pickle.dumps(entry, protocol=2))
    test = {"batch_label": "testing batch 1 of 1", "labels": [i % 10 for i in range(n_test)], "data": _cifar_images(n_test, 0)}
    (folder / "test_batch").write_bytes(pickle.dumps(test, protocol=2))


def write_cifar100(root: Path, n_train: int = 20, n_test: int = 6) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", n_train), ("test", n_test)):
        entry = {
            "filenames": [f"{name}_{i}.png" for i in range(n)],
            "batch_label": f"{name} batch",
            "fine_labels": [(37 * i) % 100 for i in range(n)],
            "coarse_labels": [i % 20 for i in range(n)],
            "data": _cifar_images(n, 0),
        }
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))


def assert_well_formed(ds: Dataset, name: str, input_shape: tuple[int, ...], num_classes: int) -> None:
    assert ds.name == name and ds.input_shape == input_shape and ds.num_classes == num_classes
    for split in (ds.train, ds.val, ds.test):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert tuple(split.x.shape[1:]) == input_shape and split.x.shape[0] == split.y.shape[0]
        assert int(split.y.min()) >= 0 and int(split.y.max()) < num_classes


# --- MNIST-1D -------------------------------------------------------------------------------------


def test_mnist1d_shapes(mnist1d_cache):
    ds = load_dataset("mnist1d", cache_dir=mnist1d_cache)
    assert_well_formed(ds, "mnist1d", (40,), 10)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (3600, 400, 1000)
    assert set(ds.train.y.tolist()) == set(range(10))
    assert DATASETS[0] == "mnist1d" and load_dataset.__kwdefaults__["val_fraction"] == 0.1


def test_mnist1d_matches_the_package_generator(mnist1d_cache):
    ds = load_dataset("mnist1d", cache_dir=mnist1d_cache)
    ref = mnist1d.data.make_dataset(mnist1d.data.get_dataset_args())
    torch.testing.assert_close(ds.test.x, torch.from_numpy(ref["x_test"]).float())
    assert torch.equal(ds.test.y, torch.from_numpy(ref["y_test"]))
    # train + val is the package's training set, split without loss or duplication
    both = torch.cat([ds.train.x, ds.val.x])
    assert both.shape == (4000, 40)
    torch.testing.assert_close(both.sum(0), torch.from_numpy(ref["x"]).float().sum(0), atol=1e-3, rtol=1e-5)
    assert torch.equal(torch.bincount(torch.cat([ds.train.y, ds.val.y])), torch.bincount(torch.from_numpy(ref["y"])))


def test_split_is_deterministic_by_seed(mnist1d_cache):
    a = load_dataset("mnist1d", seed=3, cache_dir=mnist1d_cache)
    _load.clear_memory_cache()
    b = load_dataset("mnist1d", seed=3, cache_dir=mnist1d_cache)
    c = load_dataset("mnist1d", seed=4, cache_dir=mnist1d_cache)
    assert torch.equal(a.val.x, b.val.x) and torch.equal(a.train.y, b.train.y)
    assert not torch.equal(a.val.x, c.val.x)
    assert torch.equal(a.test.x, c.test.x)  # the test split never depends on the seed
    # train and val partition the training set: no sample in both
    train_rows = {tuple(r) for r in a.train.x.numpy().round(5).tolist()}
    assert not any(tuple(r) in train_rows for r in a.val.x.numpy().round(5).tolist())


def test_val_fraction_sets_the_val_size(mnist1d_cache):
    ds = load_dataset("mnist1d", val_fraction=0.25, cache_dir=mnist1d_cache)
    assert (len(ds.train), len(ds.val)) == (3000, 1000)
    ds = load_dataset("mnist1d", val_fraction=0.5, cache_dir=mnist1d_cache)
    assert (len(ds.train), len(ds.val)) == (2000, 2000)


def test_disk_cache_is_reused_without_regenerating(tmp_path, monkeypatch):
    np.random.seed(123)
    first = load_dataset("mnist1d", cache_dir=tmp_path)
    assert np.random.rand() == np.random.RandomState(123).rand()  # generating left the global state alone
    files = list(tmp_path.glob("mnist1d-*.npz"))
    assert files == [_mnist1d.cache_path(tmp_path.resolve())]
    assert not list(tmp_path.glob("*.tmp"))  # the temporary file was renamed, not left behind

    def refuse(*args, **kwargs):
        raise AssertionError("make_dataset called although the disk cache holds the data")

    monkeypatch.setattr(mnist1d.data, "make_dataset", refuse)
    _load.clear_memory_cache()
    second = load_dataset("mnist1d", cache_dir=tmp_path)
    assert torch.equal(first.train.x, second.train.x) and torch.equal(first.test.y, second.test.y)


def test_memory_cache_serves_repeated_loads(tmp_path, monkeypatch, mnist1d_cache):
    load_dataset("mnist1d", cache_dir=mnist1d_cache)  # makes sure the module's cache file exists
    cached = _mnist1d.cache_path(mnist1d_cache.resolve())
    (tmp_path / cached.name).write_bytes(cached.read_bytes())
    load_dataset("mnist1d", cache_dir=tmp_path)
    for file in tmp_path.glob("mnist1d-*.npz"):
        file.unlink()
    monkeypatch.setattr(mnist1d.data, "make_dataset", lambda *a, **k: pytest.fail("regenerated"))
    again = load_dataset("mnist1d", seed=1, cache_dir=tmp_path)  # neither disk nor generator needed
    assert len(again.train) == 3600


def test_unreadable_disk_cache_is_regenerated(tmp_path):
    path = _mnist1d.cache_path(tmp_path.resolve())
    path.write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="unreadable MNIST-1D cache"):
        ds = load_dataset("mnist1d", cache_dir=tmp_path)
    assert len(ds.test) == 1000
    with np.load(path) as npz:
        assert npz["x"].shape == (4000, 40)


def test_default_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ACTSTUDY_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("ACTSTUDY_DATA_ROOT", str(tmp_path / "d"))
    assert default_cache_dir() == tmp_path / "c" and default_data_root() == tmp_path / "d"
    monkeypatch.delenv("ACTSTUDY_CACHE_DIR")
    monkeypatch.delenv("ACTSTUDY_DATA_ROOT")
    assert default_cache_dir() == Path.home() / ".actstudy" / "cache"
    assert default_data_root() == Path.home() / ".actstudy" / "data"


# --- digits ---------------------------------------------------------------------------------------


def test_digits_shapes_range_and_stratification():
    ds = load_dataset("digits")
    assert_well_formed(ds, "digits", (1, 8, 8), 10)
    assert (len(ds.train) + len(ds.val), len(ds.test)) == (1437, 360)
    assert len(ds.val) == 144
    assert float(ds.train.x.min()) == 0.0 and float(ds.train.x.max()) == 1.0
    train_counts = torch.bincount(torch.cat([ds.train.y, ds.val.y]), minlength=10).double()
    test_counts = torch.bincount(ds.test.y, minlength=10).double()
    # stratified: every class is split 80 / 20 up to rounding
    assert torch.all((test_counts - 0.2 * (train_counts + test_counts)).abs() <= 1.0)


def test_digits_test_split_is_fixed_and_val_follows_seed():
    a, b = load_dataset("digits", seed=0), load_dataset("digits", seed=1)
    assert torch.equal(a.test.x, b.test.x)
    assert not torch.equal(a.val.y, b.val.y) or not torch.equal(a.val.x, b.val.x)


# --- MNIST / Fashion-MNIST through torchvision ----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "folder", "mean", "std", "gz"),
    [("mnist", "MNIST", 0.1307, 0.3081, False), ("fashion_mnist", "FashionMNIST", 0.2860, 0.3530, True)],
)
def test_mnist_family_from_idx_files(tmp_path, name, folder, mean, std, gz):
    written = write_idx(tmp_path / folder / "raw", n_train=20, n_test=10, gz=gz)
    ds = load_dataset(name, data_root=tmp_path, val_fraction=0.2)
    assert_well_formed(ds, name, (1, 28, 28), 10)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (16, 4, 10)
    images, labels = written["t10k"]
    expected = (torch.from_numpy(images).float() / 255 - mean) / std
    torch.testing.assert_close(ds.test.x[:, 0], expected)
    assert ds.test.y.tolist() == labels.tolist()
    # train + val hold every training sample once, each with its own label
    pixels = torch.cat([ds.train.x, ds.val.x])[:, 0, 0, 0] * std + mean
    ids = torch.round(pixels * 255 / 7).long()
    assert sorted(ids.tolist()) == list(range(20))
    assert torch.equal(torch.cat([ds.train.y, ds.val.y]), ids % 10)


def test_mnist_reads_the_default_data_root(tmp_path, monkeypatch):
    write_idx(tmp_path / "MNIST" / "raw")
    monkeypatch.setenv("ACTSTUDY_DATA_ROOT", str(tmp_path))
    assert len(load_dataset("mnist", val_fraction=0.5).test) == 10


@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_missing_mnist_names_folder_and_files(tmp_path, name, folder):
    with pytest.raises(MissingDataError) as info:
        load_dataset(name, data_root=tmp_path)
    message = str(info.value)
    assert str(tmp_path / folder / "raw") in message
    assert "train-images-idx3-ubyte" in message and "t10k-labels-idx1-ubyte" in message
    assert "ACTSTUDY_DATA_ROOT" in message and "download" in message
    assert info.value.folder == str(tmp_path / folder / "raw")


def test_missing_data_error_survives_pickling(tmp_path):
    with pytest.raises(MissingDataError) as info:
        load_dataset("cifar10", data_root=tmp_path)
    copy = pickle.loads(pickle.dumps(info.value))
    assert isinstance(copy, MissingDataError) and str(copy) == str(info.value) and copy.files == info.value.files


# --- CIFAR ----------------------------------------------------------------------------------------


def test_cifar10_from_pickled_batches(tmp_path):
    write_cifar10(tmp_path, per_batch=4, n_test=6)
    ds = load_dataset("cifar10", data_root=tmp_path, val_fraction=0.25)
    assert_well_formed(ds, "cifar10", (3, 32, 32), 10)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (15, 5, 6)
    mean, std = torch.tensor([0.4914, 0.4822, 0.4465]), torch.tensor([0.2470, 0.2435, 0.2616])
    raw = ds.test.x * std.view(1, 3, 1, 1) + mean.view(1, 3, 1, 1)
    expected = (50 * torch.arange(3)[None, :] + torch.arange(6)[:, None]).float() / 255  # (image, channel)
    torch.testing.assert_close(raw, expected[:, :, None, None].expand(6, 3, 32, 32), atol=1e-5, rtol=0)
    assert ds.test.y.tolist() == [0, 1, 2, 3, 4, 5]
    # every batch file contributed: red-plane values 10·b + i for b = 1..5, i < 4
    red = torch.cat([ds.train.x, ds.val.x])[:, 0, 0, 0] * std[0] + mean[0]
    assert sorted(torch.round(red * 255).long().tolist()) == sorted(10 * b + i for b in range(1, 6) for i in range(4))


def test_cifar100_uses_fine_labels(tmp_path):
    write_cifar100(tmp_path, n_train=20, n_test=6)
    ds = load_dataset("cifar100", data_root=tmp_path)
    assert_well_formed(ds, "cifar100", (3, 32, 32), 100)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (18, 2, 6)
    assert ds.test.y.tolist() == [(37 * i) % 100 for i in range(6)]
    assert sorted(torch.cat([ds.train.y, ds.val.y]).tolist()) == sorted((37 * i) % 100 for i in range(20))


@pytest.mark.parametrize(
    ("name", "folder", "file"), [("cifar10", "cifar-10-batches-py", "data_batch_1"), ("cifar100", "cifar-100-python", "train")]
)
def test_missing_cifar_names_folder_and_files(tmp_path, name, folder, file):
    with pytest.raises(MissingDataError) as info:
        load_dataset(name, data_root=tmp_path)
    assert str(tmp_path / folder) in str(info.value) and file in str(info.value)
    assert "ACTSTUDY_DATA_ROOT" in str(info.value)


def test_partial_cifar10_names_only_the_missing_batches(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(MissingDataError) as info:
        load_dataset("cifar10", data_root=tmp_path)
    assert info.value.files == ("data_batch_3",)


def test_malformed_cifar_batch_is_a_dataset_error(tmp_path):
    write_cifar100(tmp_path)
    bad = {"data": np.zeros((2, 10), np.uint8), "fine_labels": [0, 1]}  # rows too short for 3×32×32
    (tmp_path / "cifar-100-python" / "test").write_bytes(pickle.dumps(bad))
    with pytest.raises(DatasetError, match="malformed"):
        load_dataset("cifar100", data_root=tmp_path)


def test_cifar_download_goes_through_torchvision_only_when_allowed(tmp_path, monkeypatch):
    import torchvision.datasets

    calls = []

    class FakeCIFAR10:  # stands in for the network: unpacks the batches where torchvision would
        def __init__(self, root, train=True, download=False):
            calls.append((root, download))
            write_cifar10(Path(root))

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    with pytest.raises(MissingDataError):
        load_dataset("cifar10", data_root=tmp_path)
    assert calls == []
    ds = load_dataset("cifar10", data_root=tmp_path, download=True)
    assert calls == [(str(tmp_path.resolve()), True)] and len(ds.test) == 6


# --- options --------------------------------------------------------------------------------------


def test_unknown_dataset_lists_the_valid_names():
    with pytest.raises(DatasetError) as info:
        load_dataset("imagenet")
    assert "imagenet" in str(info.value) and all(name in str(info.value) for name in DATASETS)


def test_names_are_case_and_dash_insensitive(tmp_path):
    write_idx(tmp_path / "FashionMNIST" / "raw")
    assert load_dataset("Fashion-MNIST", data_root=tmp_path).name == "fashion_mnist"


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 0.51, 1.0, float("nan"), True, "0.1", None])
def test_bad_val_fraction_is_named(bad):
    with pytest.raises(DatasetError, match="val_fraction"):
        load_dataset("digits", val_fraction=bad)


@pytest.mark.parametrize("bad", [-1, 1.5, "0", True, 2**63])
def test_bad_seed_is_named(bad):
    with pytest.raises(DatasetError, match="seed"):
        load_dataset("digits", seed=bad)


def test_val_fraction_too_small_for_tiny_data(tmp_path):
    write_idx(tmp_path / "MNIST" / "raw", n_train=4)
    with pytest.raises(DatasetError, match="val_fraction"):
        load_dataset("mnist", data_root=tmp_path, val_fraction=0.1)


def test_dataset_to_moves_every_split():
    ds = load_dataset("digits").to("meta")
    assert all(s.x.device.type == "meta" and s.y.device.type == "meta" for s in (ds.train, ds.val, ds.test))
    assert ds.input_shape == (1, 8, 8) and ds.num_classes == 10


def test_public_surface():
    assert set(workers.data.__all__) == {
        "DATA_SOURCES", "DATASETS", "IMAGE_DATASETS", "DataInfo", "Dataset", "DatasetError", "MissingDataError", "Split",
        "augment_cifar", "batches", "default_cache_dir", "default_data_root", "describe_dataset", "load_dataset",
        "max_dataset_bytes", "plugin_datasets",
    }
    assert all(callable(getattr(workers.data, name)) or name.isupper() for name in workers.data.__all__)  # lazy ones too
    assert DATASETS == ("mnist1d", "digits", "mnist", "fashion_mnist", "cifar10", "cifar100")
    assert workers.data.IMAGE_DATASETS == ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100")
    assert issubclass(MissingDataError, DatasetError) and issubclass(DatasetError, ValueError)


# --- batches --------------------------------------------------------------------------------------


def _indexed_split(n: int) -> Split:
    return Split(torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 3), torch.arange(n))


@pytest.mark.parametrize("shuffle", [True, False])
def test_batches_cover_every_sample_once(shuffle):
    split = _indexed_split(103)
    seen = []
    for x, y in batches(split, 10, generator=torch.Generator().manual_seed(0), shuffle=shuffle):
        assert torch.equal(x[:, 0].long(), y)  # inputs stay with their labels
        seen.append(y)
    assert [len(y) for y in seen] == [10] * 10 + [3]
    order = torch.cat(seen)
    assert sorted(order.tolist()) == list(range(103))
    assert torch.equal(order, torch.arange(103)) != shuffle


def test_batches_drop_last():
    sizes = [len(y) for _, y in batches(_indexed_split(103), 10, generator=torch.Generator().manual_seed(0), drop_last=True)]
    assert sizes == [10] * 10


def test_batches_are_deterministic_by_generator_seed():
    def epoch(seed):
        return torch.cat([y for _, y in batches(_indexed_split(50), 8, generator=torch.Generator().manual_seed(seed))])

    assert torch.equal(epoch(1), epoch(1))
    assert not torch.equal(epoch(1), epoch(2))
    g = torch.Generator().manual_seed(1)
    first, second = (torch.cat([y for _, y in batches(_indexed_split(50), 8, generator=g)]) for _ in range(2))
    assert not torch.equal(first, second)  # successive epochs from one generator differ


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_batches_reject_bad_batch_size(bad):
    with pytest.raises(ValueError, match="batch_size"):
        next(batches(_indexed_split(5), bad, generator=None))


# --- augment_cifar --------------------------------------------------------------------------------


def _which_crop(out: torch.Tensor, image: torch.Tensor, pad: int, mode: str) -> set[tuple[int, int, bool]]:
    padded = F.pad(image[None], (pad,) * 4, mode=mode)[0]
    found = set()
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[:, dy : dy + 32, dx : dx + 32]
            for flip in (False, True):
                if torch.equal(out, crop.flip(-1) if flip else crop):
                    found.add((dy, dx, flip))
    return found


@pytest.mark.parametrize(("padding", "mode"), [("reflect", "reflect"), ("zeros", "constant")])
def test_augment_cifar_is_a_crop_of_the_padded_image_maybe_mirrored(padding, mode):
    x = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    out = augment_cifar(x, torch.Generator().manual_seed(1), padding=padding)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert not torch.equal(out, x)
    choices = []
    for i in range(16):
        found = _which_crop(out[i], x[i], 4, mode)
        assert len(found) == 1, f"image {i} is not a single crop/flip of its padded input"
        choices.append(found.pop())
    assert any(flip for *_, flip in choices) and not all(flip for *_, flip in choices)
    assert len({(dy, dx) for dy, dx, _ in choices}) > 1


def test_augment_cifar_is_deterministic_by_generator():
    x = torch.randn(32, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    a = augment_cifar(x, torch.Generator().manual_seed(5))
    b = augment_cifar(x, torch.Generator().manual_seed(5))
    c = augment_cifar(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_augment_cifar_rejects_non_batches():
    with pytest.raises(ValueError, match="N, C, H, W"):
        augment_cifar(torch.zeros(3, 32, 32), torch.Generator())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batches_and_augmentation_stay_on_the_gpu():
    ds = load_dataset("digits").to("cuda")
    g = torch.Generator().manual_seed(0)  # a CPU generator drives GPU data
    ys = [y for x, y in batches(ds.train, 256, generator=g)]
    assert all(y.is_cuda for y in ys) and torch.cat(ys).numel() == len(ds.train)
    x = torch.randn(8, 3, 32, 32, device="cuda")
    cpu = augment_cifar(x.cpu(), torch.Generator().manual_seed(3))
    gpu = augment_cifar(x, torch.Generator().manual_seed(3))
    assert gpu.is_cuda and torch.equal(gpu.cpu(), cpu)
    on_device = augment_cifar(x, torch.Generator(device="cuda").manual_seed(3))
    assert on_device.is_cuda and on_device.shape == x.shape
