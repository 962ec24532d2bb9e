"""One trial: train one model with one activation and one (lr, l2) setting, reporting every epoch.

    python -m workers.train            # or: actstudy train --dataset mnist1d --model mlp --activation telu

With the defaults (MNIST-1D, the MLP, ReLU, Adam at lr 1e-2, batch 100, 167 epochs = 6,012 steps, seed 0) it
prints ~66% test accuracy (the MNIST-1D paper's MLP: 68%) after ~7 s of training on one core. The same
function runs inside Ray Tune trials (`workers.trial.run_trial`) and on its own.
"""

from __future__ import annotations

import math
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from workers.config import TrialConfig
from workers.data import Dataset, Split, augment_cifar, batches, load_dataset
from workers.models import activation_sites, build_model
from workers.precision import autocast, grad_scaler


@dataclass
class TrialResult:
    status: str  # "completed" | "diverged" | "pruned" (a population member stopped at a rung)
    epochs_run: int
    history: list[dict]  # one record per epoch (metrics + activation snapshots)
    diverged_at: int | None = None  # the epoch whose loss went non-finite

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}


@dataclass
class TrainState:
    """What a checkpoint holds: enough to continue the trial bit-for-bit on CPU."""

    config: dict
    epoch: int  # epochs completed
    model: dict
    optimizer: dict
    generator: torch.Tensor
    history: list[dict]
    extra: dict = field(default_factory=dict)  # what a recorder keeps across restarts (e.g. its run id)
    scaler: dict = field(default_factory=dict)  # the fp16 loss scaler's state (empty otherwise)

    def save(self, directory: str | Path) -> Path:
        # Tensors through torch.save; the history (per-epoch activation snapshots: thousands of floats
        # an epoch) pickled on its own — dataclasses.asdict deep-copied it, 5 s a save by epoch 168.
        path = Path(directory) / "state.pt"
        tensors = {"config": self.config, "epoch": self.epoch, "model": self.model, "optimizer": self.optimizer,
                   "generator": self.generator, "extra": self.extra, "scaler": self.scaler}
        torch.save(tensors, path)
        with (Path(directory) / "history.pkl").open("wb") as f:
            pickle.dump(self.history, f, protocol=pickle.HIGHEST_PROTOCOL)
        return path

    @classmethod
    def load(cls, directory: str | Path) -> TrainState:
        tensors = torch.load(Path(directory) / "state.pt", weights_only=False, map_location="cpu")
        with (Path(directory) / "history.pkl").open("rb") as f:
            history = pickle.load(f)
        return cls(history=history, **tensors)


# on_epoch(record, state) — `state()` builds a TrainState lazily, only when a checkpoint is wanted.
EpochHook = Callable[[dict, Callable[[], TrainState]], None]


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def lr_at(step: int, total_steps: int, cfg: TrialConfig, steps_per_epoch: int) -> float:
    """Learning rate at a step: linear warm-up, then constant or cosine to zero."""
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    if cfg.schedule == "cosine":
        progress = (step - warmup) / max(1, total_steps - warmup)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))
    return cfg.lr


def _is_penalised(module: nn.Module, name: str, param: nn.Parameter) -> bool:
    """Weights of conv/linear layers; never biases, norm layers or activation parameters."""
    return name == "weight" and isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d))


def make_optimizer(model: nn.Module, cfg: TrialConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            (decay if cfg.l2_all or _is_penalised(module, name, param) else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.l2}, {"params": no_decay, "weight_decay": 0.0}]
    # fused: one kernel call per step for all parameters, on the CPU too. The default on a CPU is a Python
    # loop of ~10 ops per parameter tensor, which cost an MLP step as much as its forward and backward —
    # more with the learnable activations' many small tensors (bench/README.md, "Trial").
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, fused=True)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, fused=True)
    # Not fused with momentum: torch's fused SGD needs every momentum buffer once any exists, and PWLU's points get
    # their first gradient only after Phase I (a TypeError at that step); the foreach path starts each buffer itself.
    fused = cfg.momentum == 0
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, fused=fused, foreach=not fused)


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int = 2000, precision: str = "fp32") -> tuple[float, float]:
    """Mean cross-entropy and accuracy over a split, in eval mode (forward under the trial's precision)."""
    model.eval()
    loss = torch.zeros((), device=split.x.device)
    correct = torch.zeros((), device=split.x.device, dtype=torch.long)
    for xb, yb in batches(split, batch_size, generator=None, shuffle=False):
        with autocast(precision, split.x.device):
            logits = model(xb)
        loss += F.cross_entropy(logits, yb, reduction="sum")
        correct += (logits.argmax(1) == yb).sum()
    n = max(1, len(split.y))
    return loss.item() / n, correct.item() / n


def snapshots(model: nn.Module) -> dict[str, dict]:
    return {path: m.state_snapshot() for path, m in activation_sites(model).items()}


def train(
    cfg: TrialConfig,
    *,
    on_epoch: EpochHook | None = None,
    resume: TrainState | None = None,
    dataset: Dataset | None = None,
) -> TrialResult:
    """Train `cfg`, calling `on_epoch(record, state)` after every epoch; continue from `resume` if given.

    A `resume` that had already ended (every epoch run, or diverged) is returned as it ended: nothing trains.
    """
    if resume is not None and resume.history and (resume.epoch >= cfg.epochs or resume.history[-1]["diverged"]):
        diverged = bool(resume.history[-1]["diverged"])
        return TrialResult("diverged" if diverged else "completed", resume.epoch, list(resume.history),
                           diverged_at=resume.epoch if diverged else None)
    torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    data = dataset or load_dataset(cfg.dataset, seed=cfg.seed, val_fraction=cfg.val_fraction, data_root=cfg.data_root,
                                   source=cfg.dataset_source, path=cfg.dataset_path, image_size=cfg.image_size, grayscale=cfg.grayscale,
                                   stream_workers=cfg.threads)
    data = data.to(device)
    torch.manual_seed(cfg.seed)
    model = build_model(
        cfg.model,
        input_shape=data.input_shape,
        num_classes=data.num_classes,
        activation=cfg.activation,
        activation_params=cfg.activation_params,
        hidden=cfg.hidden,
        source=cfg.model_source,
        kwargs=cfg.model_kwargs,
        swap=cfg.swap,
    ).to(device)
    optimizer = make_optimizer(model, cfg)
    scaler = grad_scaler(cfg.precision, device)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    history: list[dict] = []
    start = 0
    if resume is not None:
        model.load_state_dict(resume.model)
        optimizer.load_state_dict(resume.optimizer)
        generator.set_state(resume.generator)
        if resume.scaler:
            scaler.load_state_dict(resume.scaler)
        history, start = list(resume.history), resume.epoch
    augment = cfg.augment if cfg.augment is not None else cfg.dataset_source == "builtin" and cfg.dataset.startswith("cifar")
    if augment and len(data.input_shape) != 3:
        raise ValueError(f"augment crops and flips images; {data.name}'s samples are {data.input_shape}")
    steps_per_epoch = math.ceil(len(data.train.y) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs

    for epoch in range(start + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        step = (epoch - 1) * steps_per_epoch
        for xb, yb in batches(data.train, cfg.batch_size, generator=generator, shuffle=True):
            if augment:
                xb = augment_cifar(xb, generator)
            lr = lr_at(step, total_steps, cfg, steps_per_epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with autocast(cfg.precision, device):
                logits = model(xb)
                loss = F.cross_entropy(logits, yb, label_smoothing=cfg.label_smoothing)  # float32 under autocast
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            # Accumulated on the device: one sync per epoch, not one per step.
            loss_sum += loss.detach() * len(yb)
            correct += (logits.detach().argmax(1) == yb).sum()
            step += 1
        n = len(data.train.y)
        train_loss, train_acc = loss_sum.item() / n, correct.item() / n
        val_loss, val_acc = evaluate(model, data.val, precision=cfg.precision)
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "lr": lr,
        }
        if cfg.evaluate_test:
            record["test_loss"], record["test_acc"] = evaluate(model, data.test, precision=cfg.precision)
        record["epoch_time"] = time.perf_counter() - t0
        record["activations"] = snapshots(model)
        diverged = not (math.isfinite(train_loss) and math.isfinite(val_loss))
        record["diverged"] = diverged
        history.append(record)
        if on_epoch is not None:

            def state(epoch=epoch) -> TrainState:
                return TrainState(
                    config=cfg.to_dict(),
                    epoch=epoch,
                    model={k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                    optimizer=optimizer.state_dict(),
                    generator=generator.get_state(),
                    history=list(history),
                    scaler=scaler.state_dict() if scaler.is_enabled() else {},
                )

            on_epoch(record, state)
        if diverged:
            return TrialResult("diverged", epoch, history, diverged_at=epoch)
    return TrialResult("completed", cfg.epochs, history)


def main() -> None:
    start = time.perf_counter()
    result = train(TrialConfig(evaluate_test=True))
    final = result.final
    print(f"{result.status}: test_acc {final['test_acc']:.4f}  val_acc {final['val_acc']:.4f}  "
          f"({result.epochs_run} epochs, {time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
