"""Models and data from outside the built-ins, as a study uses them: timm's and torchvision's models swapped site
by site (one instance per call, parameters counted), functional activations reported, a model without activations
refused, the parameter cap checked on the meta device; tensor files, image folders and torchvision's dataset files
read as arrays, with errors that name the field."""

from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pytest
import torch
from torch import nn

import activations
from tests.utils.sources import RESNET_KW, VIT_KW, write_image_folder
from workers.data import DataInfo, DatasetError, describe_dataset, load_dataset
from workers.models import ModelSourceError, NoActivationSites, build_model_reporting, count_parameters


def _instances(model: nn.Module, kind: type) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, kind)]


@pytest.mark.parametrize(("name", "kwargs", "sites"), [("resnet18", RESNET_KW, 9), ("vit_tiny_patch16_224", VIT_KW, 2)])
def test_a_timm_model_gets_one_instance_of_the_activation_per_site(name, kwargs, sites):
    model, report = build_model_reporting(name, source="timm", kwargs=kwargs, input_shape=(3, 32, 32), num_classes=10,
                                          activation="pwlu")
    pwlus = _instances(model, activations.create("pwlu").__class__)
    assert len(report.sites) == sites == len(pwlus) == len({id(m) for m in pwlus})
    assert report.coverage() == f"{sites} of {sites} activation calls swapped"
    assert not _instances(model, nn.ReLU) and not _instances(model, nn.GELU)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_torchvisions_shared_relu_becomes_one_instance_per_call_site():
    # torchvision's BasicBlock calls its one `relu` twice; the stem's relu once: 1 + 8 blocks × 2 = 17 call sites.
    model, report = build_model_reporting("resnet18", source="torchvision", input_shape=(3, 32, 32), num_classes=10,
                                          activation="pwlu", activation_params={"channelwise": True, "segments": 8})
    pwlus = _instances(model, activations.create("pwlu").__class__)
    assert len(report.sites) == len(pwlus) == 17
    widths = sorted(s.shape[s.channel_axis] for s in report.sites)
    assert widths == sorted([64] * 5 + [128] * 4 + [256] * 4 + [512] * 4)
    # Channel-wise PWLU: its own breakpoints per channel and site, so the count follows the call sites, not the modules.
    per_site = sum(p.numel() for m in pwlus for p in m.parameters())
    assert per_site == sum(sum(p.numel() for p in activations.create("pwlu", num_features=w, channelwise=True, segments=8).parameters())
                           for w in widths)


class Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)

    def forward(self, x):
        return self.fc2(torch.nn.functional.gelu(self.act(self.fc1(x))))


def build_functional(input_shape, num_classes):
    return Functional()


def build_linear(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), num_classes))


BUILT_ON: list[str] = []


def build_recording(input_shape, num_classes, width: int = 4096):
    layer = nn.Linear(width, width)
    BUILT_ON.append(layer.weight.device.type)
    return nn.Sequential(layer, nn.ReLU(), nn.Linear(width, num_classes))


def test_functional_activations_are_reported_not_swapped():
    model, report = build_model_reporting(f"{__name__}:build_functional", source="import", input_shape=(8,), num_classes=3,
                                          activation="telu")
    assert len(report.sites) == 1 and sum(report.functional.values()) == 1
    assert report.coverage().startswith("1 of 2 activation calls swapped; 1 functional call")
    assert json.loads(json.dumps(report.to_dict()))["calls"] == 2


def test_a_model_without_activations_is_refused():
    with pytest.raises(NoActivationSites):
        build_model_reporting(f"{__name__}:build_linear", source="import", input_shape=(8,), num_classes=3, activation="relu")


def test_the_parameter_count_is_taken_on_the_meta_device():
    BUILT_ON.clear()
    n = count_parameters("import", f"{__name__}:build_recording", {"width": 4096}, (4096,), 10)
    assert n == 4096 * 4096 + 4096 + 4096 * 10 + 10 and BUILT_ON == ["meta"]
    assert count_parameters("timm", "vit_huge_patch14_224", {}, (3, 224, 224), 1000) > 600_000_000  # no 2.5 GB allocated


@pytest.mark.parametrize(("kwargs", "says"), [({"pretrained": True}, "model.kwargs.pretrained"),
                                              ({"no_such_argument": 1}, "does not take these arguments")])
def test_bad_model_arguments_are_named(kwargs, says):
    with pytest.raises(ModelSourceError, match=says):
        build_model_reporting("resnet18", source="timm", kwargs=kwargs, input_shape=(3, 32, 32), num_classes=10)


def test_timm_refuses_a_name_it_lacks_with_similar_ones():
    with pytest.raises(ModelSourceError, match="similar: resnet"):
        build_model_reporting("resnet19", source="timm", input_shape=(3, 32, 32), num_classes=10)


# ---- data ----

def _arrays(n_train=40, n_test=12, shape=(3, 8, 8), classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return {"x_train": rng.normal(size=(n_train, *shape)).astype(np.float32), "y_train": rng.integers(0, classes, n_train),
            "x_test": rng.normal(size=(n_test, *shape)).astype(np.float32), "y_test": rng.integers(0, classes, n_test)}


def test_a_npz_file_is_described_from_its_headers_and_loaded(tmp_path):
    a = _arrays()
    a["y_train"][:4] = [0, 1, 2, 3]
    np.savez(tmp_path / "toy.npz", **a)
    info = describe_dataset("file", "toy", path="toy.npz", data_root=tmp_path)
    assert info == DataInfo((3, 8, 8), 4, 40, 12)
    data = load_dataset("toy", source="file", path="toy.npz", data_root=tmp_path, val_fraction=0.25)
    assert len(data.train.y) + len(data.val.y) == 40 and torch.equal(data.test.x, torch.from_numpy(a["x_test"]))


def test_a_safetensors_file_is_loaded(tmp_path):
    from safetensors.numpy import save_file

    a = _arrays(shape=(20,))
    save_file({k: np.ascontiguousarray(v) for k, v in a.items()}, str(tmp_path / "toy.safetensors"))
    assert describe_dataset("file", "toy", path=str(tmp_path / "toy.safetensors")).input_shape == (20,)
    data = load_dataset("toy", source="file", path=str(tmp_path / "toy.safetensors"))
    assert torch.equal(data.test.y, torch.from_numpy(a["y_test"]))


@pytest.mark.parametrize(("change", "says"), [
    (lambda a: a.pop("y_test"), "y_test"),
    (lambda a: a.update(y_train=a["y_train"].astype(np.float32)), "integer labels"),
    (lambda a: a.update(x_test=a["x_test"][:, :2]), "x_test"),
])
def test_a_malformed_file_names_what_is_wrong(tmp_path, change, says):
    a = _arrays()
    change(a)
    np.savez(tmp_path / "bad.npz", **a)
    with pytest.raises(DatasetError, match=says):
        describe_dataset("file", "bad", path=str(tmp_path / "bad.npz"))


def test_a_pickled_npz_is_not_read(tmp_path):
    a = _arrays()
    a["x_train"] = np.array([object()] * 40, dtype=object)
    np.savez(tmp_path / "pickled.npz", **a)
    with pytest.raises(DatasetError):
        load_dataset("pickled", source="file", path=str(tmp_path / "pickled.npz"))


def test_an_image_folder_is_read_resized_and_standardised(tmp_path):
    root = write_image_folder(tmp_path / "pets")
    assert describe_dataset("image_folder", "pets", path=str(root)) == DataInfo((3, 10, 12), 3, 18, 6)
    data = load_dataset("pets", source="image_folder", path=str(root), image_size=8, grayscale=True, val_fraction=0.2)
    assert data.input_shape == (1, 8, 8) and data.num_classes == 3
    x = torch.cat([data.train.x, data.val.x])
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 0.05


def test_an_image_folder_without_test_split_names_the_folder(tmp_path):
    root = write_image_folder(tmp_path / "pets")
    import shutil

    shutil.rmtree(root / "test")
    with pytest.raises(DatasetError, match="test"):
        describe_dataset("image_folder", "pets", path=str(root))


def _idx(path, array: np.ndarray) -> None:
    """torchvision's MNIST-family file format: a big-endian magic (0x08 = unsigned bytes, then the rank), the sizes, the bytes."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") if str(path).endswith(".gz") else open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_a_torchvision_dataset_is_read_from_its_own_files(tmp_path):
    raw = tmp_path / "KMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("t10k", 10)):
        _idx(raw / f"{split}-images-idx3-ubyte", rng.integers(0, 255, (n, 28, 28)))
        _idx(raw / f"{split}-labels-idx1-ubyte", np.arange(n) % 10)
    info = describe_dataset("torchvision", "KMNIST", data_root=tmp_path)
    assert info == DataInfo((1, 28, 28), 10, 30, 10)
    data = load_dataset("KMNIST", source="torchvision", data_root=tmp_path, val_fraction=0.2)
    assert data.test.x.shape == (10, 1, 28, 28) and data.test.y.tolist() == list(range(10))


@pytest.mark.parametrize(("name", "says"), [("KMNIST", "nothing is downloaded"), ("NoSuchSet", "torchvision has no dataset"),
                                            ("ImageFolder", "neither train= nor split=")])
def test_a_torchvision_dataset_that_is_not_there_is_named(tmp_path, name, says):
    with pytest.raises(DatasetError, match=says):
        describe_dataset("torchvision", name, data_root=tmp_path)


def test_the_in_memory_cap_refuses_a_dataset_from_its_headers(tmp_path, monkeypatch):
    np.savez_compressed(tmp_path / "toy.npz", **_arrays())
    monkeypatch.setenv("ACTSTUDY_MAX_DATASET_BYTES", "1000")
    with pytest.raises(DatasetError, match="ACTSTUDY_MAX_DATASET_BYTES"):
        describe_dataset("file", "toy", path=str(tmp_path / "toy.npz"))


# ---- streaming: above the memory cap, the same batches read as they come ----

def _epoch(split, seed: int = 3, batch_size: int = 7) -> list[tuple[torch.Tensor, torch.Tensor]]:
    from workers.data import batches

    return list(batches(split, batch_size, generator=torch.Generator().manual_seed(seed), shuffle=True))


def _same_batches(a, b) -> None:
    for split in ("train", "val", "test"):
        first, second = _epoch(getattr(a, split)), _epoch(getattr(b, split))
        assert len(first) == len(second) > 0
        for (x1, y1), (x2, y2) in zip(first, second, strict=True):
            assert torch.equal(x1, x2) and torch.equal(y1, y2), split


def _both(monkeypatch, workers: int = 0, **load) -> tuple:
    in_memory = load_dataset(**load)
    monkeypatch.setenv("ACTSTUDY_MAX_DATASET_BYTES", "1000")
    streamed = load_dataset(**load, stream_workers=workers)
    monkeypatch.delenv("ACTSTUDY_MAX_DATASET_BYTES")
    assert not in_memory.streamed and streamed.streamed
    return in_memory, streamed


@pytest.mark.parametrize("kind", ["safetensors", "npz"])
def test_a_tensor_file_above_the_cap_streams_the_same_batches(tmp_path, monkeypatch, kind):
    a = _arrays(n_train=50, shape=(3, 4, 5))
    if kind == "npz":
        np.savez(tmp_path / "toy.npz", **a)  # stored, not compressed: memory-mapped
    else:
        from safetensors.numpy import save_file

        save_file({k: np.ascontiguousarray(v) for k, v in a.items()}, str(tmp_path / f"toy.{kind}"))
    monkeypatch.setenv("ACTSTUDY_MAX_DATASET_BYTES", "1000")
    assert describe_dataset("file", "toy", path=str(tmp_path / f"toy.{kind}")).streamed
    monkeypatch.delenv("ACTSTUDY_MAX_DATASET_BYTES")
    _same_batches(*_both(monkeypatch, name="toy", source="file", path=str(tmp_path / f"toy.{kind}"), val_fraction=0.2, seed=1))


@pytest.mark.parametrize(("image_size", "grayscale"), [(None, False), (6, True)])
def test_an_image_folder_above_the_cap_streams_the_same_batches(tmp_path, monkeypatch, image_size, grayscale):
    root = write_image_folder(tmp_path / "pets")
    _same_batches(*_both(monkeypatch, name="pets", source="image_folder", path=str(root), image_size=image_size,
                         grayscale=grayscale, val_fraction=0.2))


def test_streaming_workers_read_the_same_batches_as_the_training_process(tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "pets")
    _, by_process = _both(monkeypatch, name="pets", source="image_folder", path=str(root), val_fraction=0.2)
    _, by_workers = _both(monkeypatch, workers=2, name="pets", source="image_folder", path=str(root), val_fraction=0.2)
    assert by_workers.train.x.workers == 2
    _same_batches(by_process, by_workers)


def test_a_streamed_trial_trains_as_the_same_trial_in_memory(tmp_path, monkeypatch):
    from safetensors.numpy import save_file

    from workers import TrialConfig
    from workers.train import train

    save_file({k: np.ascontiguousarray(v) for k, v in _arrays(n_train=120, n_test=30, shape=(12,)).items()}, str(tmp_path / "flat.safetensors"))
    cfg = TrialConfig(dataset_source="file", dataset_path=str(tmp_path / "flat.safetensors"), model="mlp", hidden=(16,),
                      activation="pwlu", epochs=2, batch_size=16, evaluate_test=True)
    in_memory = train(cfg)
    monkeypatch.setenv("ACTSTUDY_MAX_DATASET_BYTES", "1000")
    streamed = train(cfg)
    keys = ("train_loss", "val_loss", "val_acc", "test_acc")
    assert [[r[k] for k in keys] for r in streamed.history] == [[r[k] for k in keys] for r in in_memory.history]


@pytest.mark.parametrize("kind", ["compressed npz", "torchvision"])
def test_data_that_cannot_stream_is_refused_above_the_cap_saying_what_would(tmp_path, monkeypatch, kind):
    if kind == "compressed npz":
        np.savez_compressed(tmp_path / "toy.npz", **_arrays())
        where, says = {"source": "file", "name": "toy", "path": str(tmp_path / "toy.npz")}, "np.savez"
    else:
        raw = tmp_path / "KMNIST" / "raw"
        raw.mkdir(parents=True)
        for split, n in (("train", 30), ("t10k", 10)):
            _idx(raw / f"{split}-images-idx3-ubyte", np.zeros((n, 28, 28)))
            _idx(raw / f"{split}-labels-idx1-ubyte", np.arange(n) % 10)
        where, says = {"source": "torchvision", "name": "KMNIST", "data_root": tmp_path}, "an image folder streams"
    monkeypatch.setenv("ACTSTUDY_MAX_DATASET_BYTES", "1000")
    with pytest.raises(DatasetError, match=says):
        describe_dataset(**where)
