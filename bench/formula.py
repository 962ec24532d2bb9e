"""Formula activations against the built-ins they spell out: is a formula fast enough to be compared fairly?

    .venv/bin/python bench/formula.py              # MLP sizes, a CNN size, whole MNIST-1D trials (~2 min on 2 cores)
    .venv/bin/python bench/formula.py --quick      # a smoke run (~20 s)

In one process, interleaved round by round so load from other processes hits both sides alike, one thread:
1. forward+backward (`y = act(x); y.backward(g)`) of formula Mish `x * tanh(softplus(x))` against `nn.Mish`,
   and of a safe formula TeLU `x * tanh(exp(min(x, 20)))` against the built-in `telu`, at 32×100, 100×100,
   256×100 (the MLP sizes of a study) and 64×64×32×32 (a CNN's), median of `--repeat` rounds;
2. "compile": what a formula costs once per process before its first step — parsing the expression and the
   numerical check a spec runs (there is no code generation: the tree is interpreted with torch calls);
3. whole MNIST-1D trials (`workers.train.train`: the study's default MLP 40→100→100→10 and the MNIST-1D paper's
   CNN `cnn1d`, batch 128, Adam, `--epochs` epochs, one thread): formula Mish vs `mish` and formula TeLU vs
   `telu`, alternating, median of `--trials` each, and the ratio; the target is ≤ 1.3×.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import activations  # noqa: E402

PAIRS = {  # formula label -> (expression, the built-in it spells out)
    "mish": ("x * tanh(softplus(x))", "mish"),
    "telu": ("x * tanh(exp(min(x, 20)))", "telu"),  # tanh(e^20) is 1 in float32 and float64: the same function
}
SIZES = [(32, 100), (100, 100), (256, 100), (64, 64, 32, 32)]


def fwd_bwd_us(act, x: torch.Tensor, g: torch.Tensor) -> float:
    start = time.perf_counter()
    y = act(x)
    y.backward(g)
    return (time.perf_counter() - start) * 1e6


def timed_pair(formula, builtin, shape: tuple[int, ...], repeat: int) -> tuple[float, float]:
    x = torch.randn(shape, requires_grad=True)
    g = torch.randn(shape)
    inner = max(1, int(2e5 // x.numel()))  # small inputs: several calls per sample, so the clock's grain does not count
    for act in (formula, builtin):  # warm-up
        fwd_bwd_us(act, x, g)
    times: dict[str, list[float]] = {"f": [], "b": []}
    for _ in range(repeat):
        for key, act in (("f", formula), ("b", builtin)):
            times[key].append(sum(fwd_bwd_us(act, x, g) for _ in range(inner)) / inner)
    return statistics.median(times["f"]), statistics.median(times["b"])


def compile_ms(expr: str, repeat: int = 5) -> tuple[float, float]:
    """(parse, parse + numerical check) in ms: what a formula costs before its first step."""
    parse, check = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        module = activations.create("formula", expr=expr)
        t1 = time.perf_counter()
        assert activations.check_formula(module).ok
        t2 = time.perf_counter()
        parse.append((t1 - t0) * 1e3)
        check.append((t2 - t0) * 1e3)
    return statistics.median(parse), statistics.median(check)


def trial_s(activation: str, params: dict, epochs: int, model: str = "mlp") -> float:
    from workers import TrialConfig
    from workers.train import train

    cfg = TrialConfig(model=model, activation=activation, activation_params=params, epochs=epochs, lr=3e-3, batch_size=128, threads=1,
                      device="cpu")
    start = time.perf_counter()
    result = train(cfg)
    assert result.status == "completed", result
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, smaller sizes, 2-epoch trials")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat, args.epochs, args.trials = 3, 2, 1
    sizes = SIZES[:3] + ([(8, 16, 16, 16)] if args.quick else SIZES[3:])
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, 1 thread, load average {os.getloadavg()[0]:.2f}")

    print("\nforward+backward, µs (median)")
    print(f"{'shape':<16}{'pair':<8}{'formula':>12}{'built-in':>12}{'ratio':>8}")
    for name, (expr, builtin) in PAIRS.items():
        for shape in sizes:
            formula = activations.create("formula", expr=expr)
            native = activations.create(builtin)
            f, b = timed_pair(formula, native, shape, args.repeat)
            print(f"{'×'.join(map(str, shape)):<16}{name:<8}{f:>12.1f}{b:>12.1f}{f / b:>8.2f}")

    print("\nonce per process, before the first step, ms (median): parse | parse + numerical check")
    for name, (expr, _) in PAIRS.items():
        parse, check = compile_ms(expr)
        print(f"{name:<8}{parse:>8.2f} | {check:.1f}")

    print(f"\nwhole MNIST-1D trials ({args.epochs} epochs, batch 128, Adam, one thread; mlp 40→100→100→10, cnn1d: the paper's CNN), "
          f"s (median of {args.trials})")
    print(f"{'model':<7}{'pair':<8}{'formula':>10}{'built-in':>10}{'ratio':>8}   (formula: parse and check included)")
    trial_s("relu", {}, 1)  # the dataset cached, the allocator warm
    worst = 0.0
    for model in ("mlp", "cnn1d"):
        for name, (expr, builtin) in PAIRS.items():
            f_times, b_times = [], []
            for _ in range(args.trials):
                start = time.perf_counter()
                assert activations.check_formula(activations.create("formula", expr=expr)).ok  # what validation pays
                f_times.append(time.perf_counter() - start + trial_s("formula", {"expr": expr}, args.epochs, model))
                b_times.append(trial_s(builtin, {}, args.epochs, model))
            f, b = statistics.median(f_times), statistics.median(b_times)
            worst = max(worst, f / b)
            print(f"{model:<7}{name:<8}{f:>10.2f}{b:>10.2f}{f / b:>8.2f}")
    print(f"\nformula trial / built-in trial, worst: {worst:.2f} (target ≤ 1.3)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
