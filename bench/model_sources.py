"""What checking a model from outside costs at submission, side by side in one run: its parameter count on the meta
device (what the cap is judged on) against building it on the CPU, and the dry run that swaps its activations.

    .venv/bin/python -m bench.model_sources          # ~1 min on 2 cores; prints a Markdown table

The point: a model over ACTSTUDY_MAX_MODEL_PARAMETERS is refused in milliseconds, whatever its size, because
nothing is allocated; the swap's dry run (one forward on two zero samples) is a fraction of a single training step.
"""

from __future__ import annotations

import statistics
import time

import torch

from workers.models import build_model_reporting, construct, count_parameters

MODELS = [  # (source, name, kwargs, input shape)
    ("timm", "resnet18", {}, (3, 32, 32)),
    ("timm", "vit_tiny_patch16_224", {"img_size": 32, "patch_size": 4}, (3, 32, 32)),
    ("timm", "convnext_atto", {}, (3, 32, 32)),
    ("torchvision", "resnet50", {}, (3, 32, 32)),
    ("timm", "vit_large_patch16_224", {}, (3, 224, 224)),
    ("timm", "vit_huge_patch14_224", {}, (3, 224, 224)),
]


def timed(fn, rounds: int = 3) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    torch.set_num_threads(1)
    construct("timm", "resnet18", {}, (3, 32, 32), 10)  # imports out of the way
    print("| model | parameters | count on meta (ms) | build on CPU (ms) | build / count | build + swap dry run (ms) | sites |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for source, name, kwargs, shape in MODELS:
        n = count_parameters(source, name, kwargs, shape, 10)
        meta = timed(lambda: count_parameters(source, name, kwargs, shape, 10))  # noqa: B023
        cpu = timed(lambda: construct(source, name, kwargs, shape, 10), rounds=1)  # noqa: B023
        swap, sites = "", ""
        if n < 100_000_000:
            swap = f"{timed(lambda: build_model_reporting(name, source=source, kwargs=kwargs, input_shape=shape, num_classes=10, activation='pwlu'), rounds=1) * 1e3:,.0f}"  # noqa: B023, E501
            sites = len(build_model_reporting(name, source=source, kwargs=kwargs, input_shape=shape, num_classes=10)[1].sites)
        print(f"| {source} {name} | {n:,} | {meta * 1e3:,.1f} | {cpu * 1e3:,.0f} | {cpu / meta:,.0f}× | {swap} | {sites} |")


if __name__ == "__main__":
    main()
