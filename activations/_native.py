"""The fused CPU kernels (csrc/kernels.cpp): built once per machine, loaded once per process, or None.

`torch.utils.cpp_extension.load` compiles them with the C++ compiler into torch's extension cache
(`TORCH_EXTENSIONS_DIR`, default ~/.cache/torch_extensions) and reuses the build while the source and
flags are unchanged; `make install` builds them ahead (`python -m activations.build_native`), so trials only load them (milliseconds). Where there
is no compiler, or the build fails, or `ACTSTUDY_NATIVE=0`, every activation runs its eager path, which
gives the same results within float tolerance (tests/activations/test_native.py).
"""

from __future__ import annotations

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


def supports(x: torch.Tensor) -> bool:
    """Whether the kernels take x: a float32 or float64 CPU tensor, with the kernels available."""
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and ops() is not None


def _flags() -> tuple[str, list[str]]:
    capability = torch.backends.cpu.get_cpu_capability()
    extra = _CAPABILITY_FLAGS.get(capability)
    if extra is None:  # the portable vector code: no capability macro
        return "default", ["-O3"]
    return capability.lower(), ["-O3", f"-DCPU_CAPABILITY={capability}", f"-DCPU_CAPABILITY_{capability}", *extra]


def _load():
    # Its import warns "No CUDA runtime is found" on CPU machines: true, and irrelevant to CPU kernels.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils import cpp_extension  # imported here: it is only needed the first time

    tag, flags = _flags()
    start = time.perf_counter()
    try:
        cpp_extension.load(f"actstudy_kernels_{tag}", sources=[str(SOURCE)], extra_cflags=flags, is_python_module=False)
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

