"""The GPU path, proven in one run: activation parity, activation speed, a ResNet-18 epoch, studies per GPU share.

Run it from the repository root:

    .venv/bin/python bench/gpu.py                        # on a CUDA machine: every section, a few minutes
    .venv/bin/python bench/gpu.py --device cpu --quick   # the same code on the CPU, small sizes (the test suite runs it)
    .venv/bin/python bench/gpu.py --json out.json        # also write every figure to a file

Sections, in one process so the ratios are measured side by side:

1. parity — every registered activation on the device against the same module in float64 on the CPU
   (PWLU in Phase II with random points and tail slopes, LSLU with moved running statistics): the output,
   the input gradient and every parameter gradient, in float32 (rtol 1e-4) and under autocast to bfloat16
   (bfloat16's tolerance, 3e-2); prints the largest relative error of each and fails on a miss;
2. activation speed — forward+backward (device-synchronised, median of interleaved rounds) of PWLU
   against ReLU and TeLU against Mish, at MLP sizes (32×100, 256×100) and at a ResNet-sized tensor
   (256×64×32×32; --quick: 16×64×32×32); the first call of each is reported apart (CUDA context, kernel
   loading, the fused CPU kernels' load);
3. ResNet-18 — one epoch of training on CIFAR-shaped data made in memory (random images, 3×32×32, 10
   classes; 10,000 images, --quick: 64), float32 against bfloat16 autocast with channels_last, as
   `workers.train` runs them (`training.precision`); images/s and the ratio;
4. studies per GPU share — a small MNIST-1D study run end to end by the real runner (`studies.runner.run_study`,
   a local Ray, an MLflow server) with 1, ½ and ¼ GPU per trial; trials per minute. On the CPU (--device cpu)
   the share is of a CPU instead (`cpus_per_trial`), which exercises the same path.

Exit status 0 when every parity check passes. Absolute times depend on the machine; read the ratios.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import activations  # noqa: E402
from activations import _native  # noqa: E402
from workers.models import build_model  # noqa: E402
from workers.precision import autocast  # noqa: E402

FP32_RTOL = 1e-4
BF16_RTOL = 3e-2
CHANNELS = 16


# --- 1. parity -----------------------------------------------------------------------------------------


def _reference_module(name: str) -> torch.nn.Module:
    """A module of every registered kind for (N, C) inputs, with parameters and state off their initial values."""
    params = {"stats_steps": 0} if name == "pwlu" else {}
    module = activations.create(name, num_features=CHANNELS, spatial_dims=0, **params)
    with torch.no_grad():
        if name == "pwlu":  # bounds whose breakpoints no bfloat16 input can sit on (the slope jumps there)
            module.left_bound.fill_(-2.7182818)
            module.right_bound.fill_(3.1415927)
            module.points.add_(0.3 * torch.randn_like(module.points))
            module.left_slope.uniform_(-0.5, 0.5)
            module.right_slope.uniform_(0.5, 1.5)
        if name == "lslu":
            module.bn.running_mean.uniform_(-0.5, 0.5)
            module.bn.running_var.uniform_(0.5, 2.0)
            module.theta.uniform_(0.5, 1.5)
            module.eval()  # training-mode BatchNorm zeroes θ's and ω's gradients exactly: nothing to compare
    return module


def _forward_backward(module, x, g, precision: str):
    module.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    with autocast(precision, x.device):
        y = module(x if precision == "fp32" else x.to(torch.bfloat16))
    y.backward(g.to(y.dtype))
    grads = {"output": y.detach(), "input": x.grad}
    grads.update({f"∂{n}": p.grad for n, p in module.named_parameters() if p.grad is not None})
    return {k: v.double().cpu() for k, v in grads.items()}


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    scale = want.abs().max().clamp(min=1e-3)
    return float(((got - want).abs().max() / scale).item())


def parity(device: torch.device) -> tuple[list[dict], bool]:
    """Largest relative error (to the largest reference value) of every tensor, per activation and precision."""
    rows, ok = [], True
    for name in activations.names():
        torch.manual_seed(0)
        reference = _reference_module(name)
        # Values bfloat16 holds exactly: the low-precision run then differs from the reference in its arithmetic
        # only, not in where its inputs fall (PWLU's slope jumps at each breakpoint, a rounding can cross one).
        x = (2 * torch.randn(64, CHANNELS)).to(torch.bfloat16).double()
        g = torch.randn(64, CHANNELS).to(torch.bfloat16).double()
        want = _forward_backward(copy.deepcopy(reference).double(), x, g, "fp32")
        for precision, rtol in (("fp32", FP32_RTOL), ("bf16", BF16_RTOL)):
            module = copy.deepcopy(reference).to(device)
            got = _forward_backward(module, x.float().to(device), g.float().to(device), precision)
            errors = {k: _relative_error(got[k], want[k]) for k in want}
            worst = max(errors, key=errors.get)
            passed = errors[worst] <= rtol
            ok &= passed
            rows.append({"activation": name, "precision": precision, "worst": worst, "error": errors[worst], "rtol": rtol, "ok": passed})
    return rows, ok


# --- 2. activation speed -------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def activation_speed(device: torch.device, shapes: list[tuple[int, ...]], rounds: int) -> list[dict]:
    names = ("relu", "pwlu", "mish", "telu")
    rows = []
    for shape in shapes:
        torch.manual_seed(0)
        x = torch.randn(shape, device=device, requires_grad=True)
        g = torch.randn(shape, device=device)
        modules = {n: activations.create(n, num_features=shape[1], **({"stats_steps": 0} if n == "pwlu" else {})).to(device) for n in names}
        first, times = {}, {n: [] for n in names}

        def once(n):
            _sync(device)
            start = time.perf_counter()
            modules[n](x).backward(g)  # noqa: B023 — timed within the same iteration
            _sync(device)
            return time.perf_counter() - start

        for n in names:
            first[n] = once(n)
        for _ in range(rounds):  # interleaved, so load from elsewhere hits all alike
            for n in names:
                times[n].append(once(n))
        med = {n: statistics.median(t) for n, t in times.items()}
        rows.append({"shape": "×".join(map(str, shape)), **{f"{n}_ms": 1e3 * med[n] for n in names},
                     **{f"{n}_first_ms": 1e3 * first[n] for n in names},
                     "pwlu_over_relu": med["pwlu"] / med["relu"], "telu_over_mish": med["telu"] / med["mish"]})
    return rows


# --- 3. ResNet-18 epoch --------------------------------------------------------------------------------


def resnet_epoch(device: torch.device, images: int, batch_size: int) -> dict:
    """One training epoch of ResNet-18 on random CIFAR-shaped data: fp32, then bf16 autocast + channels_last."""
    generator = torch.Generator().manual_seed(0)
    data = torch.randn(images, 3, 32, 32, generator=generator).to(device)
    labels = torch.randint(0, 10, (images,), generator=generator).to(device)
    out = {"images": images, "batch_size": batch_size}
    for label, precision, memory_format in (("fp32", "fp32", torch.contiguous_format), ("bf16_channels_last", "bf16", torch.channels_last)):
        torch.manual_seed(0)
        model = build_model("resnet18", input_shape=(3, 32, 32), num_classes=10, activation="relu").to(device, memory_format=memory_format)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        x_all = data.contiguous(memory_format=memory_format)

        def step(i, x_all=x_all, model=model, optimizer=optimizer, precision=precision):
            xb, yb = x_all[i : i + batch_size], labels[i : i + batch_size]
            with autocast(precision, device):
                loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return loss

        step(0)  # warm-up (cuDNN autotuning, allocator), not timed
        _sync(device)
        start = time.perf_counter()
        for i in range(0, images, batch_size):
            loss = step(i)
        _sync(device)
        seconds = time.perf_counter() - start
        out[label] = {"seconds": seconds, "images_per_s": images / seconds, "last_loss": float(loss.detach())}
    out["bf16_speedup"] = out["fp32"]["seconds"] / out["bf16_channels_last"]["seconds"]
    return out


# --- 4. studies per GPU share --------------------------------------------------------------------------


def _study_spec(share: float, device: torch.device, quick: bool):
    from studies.spec import StudySpec

    trials, epochs = (2, 2) if quick else (8, 5)
    resources = {"gpus_per_trial": share, "cpus_per_trial": 1} if device.type == "cuda" else {"cpus_per_trial": share}
    return StudySpec.model_validate({
        "name": f"gpu-share-{share:g}",
        "dataset": {"name": "mnist1d"},
        "model": {"name": "mlp", "hidden": [100, 100]},
        "activations": ["relu", {"name": "pwlu", "stats_steps": 20}] if quick else ["relu", "telu", {"name": "pwlu", "stats_steps": 20}],
        "search": {"trials_per_activation": trials, "sampler": "random", "pruner": "none"},
        "training": {"epochs": epochs, "batch_size": 128},
        "confirm": {"seeds": 1 if quick else 2},
        "resources": resources,
        "seed": 0,
    })


def studies_per_share(device: torch.device, shares: list[float], quick: bool) -> list[dict]:
    import ray

    from studies.execution import ensure_ray
    from studies.local import start_mlflow
    from studies.runner import run_study

    workdir = Path(tempfile.mkdtemp(prefix="actstudy-gpu-"))
    rows = []
    mlflow = start_mlflow(workdir)
    try:
        ensure_ray("local")
        for share in shares:
            spec = _study_spec(share, device, quick)
            runs = spec.total_trials() + len(spec.labels) * spec.confirm.seeds
            start = time.perf_counter()
            results = run_study(spec, study_id=f"share-{share:g}", storage_dir=workdir / "studies", mlflow_uri=mlflow.url)
            minutes = (time.perf_counter() - start) / 60
            rows.append({"share": share, "resource": "GPU" if device.type == "cuda" else "CPU", "runs": runs,
                         "minutes": minutes, "runs_per_minute": runs / minutes, "best": results.best_activation})
    finally:
        ray.shutdown()
        mlflow.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


# --- report --------------------------------------------------------------------------------------------


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return f"{p.name}, {p.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}"
    kernels = "fused CPU kernels" if _native.ops() is not None else "eager paths (no fused kernels)"
    return f"CPU, {torch.get_num_threads()} threads, {kernels}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="small sizes and a tiny study per share: a smoke run")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per activation (default 50, 5 with --quick)")
    parser.add_argument("--skip", nargs="+", default=[], choices=["parity", "speed", "resnet", "studies"])
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench/gpu.py: no CUDA device here; run with --device cpu (and say so: no GPU figures from this machine)")
        return 2
    logging.basicConfig(level=logging.WARNING)
    device = torch.device(args.device)
    rounds = args.rounds or (5 if args.quick else 50)
    report: dict = {"device": describe(device), "torch": torch.__version__, "quick": args.quick}
    print(f"bench/gpu.py on {report['device']}, torch {torch.__version__}{' (quick)' if args.quick else ''}")
    ok = True

    if "parity" not in args.skip:
        rows, ok = parity(device)
        report["parity"] = rows
        print("\n1. parity against float64 on the CPU (largest error relative to the largest reference value)")
        print(f"   {'activation':<12} {'precision':<6} {'error':>9}  {'tolerance':>9}  worst tensor")
        for r in rows:
            print(f"   {r['activation']:<12} {r['precision']:<6} {r['error']:9.2e}  {r['rtol']:9.0e}  {r['worst']}{'' if r['ok'] else '   FAILED'}")
        print(f"   {'all within tolerance' if ok else 'PARITY FAILED'}")

    if "speed" not in args.skip:
        shapes = [(32, 100), (256, 100), (16, 64, 32, 32) if args.quick else (256, 64, 32, 32)]
        rows = activation_speed(device, shapes, rounds)
        report["speed"] = rows
        print(f"\n2. forward+backward, median of {rounds} interleaved rounds, ms (first call in brackets)")
        print(f"   {'shape':<16} {'relu':>14} {'pwlu':>14} {'mish':>14} {'telu':>14}  pwlu/relu  telu/mish")
        for r in rows:
            cells = "".join(f"{r[n + '_ms']:7.3f} ({r[n + '_first_ms']:5.1f})" for n in ("relu", "pwlu", "mish", "telu"))
            print(f"   {r['shape']:<16} {cells}  {r['pwlu_over_relu']:8.2f}×  {r['telu_over_mish']:8.2f}×")

    if "resnet" not in args.skip:
        images, batch = (64, 32) if args.quick else (10_000, 256)
        r = resnet_epoch(device, images, batch)
        report["resnet18"] = r
        print(f"\n3. ResNet-18, one epoch of {images} CIFAR-shaped images, batch {batch}")
        for label in ("fp32", "bf16_channels_last"):
            print(f"   {label:<20} {r[label]['seconds']:8.2f} s  {r[label]['images_per_s']:9.1f} images/s  (last loss {r[label]['last_loss']:.3f})")
        print(f"   bf16 + channels_last / fp32 speed-up: {r['bf16_speedup']:.2f}×")

    if "studies" not in args.skip:
        shares = [1.0, 0.5, 0.25]
        rows = studies_per_share(device, shares, args.quick)
        report["studies"] = rows
        print(f"\n4. a study through the real runner, per {rows[0]['resource']} share of a trial")
        for r in rows:
            print(f"   {r['share']:>5g} {r['resource']} per trial: {r['runs']} trials and confirmation runs in {r['minutes']:5.2f} min"
                  f" = {r['runs_per_minute']:6.1f} per minute (best: {r['best']})")
        base = rows[0]["runs_per_minute"]
        print("   throughput against one per trial: " + ", ".join(f"{r['share']:g}: {r['runs_per_minute'] / base:.2f}×" for r in rows))

    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # the runner's downloads, not ours to show
    sys.exit(main())
