"""The fused CPU kernels (csrc/kernels.cpp): built once per machine, loaded once per process, or None.

`torch.utils.cpp_extension.load` compiles them with the C++ compiler into a folder of the extension cache
(`TORCH_EXTENSIONS_DIR`, default ~/.cache/torch_extensions) named after a hash of the source, the flags and
the torch version; once the library is there, processes load it with `torch.ops.load_library` alone —
no compiler run, no cache lock (a process killed while holding torch's build lock would leave every later
build waiting). `make install` builds them ahead (`python -m activations.build_native`), so trials only
load them (milliseconds). Where there is no compiler, or the build fails, or `ACTSTUDY_NATIVE=0`, every
activation runs its eager path, with the same results within float tolerance (tests/activations/test_native.py).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import warnings
from pathlib import Path

import torch

SOURCE = Path(__file__).parent / "csrc" / "kernels.cpp"
ENV_SWITCH = "ACTSTUDY_NATIVE"

# Compiler flags for the vector width torch's own CPU kernels use here (at::vec::Vectorized follows them).
_CAPABILITY_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma"],
    "AVX2": ["-mavx2", "-mfma"],
}

_lock = threading.Lock()
_state: dict = {}


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def ops():
    """torch.ops.actstudy with the kernels registered, or None (disabled, or they cannot be built here)."""
    if not enabled():
        return None
    if "ops" not in _state:
        with _lock:
            if "ops" not in _state:
                _state["ops"] = _load()
    return _state["ops"]


def ops_for(x: torch.Tensor):
    """ops() when the kernels take x (a float32 or float64 CPU tensor), else None."""
    return ops() if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) else None


def _flags() -> tuple[str, list[str]]:
    capability = torch.backends.cpu.get_cpu_capability()
    extra = _CAPABILITY_FLAGS.get(capability)
    # -fopenmp: at::parallel_for is OpenMP pragmas in torch's headers, ignored without it (one thread); the
    # library then needs libgomp.so.1, which resolves to the one torch has loaded already.
    if extra is None:  # the portable vector code: no capability macro
        return "default", ["-O3", "-fopenmp"]
    return capability.lower(), ["-O3", "-fopenmp", f"-DCPU_CAPABILITY={capability}", f"-DCPU_CAPABILITY_{capability}", *extra]


def _build_directory(tag: str, flags: list[str]) -> Path:
    digest = hashlib.sha256("\0".join([SOURCE.read_text(), *flags, torch.__version__]).encode()).hexdigest()[:16]
    root = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or Path.home() / ".cache" / "torch_extensions")
    return root / f"actstudy-{tag}-{digest}"


def _load():
    tag, flags = _flags()
    name = f"actstudy_kernels_{tag}"
    start = time.perf_counter()
    try:
        folder = _build_directory(tag, flags)
        library = folder / f"{name}.so"
        if library.is_file():
            torch.ops.load_library(str(library))
        else:
            # Its import warns "No CUDA runtime is found" on CPU machines: true, and irrelevant to CPU kernels.
            logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
            from torch.utils import cpp_extension  # imported only to build

            folder.mkdir(parents=True, exist_ok=True)
            cpp_extension.load(name, sources=[str(SOURCE)], extra_cflags=flags, extra_ldflags=["-fopenmp"],
                               build_directory=str(folder), is_python_module=False)
    except Exception as exc:  # no compiler, a read-only cache, a failed build: the eager paths serve
        lines = str(exc).strip().splitlines() or [""]
        detail = next((line for line in lines if "error:" in line), lines[-1])  # the compiler's first error
        warnings.warn(f"actstudy: fused CPU kernels unavailable ({type(exc).__name__}: {detail.strip()}); using the eager paths", stacklevel=3)
        return None
    _state["load_seconds"] = time.perf_counter() - start
    return torch.ops.actstudy


def load_seconds() -> float | None:
    """How long the first ops() call took in this process (a build, or only a load), or None."""
    return _state.get("load_seconds")

