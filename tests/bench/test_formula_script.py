"""bench/formula.py runs, small (--quick), so it never rots: both pairs at every size, the once-per-process cost,
whole trials, and the ratio against the target printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_formula_bench_runs_quick():
    proc = subprocess.run([sys.executable, "bench/formula.py", "--quick"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    rows = re.findall(r"^([\d×]+)\s+(mish|telu)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", out, re.M)
    assert {(shape, pair) for shape, pair, *_ in rows} == {(s, p) for s in ("32×100", "100×100", "256×100", "8×16×16×16") for p in ("mish", "telu")}
    assert all(float(f) > 0 and float(b) > 0 for *_, f, b, _ in rows)
    assert set(re.findall(r"^(mish|telu)\s+[\d.]+ \| [\d.]+$", out, re.M)) == {"mish", "telu"}
    trials = re.findall(r"^(mlp|cnn1d)\s+(mish|telu)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", out, re.M)
    assert {(model, pair) for model, pair, *_ in trials} == {(m, p) for m in ("mlp", "cnn1d") for p in ("mish", "telu")}
    assert re.search(r"^formula trial / built-in trial, worst: [\d.]+ \(target ≤ 1\.3\)$", out, re.M), out
