"""bench/gpu.py runs, on the CPU with --quick, every section it runs on a GPU machine, so it never rots:
activation parity, activation speed, a ResNet-18 epoch in fp32 and bf16 + channels_last, and a real study
through the runner (local Ray, MLflow server) at three resource shares."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import activations

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_bench_runs_on_the_cpu_quick(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        [sys.executable, "bench/gpu.py", "--device", "cpu", "--quick", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["device"].startswith("CPU")
    parity = report["parity"]
    assert {(r["activation"], r["precision"]) for r in parity} == {(n, p) for n in activations.names() for p in ("fp32", "bf16")}
    assert all(r["ok"] and r["error"] <= r["rtol"] for r in parity)
    assert [r["shape"] for r in report["speed"]] == ["32×100", "256×100", "16×64×32×32"]
    assert all(r["pwlu_over_relu"] > 0 and r["telu_over_mish"] > 0 for r in report["speed"])
    resnet = report["resnet18"]
    assert resnet["fp32"]["images_per_s"] > 0 and resnet["bf16_channels_last"]["images_per_s"] > 0
    studies = report["studies"]
    assert [r["share"] for r in studies] == [1.0, 0.5, 0.25] and all(r["resource"] == "CPU" for r in studies)
    assert all(r["runs"] == 6 and r["runs_per_minute"] > 0 and r["best"] for r in studies)
    # What a reader sees: every section's heading.
    for heading in ("1. parity", "2. forward+backward", "3. ResNet-18", "4. a study through the real runner"):
        assert heading in proc.stdout


def test_gpu_bench_refuses_cuda_without_a_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the refusal is for machines without one")
    proc = subprocess.run([sys.executable, "bench/gpu.py", "--device", "cuda"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no CUDA device" in proc.stdout
