"""Where datasets are read from and where generated ones are cached, unless a caller says otherwise."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ROOT_ENV = "ACTSTUDY_DATA_ROOT"
CACHE_DIR_ENV = "ACTSTUDY_CACHE_DIR"


def default_data_root() -> Path:
    """`$ACTSTUDY_DATA_ROOT`, else `~/.actstudy/data`: the root of downloaded datasets (MNIST, CIFAR)."""
    return _from_env(DATA_ROOT_ENV, "data")


def default_cache_dir() -> Path:
    """`$ACTSTUDY_CACHE_DIR`, else `~/.actstudy/cache`: where generated datasets (MNIST-1D) are kept."""
    return _from_env(CACHE_DIR_ENV, "cache")


def _from_env(variable: str, leaf: str) -> Path:
    value = os.environ.get(variable, "").strip()
    return Path(value).expanduser() if value else Path.home() / ".actstudy" / leaf
