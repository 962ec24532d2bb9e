"""The in-memory dataset types and the errors every loader raises."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


class DatasetError(ValueError):
    """A dataset that cannot be loaded as asked: unknown name, bad option, unreadable files."""


class MissingDataError(DatasetError):
    """The files of a dataset are not where the loader looks; says which folder and which files.

    Built from its parts so that it survives pickling (Ray ships a trial's exception to the driver).
    """

    def __init__(self, dataset: str, folder: str, files: tuple[str, ...] | list[str], hint: str = "") -> None:
        self.dataset = dataset
        self.folder = str(folder)
        self.files = tuple(files)
        self.hint = hint
        message = f"{dataset} data not found in {self.folder}: expected {', '.join(self.files)}"
        super().__init__(f"{message}. {hint}" if hint else message)

    def __reduce__(self):
        return (type(self), (self.dataset, self.folder, self.files, self.hint))


@dataclass(frozen=True, eq=False)
class Split:
    """Inputs and int64 class labels of one split, on one device. Treat the tensors as read-only:
    loads in one process may share them. `x` is StreamedInputs (workers.data._stream) for data above the memory cap."""

    x: torch.Tensor  # or StreamedInputs
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise DatasetError(f"split has {self.x.shape[0]} inputs but {self.y.shape[0]} labels")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: torch.device | str) -> Split:
        return Split(self.x.to(device), self.y.to(device))


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train, validation and test splits of one dataset; `input_shape` is per sample."""

    name: str
    train: Split
    val: Split
    test: Split
    input_shape: tuple[int, ...]
    num_classes: int

    def to(self, device: torch.device | str) -> Dataset:
        """The same dataset with every split on `device`."""
        return replace(self, train=self.train.to(device), val=self.val.to(device), test=self.test.to(device))

    @property
    def streamed(self) -> bool:
        """Inputs read batch by batch (workers.data._stream) rather than held as tensors."""
        from workers.data._stream import StreamedInputs  # torch: only once a dataset exists

        return isinstance(self.train.x, StreamedInputs)

    def with_stream_workers(self, workers: int) -> Dataset:
        """A streamed dataset whose batches `workers` processes read ahead (0: the training process)."""
        return replace(self, **{k: Split(getattr(self, k).x.with_workers(workers), getattr(self, k).y) for k in ("train", "val", "test")})
