"""Where one trial's time goes, and the in-memory batches against a standard torch DataLoader.

Run it from the repository root:

    .venv/bin/python bench/trial.py                  # MNIST-1D MLP, relu and pwlu, a full 167-epoch trial
    .venv/bin/python bench/trial.py --quick          # 20-epoch trials, 10-epoch loops: a smoke run, ~30 s
    .venv/bin/python bench/trial.py --model cnn1d --activations relu pwlu lslu --loop-epochs 50 --repeat 5

What it does, in one process, on one CPU thread (a trial's default, `TrialConfig.threads=1`):

1. Breakdown. Runs `workers.train.train` as a Tune trial would (a fresh process: the in-memory dataset
   cache cleared, the MNIST-1D disk cache warm), with timers wrapped around the module-level pieces it
   calls, so the real loop is measured, not a copy of it:
   - data load: `load_dataset` (reading the disk cache, the validation split) and `Dataset.to(device)`;
   - batches: every `next()` on the training `batches` (the per-epoch permutation, the per-step gather);
   - setup: `build_model` and `make_optimizer`;
   - evaluation: `evaluate` on the validation split (and the test split with --evaluate-test);
   - probes: `snapshots` (the per-epoch state of every learnable activation);
   - reporting: an `on_epoch` hook doing what `workers.trial.run_trial` and the studies' MLflow
     recorder do per epoch, minus the network: the flat metrics serialised to JSON (the Tune report),
     the MLflow `LogBatch` request body built exactly as MLflow's REST store builds it (metrics plus the
     activations' evolution series), and a checkpoint (`TrainState.save` into a temporary folder, then
     copied, as Tune persists it) every 5 epochs and at the end;
   - final artifacts: what the recorder logs once at the end, each learnable layer's evolution as JSON
     and as a PNG plot (matplotlib and mlflow are imported beforehand; their import time, paid once per
     worker process, is printed on its own);
   - forward/backward/step: the rest of `train`'s wall time — the steps themselves plus the loop's
     bookkeeping (setting the lr, accumulating loss and accuracy on the device, one sync per epoch).
   The first MNIST-1D generation (a cold disk cache: once per node, not per trial) is timed separately.
2. Loop. The same model (same seed), optimizer and number of steps trained with batches from
   `workers.data.batches` and from `DataLoader(TensorDataset(x, y), batch_size, shuffle=True)` (default
   `num_workers=0`). Only the training loop is timed (forward, loss, backward, step, and fetching the
   batches); the rounds alternate the two so that load from other processes hits both alike, and the
   median is reported, with the batch-fetching alone (no model) timed the same way.

Targets (from the issue): everything outside forward/backward/step under 10% of a trial's time; the
in-memory loop at least 3× faster than the DataLoader version on MNIST-1D.

Expect, on a 2-core CPU: about 2–3 minutes quiet (5–7 with the machine shared); relu's full trial ~7 s
quiet, pwlu's a few times that. Measured (bench/README.md): relu ~10 % outside forward/backward/step
(batches ~5 %, checkpoints ~2.5 %, validation ~1.5 %); pwlu 30–40 %, nearly all of it checkpoints, whose
size grows with the history of activation snapshots; the DataLoader loop only 1.3–1.7× (relu) and
1.0–1.2× (pwlu) slower, since the MLP's step, not the batch fetching, dominates both loops. Absolute
times move with the machine's load; the shares and ratios are the figures to read.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import workers.train as wt  # noqa: E402
from activations import _native as activations_native  # noqa: E402
from workers.data import Dataset, _load, _mnist1d, batches, load_dataset  # noqa: E402  # noqa: E402
from workers.models import build_model  # noqa: E402
from workers.trial import CHECKPOINT_EVERY, flat_metrics  # noqa: E402

SECTIONS = ("data load", "batches", "setup", "evaluation", "probes", "reporting", "checkpoint", "final artifacts")
STEP = "forward/backward/step"


class Clock:
    """Wall time per named section; a section entered inside another counts toward the outer one."""

    def __init__(self, device: torch.device) -> None:
        self.spent: dict[str, float] = defaultdict(float)
        self.entries: dict[str, int] = defaultdict(int)
        self._active = False
        self._sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    @contextlib.contextmanager
    def section(self, name: str) -> Iterator[None]:
        if self._active:
            yield
            return
        self._sync()
        self._active, start = True, time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.spent[name] += time.perf_counter() - start
            self.entries[name] += 1
            self._active = False

    def wrap(self, name: str, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            with self.section(name):
                return fn(*args, **kwargs)

        return timed

    def wrap_iter(self, name: str, fn: Callable) -> Callable:
        """Time every `next()` of the iterator `fn` returns, not the consumer's work between them."""

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            items = fn(*args, **kwargs)
            while True:
                with self.section(name):
                    try:
                        item = next(items)
                    except StopIteration:
                        return
                yield item

        return timed


def reporting_hook(clock: Clock, cfg: wt.TrialConfig, storage: Path, evolution: dict) -> wt.EpochHook:
    """What run_trial and the MLflow recorder do each epoch, with the network calls left out."""
    from mlflow.entities import Metric
    from mlflow.protos.service_pb2 import LogBatch
    from mlflow.utils.proto_json_utils import message_to_json

    from studies.mlflow.layout import EPOCH_METRICS, evolution_metrics

    def on_epoch(record: dict, state: Callable[[], wt.TrainState]) -> None:
        epoch = record["epoch"]
        with clock.section("reporting"):
            json.dumps(flat_metrics(record))  # what tune.report ships to the driver
            values = {k: record[k] for k in EPOCH_METRICS if k in record}
            values.update(evolution_metrics(record.get("activations", {})))
            now = int(time.time() * 1000)
            metrics = [Metric(k, float(v), now, epoch).to_proto() for k, v in values.items()]
            message_to_json(LogBatch(run_id="0" * 32, metrics=metrics))  # MLflow RestStore.log_batch's body
            for layer, snap in record.get("activations", {}).items():
                evolution.setdefault(layer, []).append({"epoch": epoch, "state": snap})
        if epoch % CHECKPOINT_EVERY == 0 or epoch == cfg.epochs or record["diverged"]:
            with clock.section("checkpoint"), tempfile.TemporaryDirectory() as directory:
                state().save(directory)
                shutil.copytree(directory, storage / f"checkpoint_{epoch:06d}")  # Tune persists a copy

    return on_epoch


def final_artifacts(evolution: dict, folder: Path) -> None:
    """The recorder's end-of-trial upload, to a local folder: evolution JSON and plot per layer."""
    from studies.mlflow.layout import activation_kind, sanitize
    from studies.report import plot_evolution, save

    for layer, history in evolution.items():
        kind = activation_kind(history[-1]["state"])
        (folder / f"{sanitize(layer)}.json").write_text(json.dumps({"layer": layer, "kind": kind, "history": history}))
        save(plot_evolution(kind, history, layer), folder / f"{sanitize(layer)}.png", dpi=90)


def breakdown(cfg: wt.TrialConfig) -> dict[str, float]:
    """One instrumented trial; seconds per section, STEP the remainder, "total" the whole."""
    clock = Clock(wt.resolve_device(cfg.device))
    evolution: dict = {}
    _load.clear_memory_cache()  # a trial starts in a fresh worker process: the disk cache, not memory
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        storage = Path(tmp)
        patches = {
            "load_dataset": clock.wrap("data load", wt.load_dataset),
            "batches": clock.wrap_iter("batches", wt.batches),
            "augment_cifar": clock.wrap("batches", wt.augment_cifar),
            "build_model": clock.wrap("setup", wt.build_model),
            "make_optimizer": clock.wrap("setup", wt.make_optimizer),
            "evaluate": clock.wrap("evaluation", wt.evaluate),
            "snapshots": clock.wrap("probes", wt.snapshots),
        }
        for name, timed in patches.items():
            stack.enter_context(mock.patch.object(wt, name, timed))
        stack.enter_context(mock.patch.object(Dataset, "to", clock.wrap("data load", Dataset.to)))
        hook = reporting_hook(clock, cfg, storage, evolution)
        start = time.perf_counter()
        result = wt.train(cfg, on_epoch=hook)
        with clock.section("final artifacts"):
            final_artifacts(evolution, storage)
        total = time.perf_counter() - start
    if result.status != "completed":
        raise RuntimeError(f"the benchmark trial {result.status} at epoch {result.diverged_at}")
    spent = {name: clock.spent.get(name, 0.0) for name in SECTIONS}
    spent[STEP] = total - sum(spent.values())
    spent["total"] = total
    spent["timer overhead"] = sum(clock.entries.values()) * timer_overhead()
    spent["steps"] = math.ceil(len(_dataset(cfg.dataset, cfg.seed).train) / cfg.batch_size) * cfg.epochs
    spent["val_acc"] = result.final["val_acc"]
    return spent


@functools.cache
def timer_overhead() -> float:
    """Seconds one timed section adds (enter, exit, bookkeeping), measured on empty sections."""
    clock, n = Clock(torch.device("cpu")), 20_000
    start = time.perf_counter()
    for _ in range(n):
        with clock.section("x"):
            pass
    return (time.perf_counter() - start) / n


@functools.cache
def _dataset(name: str, seed: int) -> Dataset:
    return load_dataset(name, seed=seed)


def import_times() -> dict[str, float]:
    """What a fresh worker process pays once: the reporting hook's libraries and torch's lazy imports."""
    out = {}
    for label, module in (("mlflow", "mlflow.protos.service_pb2"), ("studies.mlflow", "studies.mlflow"),
                          ("matplotlib (studies.report)", "studies.report")):
        start = time.perf_counter()
        importlib.import_module(module)
        out[label] = time.perf_counter() - start
    # torch.optim imports torch._dynamo when the first optimizer is built (~1.7 s): once per process.
    start = time.perf_counter()
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    out["first optimizer (torch._dynamo)"] = time.perf_counter() - start
    # The fused CPU kernels of TeLU and PWLU: loaded once per process (built once per machine, by make install).
    start = time.perf_counter()
    kernels = activations_native.ops()
    out["fused CPU kernels (load)" if kernels is not None else "fused CPU kernels: unavailable, eager paths"] = time.perf_counter() - start
    return out


def generation_time() -> float:
    """MNIST-1D generated into an empty cache folder: what the first trial on a node pays, once."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        _mnist1d.load(Path(tmp))
        return time.perf_counter() - start


# --- in-memory batches against a DataLoader -----------------------------------------------------------


def fit(model: torch.nn.Module, optimizer: torch.optim.Optimizer, epoch_batches: Callable[[], Iterator], epochs: int) -> int:
    """The training loop both variants share; returns the number of steps taken."""
    steps = 0
    model.train()
    for _ in range(epochs):
        for xb, yb in epoch_batches():
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
    return steps


def drain(epoch_batches: Callable[[], Iterator], epochs: int) -> int:
    steps = 0
    for _ in range(epochs):
        for _batch in epoch_batches():
            steps += 1
    return steps


def loop_comparison(cfg: wt.TrialConfig, epochs: int, repeat: int) -> dict[str, list[float]]:
    device = wt.resolve_device(cfg.device)
    data = _dataset(cfg.dataset, cfg.seed).to(device)
    train = data.train
    loader_data = TensorDataset(train.x, train.y)

    def sources():
        generator = torch.Generator(device=device).manual_seed(cfg.seed)
        loader = DataLoader(loader_data, batch_size=cfg.batch_size, shuffle=True, generator=torch.Generator().manual_seed(cfg.seed))
        return {
            "in-memory": lambda: batches(train, cfg.batch_size, generator=generator, shuffle=True),
            "DataLoader": lambda: iter(loader),
        }

    def fresh_model():
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model, input_shape=data.input_shape, num_classes=data.num_classes,
                            activation=cfg.activation, activation_params=cfg.activation_params, hidden=cfg.hidden).to(device)
        return model, wt.make_optimizer(model, cfg)

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times: dict[str, list[float]] = defaultdict(list)
    steps_seen: dict[str, set[int]] = defaultdict(set)
    for _ in range(repeat):
        for kind in ("in-memory", "DataLoader"):
            model, optimizer = fresh_model()
            source = sources()[kind]
            sync()
            start = time.perf_counter()
            steps_seen[kind].add(fit(model, optimizer, source, epochs))
            sync()
            times[kind].append(time.perf_counter() - start)
            source = sources()[kind]
            start = time.perf_counter()
            drain(source, epochs)
            times[f"{kind} batches only"].append(time.perf_counter() - start)
    if len(steps_seen["in-memory"] | steps_seen["DataLoader"]) != 1:
        raise RuntimeError(f"the two loops took different numbers of steps: {dict(steps_seen)}")
    times["steps"] = [steps_seen["in-memory"].pop()]
    return times


# --- report ---------------------------------------------------------------------------------------------


def print_breakdown(label: str, spent: dict[str, float]) -> float:
    total = spent["total"]
    print(f"\n{label}: {total:.2f} s, {spent['steps']} steps, val_acc {spent['val_acc']:.3f}")
    for name in (STEP, *SECTIONS):
        print(f"  {name:<24} {spent[name]:8.3f} s  {100 * spent[name] / total:6.1f} %")
    outside = 100 * (total - spent[STEP]) / total
    verdict = "meets" if outside < 10 else "misses"
    print(f"  {'outside f/b/s':<24} {total - spent[STEP]:8.3f} s  {outside:6.1f} %   ({verdict} the < 10% target)")
    print(f"  (the timers themselves add ~{spent['timer overhead']:.3f} s, counted in the sections above)")
    return outside


def print_loop(label: str, times: dict[str, list[float]]) -> float:
    med = {k: statistics.median(v) for k, v in times.items() if k != "steps"}
    steps = times["steps"][0]
    ratio = med["DataLoader"] / med["in-memory"]
    print(f"\n{label}: training loop, {steps} steps, median of {len(times['in-memory'])}")
    for kind in ("in-memory", "DataLoader"):
        only = med[f"{kind} batches only"]
        print(f"  {kind:<11} {med[kind]:7.3f} s  {1e3 * med[kind] / steps:6.3f} ms/step   "
              f"(fetching batches alone {only:6.3f} s, {1e3 * only / steps:6.3f} ms/step)")
    verdict = "meets" if ratio >= 3 else "misses"
    print(f"  DataLoader / in-memory: {ratio:.2f}×   ({verdict} the ≥ 3× target)")
    return ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist1d")
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--activations", nargs="+", default=["relu", "pwlu"])
    parser.add_argument("--epochs", type=int, default=167, help="epochs of the breakdown trial (default: a full trial)")
    parser.add_argument("--loop-epochs", type=int, default=30, help="epochs of each timed loop in the comparison")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the loop comparison")
    parser.add_argument("--evaluate-test", action="store_true", help="also score the test split each epoch")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--quick", action="store_true", help="20-epoch trials, 10-epoch loops, 2 rounds")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.loop_epochs, args.repeat = 20, 10, 2
    torch.set_num_threads(1)

    print(f"bench/trial.py: {args.dataset} {args.model}, torch {torch.__version__}, device {args.device}, 1 thread")
    if args.dataset == "mnist1d":
        print(f"MNIST-1D generation (cold cache, once per node): {generation_time():.2f} s")
    imports = ", ".join(f"{k} {v:.2f} s" for k, v in import_times().items())
    print(f"imports a worker process pays once (not counted in the trials below): {imports}")
    _dataset(args.dataset, 0)  # warm the disk cache the trials read
    summary = []
    for activation in args.activations:
        cfg = wt.TrialConfig(dataset=args.dataset, model=args.model, activation=activation, epochs=args.epochs,
                             evaluate_test=args.evaluate_test, device=args.device, threads=1)
        spent = breakdown(cfg)
        outside = print_breakdown(f"{args.model}/{activation} trial", spent)
        loop = loop_comparison(cfg, args.loop_epochs, args.repeat)
        ratio = print_loop(f"{args.model}/{activation}", loop)
        step_ms = 1e3 * statistics.median(loop["in-memory"]) / loop["steps"][0]
        summary.append((activation, spent["total"], step_ms, outside, ratio))
    base, base_total, base_step = summary[0][:3]
    print(f"\nsummary: trial time and in-memory step time (× {base}'s), outside forward/backward/step (% of the trial), "
          "DataLoader / in-memory loop time")
    for activation, total, step_ms, outside, ratio in summary:
        print(f"  {activation:<8} trial {total:7.2f} s ({total / base_total:4.2f}×)   step {step_ms:6.3f} ms ({step_ms / base_step:4.2f}×)"
              f"   {outside:5.1f} %   {ratio:5.2f}×")
    if base == "relu" and any(a == "pwlu" for a, *_ in summary):
        pwlu_total = next(total for a, total, *_ in summary if a == "pwlu")
        verdict = "meets" if pwlu_total / base_total <= 2 else "misses"
        print(f"  pwlu trial / relu trial: {pwlu_total / base_total:.2f}×   ({verdict} the ≤ 2× target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
