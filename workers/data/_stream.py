"""Inputs too large to hold in memory, read sample by sample as batches are drawn: an image folder's files, a
`.safetensors` file's slices, an uncompressed `.npz` memory-mapped. A split's `x` is then `StreamedInputs`; its labels
stay in memory (they are small), so splitting and shuffling work on indices exactly as for tensors, and a streamed
dataset gives the same batches as the same data held in memory. Batches are read by a torch DataLoader with the
trial's CPUs as worker processes (`workers`; 0 reads in the training process).
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch


class ArrayReader:
    """Sample `i` of one array of a tensor file, read on demand (opened once per process, so workers open their own)."""

    def __init__(self, path: Path, key: str) -> None:
        self.path, self.key = Path(path), key
        self._array: Any = None

    def __getstate__(self) -> dict:
        return {"path": self.path, "key": self.key, "_array": None}  # a worker process opens the file itself

    def _open(self) -> Any:
        if self._array is None:
            if self.path.suffix == ".npz":
                self._array = npz_memmap(self.path, self.key)
            else:
                from safetensors import safe_open

                self._handle = safe_open(str(self.path), framework="np")
                self._array = self._handle.get_slice(self.key)
        return self._array

    def __getitem__(self, i: int) -> np.ndarray:
        return np.asarray(self._open()[i : i + 1], dtype=np.float32)[0]


def npz_memmap(path: Path, key: str) -> np.memmap:
    """An array of an `.npz` stored without compression (`np.savez`), memory-mapped where it lies in the archive."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(f"{key}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(f"{key} is compressed")
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)  # the zip entry's local header: its name and extra field follow, then the .npy
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        offset = f.tell()
    if dtype.hasobject:
        raise ValueError(f"{key} holds Python objects")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


class ImageReader:
    """Image `i` of a folder's list, decoded, resized and standardised as the in-memory loader does."""

    def __init__(self, files: list[Path], image_size: int | None, grayscale: bool, mean: np.ndarray, std: np.ndarray) -> None:
        self.files, self.image_size, self.grayscale, self.mean, self.std = files, image_size, grayscale, mean, std

    def __getitem__(self, i: int) -> np.ndarray:
        from workers.data._sources import decode_image, to_chw

        x = to_chw(decode_image(self.files[i], self.image_size, self.grayscale)[None], self.grayscale)[0]
        return ((x - self.mean[0]) / self.std[0]).astype(np.float32)


class _Samples(torch.utils.data.Dataset):
    def __init__(self, reader: Any) -> None:
        self.reader = reader

    def __getitem__(self, i: int) -> np.ndarray:
        return self.reader[i]


def _stack(samples: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(samples))


@dataclass(frozen=True, eq=False)
class StreamedInputs:
    """The inputs of one split, not in memory: `reader[i]` is sample i (float32), `indices` the split's samples."""

    reader: Any
    indices: torch.Tensor  # int64, on the CPU
    sample_shape: tuple[int, ...]
    device: torch.device = torch.device("cpu")
    workers: int = 0

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.indices), *self.sample_shape)

    def take(self, idx: torch.Tensor) -> StreamedInputs:
        return replace(self, indices=self.indices[idx.cpu()])

    def to(self, device: torch.device | str) -> StreamedInputs:
        return replace(self, device=torch.device(device))

    def with_workers(self, workers: int) -> StreamedInputs:
        return replace(self, workers=workers)

    def batches(self, order: list[torch.Tensor]):
        """The inputs of each batch of positions in `order`, read ahead by the DataLoader's workers."""
        plan = [self.indices[b.cpu()].tolist() for b in order]
        loader = torch.utils.data.DataLoader(_Samples(self.reader), batch_sampler=plan, num_workers=self.workers,
                                             collate_fn=_stack, pin_memory=self.device.type == "cuda")
        for xb in loader:
            yield xb.to(self.device, non_blocking=True)
