"""Member-steps per second of a population (workers.population: P members stacked, one vmap-ed forward and backward,
one vectorised Adam step with per-member lr and L2) against the same P models stepped one after another (each with
torch's fused Adam, as a trial does), measured side by side in one run on MNIST-1D batches.

    .venv/bin/python -m bench.population                        # MLP, relu telu pwlu, P = 1 … 64, 1 thread (~3 min)
    .venv/bin/python -m bench.population --model cnn1d --sizes 1 4 16 --threads 2

Prints a Markdown table: member-steps/s both ways and their ratio (population / one by one), per activation and P.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

from workers import TrialConfig
from workers.data import batches, load_dataset
from workers.models import build_model
from workers.population import Members, PopulationAdam, population_loss
from workers.train import make_optimizer


def one_by_one(template, size: int, data, steps: int) -> float:
    models = [copy.deepcopy(template) for _ in range(size)]
    opts = [make_optimizer(m, TrialConfig(lr=1e-3 * (1 + i), l2=1e-4)) for i, m in enumerate(models)]
    stream = _batches(data, steps)
    t = time.perf_counter()
    for xb, yb in stream:
        for m, o in zip(models, opts, strict=True):
            o.zero_grad(set_to_none=True)
            F.cross_entropy(m(xb), yb).backward()
            o.step()
    return size * steps / (time.perf_counter() - t)


def population(template, size: int, data, steps: int) -> float:
    members = Members(copy.deepcopy(template), size)
    opt = PopulationAdam(members.named_member_parameters(), torch.tensor([1e-3 * (1 + i) for i in range(size)]),
                         torch.full((size,), 1e-4), members.decayed)
    stream = _batches(data, steps)
    t = time.perf_counter()
    for xb, yb in stream:
        opt.zero_grad()
        population_loss(members(xb), yb).backward()
        opt.step()
    return size * steps / (time.perf_counter() - t)


def _batches(data, steps: int) -> list:
    out = []
    while len(out) < steps:
        out += list(batches(data.train, 128, generator=torch.Generator().manual_seed(len(out))))
    return out[:steps]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--activations", nargs="+", default=["relu", "telu", "pwlu"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1, 2, 4, 8, 16, 32, 64])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--member-steps", type=int, default=1024, help="member-steps per measurement (steps = this / P)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("mnist1d", seed=0)
    print(f"{args.model}, {args.threads} thread(s), batch 128, median of {args.repeat} interleaved rounds")
    print("| activation | P | one by one (member-steps/s) | population (member-steps/s) | population / one by one |")
    print("|---|---:|---:|---:|---:|")
    for act in args.activations:
        torch.manual_seed(0)
        params = {"stats_steps": 2} if act == "pwlu" else {}
        template = build_model(args.model, input_shape=(40,), num_classes=10, activation=act, activation_params=params)
        for size in args.sizes:
            steps = max(4, args.member_steps // size)
            population(template, size, data, 2)  # warm-up
            a, b = [], []
            for _ in range(args.repeat):
                a.append(one_by_one(template, size, data, steps))
                b.append(population(template, size, data, steps))
            single, batched = statistics.median(a), statistics.median(b)
            print(f"| {act} | {size} | {single:,.0f} | {batched:,.0f} | {batched / single:.2f} |", flush=True)


if __name__ == "__main__":
    main()
