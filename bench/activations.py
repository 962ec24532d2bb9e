"""Forward+backward time and memory of every registered activation, and of PWLU against a straightforward PWLU.

Run it from the repository root:

    .venv/bin/python bench/activations.py                  # all activations, default shape, CUDA if present
    .venv/bin/python bench/activations.py --quick          # 64×64×32×32: a smoke run in well under a minute
    .venv/bin/python bench/activations.py --shape 256,64,32,32 --repeat 7 --device cpu
    .venv/bin/python bench/activations.py --only pwlu gelu relu mish telu
    .venv/bin/python bench/activations.py --sizes --threads 1 # 32×100, 100×100, 256×100 and 256×64×32×32, ratios summed up

What it does, in one process so the ratios are measured side by side:

1. builds every activation of the registry for an input of the given shape (float32, channel dim 1), PWLU
   already in Phase II (`stats_steps=0`) with random points and tail slopes so the lookup is not a ReLU,
   and `straightforward_pwlu` — PWLU as the public unofficial implementations write it: masks for the
   two tails, a clamped floor index, `torch.gather` of points[idx] and points[idx+1] from a table expanded
   over the batch, interpolation, `torch.where`, and plain autograd through all of it — sharing the
   same parameters. It asserts that the two agree (output and every gradient) before timing anything;
2. runs each activation once and reports that first call on its own ("first call": lazy initialisation,
   allocator warm-up); loading TeLU's and PWLU's fused CPU kernels (activations/csrc, built once per machine
   by `make install`) is timed before everything, apart;
3. times forward+backward (`y = act(x); y.backward(g)`, input and parameter gradients included) for
   `--repeat` rounds, interleaving the activations within each round so that load from other processes
   hits all of them alike, and reports the median;
4. measures memory, once per activation, outside the timed rounds:
   - CUDA: "peak" is `torch.cuda.max_memory_allocated()` during forward+backward, above what was
     allocated before (the input x and the output gradient g are not counted);
   - CPU: "peak" is the highest total of bytes the CPU allocator had handed out during forward+backward,
     above the same baseline, rebuilt from the allocation and free events of `torch.profiler`
     (`profile_memory=True`) — the counterpart of CUDA's figure: output, tensors kept for backward,
     temporaries, and the gradients;
   - both: "kept" is what stays alive between forward and backward: the output plus every distinct
     storage saved for backward (seen through `torch.autograd.graph.saved_tensors_hooks`; the input
     counts when it is saved, parameters are negligible);
5. prints the table and the ratios the project targets: PWLU vs straightforward PWLU (time ≥5× faster,
   peak memory ≤¼), PWLU vs GELU time (≤3× on CPU), PWLU vs ReLU time (≤1.5× on CUDA), TeLU vs Mish
   time (≤1×).

Expect, on a 2-core CPU at the default shape (256×64×32×32, 64 MiB a tensor, about 1.2 GiB at the
straightforward PWLU's peak), one to two minutes in all; with `--quick` about 20 seconds. Absolute times
move with the machine's load (the load average is printed before and after; other processes on a
2-core machine slow the blocked many-op implementations more than single fused kernels), so read the
ratios, and rerun on a quiet machine before trusting them.
"""

from __future__ import annotations

import argparse
import copy
import gc
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import activations  # noqa: E402
from activations import PWLU, _native  # noqa: E402

MB = 2**20
DEFAULT_SHAPE = "256,64,32,32"
QUICK_SHAPE = "64,64,32,32"
TARGETS = {"pwlu_vs_straight_time": 5.0, "pwlu_vs_straight_peak": 0.25, "pwlu_vs_gelu_cpu": 3.0, "pwlu_vs_relu_cuda": 1.5, "telu_vs_mish": 1.0}


# ---------------------------------------------------------------------------------------------------
# The straightforward PWLU: how the public unofficial implementations compute it.


def straightforward_pwlu(x, left_bound, right_bound, points, left_slope, right_slope, min_width=1e-3):
    """Channel-wise PWLU with masks and gathers, differentiated by autograd through every op."""
    channels, n = points.shape[0], points.shape[1] - 1
    batch = x.shape[0]
    view = (1, channels) + (1,) * (x.dim() - 2)
    lo, hi = left_bound.view(view), right_bound.view(view)
    width = (hi - lo).clamp(min=min_width)
    step = width / n
    left_mask = x < lo
    right_mask = x >= lo + width
    pos = (x - lo) / step
    idx = pos.floor().clamp(0, n - 1).long()
    flat_idx = idx.reshape(batch, channels, -1)
    table = points.unsqueeze(0).expand(batch, channels, n + 1)
    y0 = torch.gather(table, 2, flat_idx).view_as(x)
    y1 = torch.gather(table, 2, flat_idx + 1).view_as(x)
    inner = y0 + (pos - idx) * (y1 - y0)
    left = points[:, 0].view(view) + left_slope.view(view) * (x - lo)
    right = points[:, n].view(view) + right_slope.view(view) * (x - lo - width)
    return torch.where(left_mask, left, torch.where(right_mask, right, inner))


class StraightforwardPWLU(nn.Module):
    """The straightforward PWLU over the parameters of an `activations.PWLU` (shared, not copied)."""

    def __init__(self, pwlu: PWLU) -> None:
        super().__init__()
        self.pwlu = pwlu

    def forward(self, x):
        p = self.pwlu
        return straightforward_pwlu(x, p.left_bound, p.right_bound, p.points, p.left_slope, p.right_slope)


def random_pwlu(channels: int, generator: torch.Generator) -> PWLU:
    """A Phase-II PWLU with bounds, points and tail slopes drawn at random (a realistic learnt shape)."""
    act = PWLU(num_features=channels, stats_steps=0)
    with torch.no_grad():
        center = torch.randn(channels, generator=generator) * 0.2
        half = 2.0 + torch.rand(channels, generator=generator)
        act.left_bound.copy_(center - half)
        act.right_bound.copy_(center + half)
        grid = torch.linspace(0, 1, act.segments + 1)
        relu = torch.relu(act.left_bound[:, None] + 2 * half[:, None] * grid)
        act.points.copy_(relu + 0.3 * torch.randn(act.points.shape, generator=generator))
        act.left_slope.copy_(0.1 * torch.randn(channels, generator=generator))
        act.right_slope.copy_(1.0 + 0.1 * torch.randn(channels, generator=generator))
    return act


def check_agreement(fast: PWLU, shape, device) -> None:
    """Assert PWLU and the straightforward PWLU agree — output and the gradients of x and every parameter —
    in float64 to 1e-9 on a small input, and in float32 to 1e-4 on one batch of the benchmark's."""
    small = (2,) + tuple(shape[1:2]) + (5,) * (len(shape) - 2)
    double = copy.deepcopy(fast).double()
    _check_agreement(double, StraightforwardPWLU(double), small, device, torch.float64, 1e-9)
    _check_agreement(fast, StraightforwardPWLU(fast), shape, device, torch.float32, 1e-4)


def _check_agreement(fast: nn.Module, slow: nn.Module, shape, device, dtype, tol) -> None:
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(shape, generator=g, dtype=dtype) * 2.5).to(device)
    x.view(-1)[:7] = torch.tensor([-1e4, 1e4, 0.0, -3.0, 3.0, -1e-3, 1e-3])  # far tails, the origin, near the bounds
    grad = torch.randn(shape, generator=g, dtype=dtype).to(device)
    results = []
    for module in (fast, slow):
        module.zero_grad(set_to_none=True)
        xi = x.clone().requires_grad_()
        y = module(xi)
        y.backward(grad)
        results.append([y.detach(), xi.grad] + [p.grad.clone() for p in fast.parameters()])
    names = ["output", "x.grad"] + [n for n, _ in fast.named_parameters()]
    for name, a, b in zip(names, *results, strict=False):
        scale = max(1.0, b.abs().max().item())
        if not torch.allclose(a, b, rtol=tol, atol=tol * scale):
            raise AssertionError(
                f"PWLU and straightforward PWLU disagree on {name} ({dtype}): max |Δ| = {(a - b).abs().max().item():.3g}"
            )
    fast.zero_grad(set_to_none=True)


# ---------------------------------------------------------------------------------------------------
# Measuring.


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fwd_bwd_seconds(module: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of y = module(x); y.backward(grad)."""
    x.grad = None
    module.zero_grad(set_to_none=True)
    _sync(x.device)
    start, cpu_start = time.perf_counter(), time.process_time()
    y = module(x)
    y.backward(grad)
    _sync(x.device)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    del y
    return elapsed, cpu


def kept_bytes(module: nn.Module, x: torch.Tensor) -> int:
    """Output plus every distinct storage saved for backward (the input included when saved)."""
    storages: dict[int, int] = {}

    def pack(t):
        if t.numel() and t.device.type != "meta":
            s = t.untyped_storage()
            storages[s.data_ptr()] = s.nbytes()
        return t

    x.grad = None
    module.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = module(x)
    s = y.untyped_storage()
    storages[s.data_ptr()] = s.nbytes()
    del y
    return sum(storages.values())


def peak_bytes(module: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> int | None:
    """Peak bytes allocated during forward+backward above the baseline (x and grad already allocated)."""
    x.grad = None
    module.zero_grad(set_to_none=True)
    gc.collect()
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
        base = torch.cuda.memory_allocated(x.device)
        torch.cuda.reset_peak_memory_stats(x.device)
        y = module(x)
        y.backward(grad)
        del y
        torch.cuda.synchronize(x.device)
        return torch.cuda.max_memory_allocated(x.device) - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        y = module(x)
        y.backward(grad)
        del y
    try:
        events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
        events.sort(key=lambda e: e.start_ns())
        live = peak = 0
        for e in events:
            live += e.nbytes()
            peak = max(peak, live)
        return peak
    except (AttributeError, RuntimeError):  # a torch without kineto memory events
        return None


# ---------------------------------------------------------------------------------------------------
# The run.


def build(names: list[str], shape, device, generator) -> dict[str, nn.Module]:
    channels, spatial = shape[1], len(shape) - 2
    modules: dict[str, nn.Module] = {}
    for name in names:
        if name == "pwlu":
            modules[name] = random_pwlu(channels, generator)
        elif name == "pwlu_straightforward":
            continue
        else:
            modules[name] = activations.create(name, num_features=channels, spatial_dims=min(spatial, 2))
    if "pwlu_straightforward" in names:
        base = modules.get("pwlu") or random_pwlu(channels, generator)
        modules["pwlu_straightforward"] = StraightforwardPWLU(base)
    return {n: modules[n].to(device).train() for n in names}


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg()) + f" on {os.cpu_count()} cores"
    except OSError:
        return "n/a"


def _fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.2f}"


def _fmt_time(seconds: float) -> str:
    """µs below a millisecond: the MLP sizes' times are tens of µs."""
    return f"{seconds * 1e6:.0f}µs" if seconds < 1e-3 else f"{seconds * 1e3:.1f}ms"


MLP_SHAPES = ["32,100", "100,100", "256,100"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", nargs="+", default=None, help=f"input shapes N,C[,H[,W]], each measured in turn (default {DEFAULT_SHAPE})")
    parser.add_argument("--sizes", action="store_true", help=f"the MLP sizes {', '.join(MLP_SHAPES)} and the default (or --quick) shape, "
                        "with a summary of the ratios at every size")
    parser.add_argument("--quick", action="store_true", help=f"the smaller shape {QUICK_SHAPE} and 3 rounds")
    parser.add_argument("--repeat", type=int, default=None, help="timed rounds after the first call (default 5, 3 with --quick)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="only these activations (pwlu_straightforward is one)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads on CPU (default: torch's, one per core)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory measurements")
    args = parser.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    large = QUICK_SHAPE if args.quick else DEFAULT_SHAPE
    texts = MLP_SHAPES + [large] if args.sizes else (args.shape or [large])
    shapes = [tuple(int(s) for s in text.split(",")) for text in texts]
    if any(len(shape) < 2 or len(shape) > 4 for shape in shapes):
        parser.error("--shape needs 2 to 4 dimensions N,C[,H[,W]]")
    repeat = args.repeat or (3 if args.quick else 5)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    all_names = activations.names() + ["pwlu_straightforward"]
    names = all_names
    if args.only:
        unknown = sorted(set(args.only) - set(all_names))
        if unknown:
            parser.error(f"--only: unknown {', '.join(unknown)}; valid: {', '.join(all_names)}")
        names = [n for n in all_names if n in args.only]

    # What a process pays once, reported apart from every first call below: loading TeLU's and PWLU's fused
    # CPU kernels (building them, the first time on a machine: `make install` does it ahead).
    start = time.perf_counter()
    kernels = _native.ops()
    loaded = time.perf_counter() - start
    print(f"fused CPU kernels: {'loaded in ' + _fmt_time(loaded) if kernels is not None else 'unavailable here: eager paths'} "
          f"(once per process; built once per machine)")
    summary = []
    for shape in shapes:
        summary.append((shape, measure(shape, names, device, repeat, args.no_memory)))
        print()
    if len(summary) > 1:
        keys = [key for key in ("pwlu_vs_gelu", "pwlu_vs_relu", "pwlu_vs_straight", "telu_vs_mish") if any(key in r for _, r in summary)]
        print("summary: time ratios at every size (wall-time medians)")
        print(f"{'shape':<16}" + "".join(f"{k.replace('_vs_', ' / '):>22}" for k in keys))
        for shape, ratios in summary:
            print(f"{'×'.join(map(str, shape)):<16}" + "".join(f"{_fmt_ratio(ratios.get(k)):>22}" for k in keys))
        print("targets: PWLU / GELU ≤ 3 (CPU) at every size; PWLU / straightforward ≤ 0.125 (≥ 8× faster) at the large size; "
              "TeLU / Mish ≤ 1")
    return 0


def measure(shape, names, device, repeat, no_memory) -> dict[str, float]:
    """Times and memory of every activation at one shape, printed; returns the time ratios."""

    generator = torch.Generator().manual_seed(0)
    modules = build(names, shape, device, generator)
    numel = math.prod(shape)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"activations forward+backward — shape {'×'.join(map(str, shape))} float32 ({numel * 4 / MB:.0f} MiB a tensor), "
          f"{where}, torch {torch.__version__}, {repeat} rounds")
    print(f"load average before: {_load()}")

    if "pwlu" in modules and "pwlu_straightforward" in modules:
        check_agreement(modules["pwlu"], (min(shape[0], 4),) + shape[1:], device)
        print("check: PWLU agrees with the straightforward PWLU (output, x.grad, every parameter's gradient; "
              "float64 to 1e-9, float32 to 1e-4)")

    x = torch.randn(shape, generator=generator).to(device).requires_grad_()
    grad = torch.randn(shape, generator=generator).to(device)

    first: dict[str, float] = {}
    for name, module in modules.items():
        first[name] = fwd_bwd_seconds(module, x, grad)[0]
    times: dict[str, list[float]] = {name: [] for name in modules}
    cpu_times: dict[str, list[float]] = {name: [] for name in modules}
    run_start = time.perf_counter()
    for _ in range(repeat):
        for name, module in modules.items():
            wall, cpu = fwd_bwd_seconds(module, x, grad)
            times[name].append(wall)
            cpu_times[name].append(cpu)
    timed = time.perf_counter() - run_start
    median = {name: statistics.median(ts) for name, ts in times.items()}
    cpu_median = {name: statistics.median(ts) for name, ts in cpu_times.items()}

    kept: dict[str, int | None] = {}
    peak: dict[str, int | None] = {}
    for name, module in modules.items():
        if no_memory:
            kept[name] = peak[name] = None
            continue
        kept[name] = kept_bytes(module, x)
        peak[name] = peak_bytes(module, x, grad)
    x.grad = None

    def mib(value):
        return float("nan") if value is None else value / MB

    tensor_mb = numel * x.element_size() / MB
    ref = median.get("relu")
    print()
    print(f"{'activation':<22}{'first call':>11}{'fwd+bwd':>10}{'min':>9}{'cpu':>9}{'×relu':>7}{'kept MiB':>10}{'peak MiB':>10}{'peak/x':>8}")
    for name in modules:
        print(
            f"{name:<22}{_fmt_time(first[name]):>11}{_fmt_time(median[name]):>10}{_fmt_time(min(times[name])):>9}"
            f"{_fmt_time(cpu_median[name]):>9}{(median[name] / ref if ref else float('nan')):>7.2f}"
            f"{mib(kept[name]):>10.1f}{mib(peak[name]):>10.1f}{mib(peak[name]) / tensor_mb:>8.2f}"
        )
    print(f"fwd+bwd: median wall time of {repeat} interleaved rounds ({timed:.1f} s in all); min: the fastest round; cpu: median "
          f"process CPU time (all threads); first call: the warm-up call, apart from the rounds. Load average after: {_load()}")
    if device.type == "cuda":
        print("peak MiB: torch.cuda.max_memory_allocated during forward+backward above x and g; "
              "kept MiB: output + distinct storages saved for backward")
    else:
        print("peak MiB (CPU): highest bytes live in torch's CPU allocator during forward+backward above x and g, from "
              "torch.profiler memory events; kept MiB: output + distinct storages saved for backward")

    def ratio(a, b, table):
        if a in table and b in table and table[a] and table[b]:
            return table[a] / table[b]
        return None

    def time_check(a, b, label, bound, text):
        return (label, ratio(a, b, median), ratio(a, b, cpu_median), bound, text)

    checks = [
        time_check("pwlu", "pwlu_straightforward", "PWLU / straightforward PWLU, time", 1 / TARGETS["pwlu_vs_straight_time"], "≥5× faster"),
        ("PWLU / straightforward PWLU, peak memory", ratio("pwlu", "pwlu_straightforward", peak), None, TARGETS["pwlu_vs_straight_peak"], "≤¼"),
        ("PWLU / straightforward PWLU, kept memory", ratio("pwlu", "pwlu_straightforward", kept), None, None, "(information)"),
    ]
    if device.type == "cuda":
        checks.append(time_check("pwlu", "relu", "PWLU / ReLU, time (CUDA)", TARGETS["pwlu_vs_relu_cuda"], "within 1.5×"))
        checks.append(time_check("pwlu", "gelu", "PWLU / GELU, time", None, "(information)"))
    else:
        checks.append(time_check("pwlu", "gelu", "PWLU / GELU, time (CPU)", TARGETS["pwlu_vs_gelu_cpu"], "within 3×"))
        checks.append(time_check("pwlu", "relu", "PWLU / ReLU, time", None, "(information)"))
    checks.append(time_check("telu", "mish", "TeLU / Mish, time", TARGETS["telu_vs_mish"], "no slower"))

    print()
    print(f"{'ratio':<44}{'measured':>9}{'(cpu)':>8}  target")
    for label, value, cpu_value, bound, text in checks:
        if value is None:
            continue
        verdict = "" if bound is None else ("met" if value <= bound else "NOT met")
        extra = f"  (= {1 / value:.1f}× faster)" if "time" in label and "straightforward" in label else ""
        cpu_text = f"({cpu_value:.2f})" if cpu_value is not None else ""
        print(f"{label:<44}{_fmt_ratio(value):>9}{cpu_text:>8}  {text} {verdict}{extra}")
    print("verdicts are on the wall-time medians; (cpu) is the same ratio of CPU time, steadier on a busy machine")
    return {key: value for key, value in (("pwlu_vs_gelu", ratio("pwlu", "gelu", median)), ("pwlu_vs_relu", ratio("pwlu", "relu", median)),
                                          ("pwlu_vs_straight", ratio("pwlu", "pwlu_straightforward", median)),
                                          ("telu_vs_mish", ratio("telu", "mish", median))) if value is not None}


if __name__ == "__main__":
    sys.exit(main())
