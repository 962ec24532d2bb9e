"""A population's training: what `workers.train.train` does for one (lr, l2), done for many at once — the same model,
data, batches, epochs and schedule, one batched step for all. Each member's history is the one its own trial would
record (per-epoch train and validation loss and accuracy, its learning rate, its activations' state); a member whose
loss is no longer finite ends `diverged` there and leaves the batch.

Adam, AdamW or SGD in float32: other precisions are refused (a shared loss scale would let members leak into
each other), naming what is taken.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable

import torch

from workers.config import TrialConfig
from workers.data import Dataset, augment_cifar, batches, load_dataset
from workers.models import build_model
from workers.population._members import Members, member_losses
from workers.population._optim import PopulationOptimizer
from workers.train import TrialResult, lr_at, snapshots

# After each epoch: (epoch, {member: its record}) for the members that trained it → the members to stop there
# (pruned: they leave the batch as a diverged one does).
OnEpoch = Callable[[int, dict[int, dict]], Iterable[int]]


def train_population(cfg: TrialConfig, settings: list[tuple[float, float]], *, dataset: Dataset | None = None,
                     on_epoch: OnEpoch | None = None) -> list[TrialResult]:
    """Train `cfg` once per (lr, l2) in `settings`, as one population; their results in that order (completed,
    diverged, or pruned where `on_epoch` stopped them)."""
    if cfg.precision != "fp32":
        raise ValueError(f"a population trains in fp32 for now, not {cfg.precision}")
    if not settings:
        raise ValueError("a population needs at least one (lr, l2)")
    torch.set_num_threads(cfg.threads)
    data = dataset or load_dataset(cfg.dataset, seed=cfg.seed, val_fraction=cfg.val_fraction, data_root=cfg.data_root,
                                   source=cfg.dataset_source, path=cfg.dataset_path, image_size=cfg.image_size,
                                   grayscale=cfg.grayscale)
    torch.manual_seed(cfg.seed)
    template = build_model(cfg.model, input_shape=data.input_shape, num_classes=data.num_classes, activation=cfg.activation,
                           activation_params=cfg.activation_params, hidden=cfg.hidden, source=cfg.model_source,
                           kwargs=cfg.model_kwargs, swap=cfg.swap)
    members = Members(template, len(settings))
    members.check(*next(iter(batches(data.train, cfg.batch_size, generator=None, shuffle=False))))
    tracked = bool(snapshots(template))  # learnable activations: each member's state is recorded every epoch
    params = members.named_member_parameters()
    opt = PopulationOptimizer(params, torch.tensor([lr for lr, _ in settings]), torch.tensor([l2 for _, l2 in settings]),
                              set(params) if cfg.l2_all else members.decayed, cfg.optimizer, momentum=cfg.momentum,
                              nesterov=cfg.nesterov)
    unit = cfg.model_copy(update={"lr": 1.0})  # the schedule's factor; each member's rate is its lr times it
    generator = torch.Generator().manual_seed(cfg.seed)
    augment = cfg.augment if cfg.augment is not None else cfg.dataset_source == "builtin" and cfg.dataset.startswith("cifar")
    steps_per_epoch = math.ceil(len(data.train.y) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    alive = list(range(len(settings)))
    histories: list[list[dict]] = [[] for _ in settings]
    ended: dict[int, tuple[str, int]] = {}  # member → (diverged | pruned, at epoch)
    step = 0
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        members.train()
        loss_sum, correct = torch.zeros(len(alive)), torch.zeros(len(alive), dtype=torch.long)
        for xb, yb in batches(data.train, cfg.batch_size, generator=generator, shuffle=True):
            if augment:
                xb = augment_cifar(xb, generator)
            scale = lr_at(step, total, unit, steps_per_epoch)
            logits = members(xb)
            losses = member_losses(logits, yb, cfg.label_smoothing)
            opt.zero_grad()
            losses.sum().backward()
            opt.step(scale)
            loss_sum += losses.detach() * len(yb)
            correct += (logits.detach().argmax(-1) == yb).sum(1)
            step += 1
        val_loss, val_acc = _evaluate(members, data.val)
        test = _evaluate(members, data.test) if cfg.evaluate_test else None
        seconds = time.perf_counter() - t0
        n = len(data.train.y)
        records = {}
        for row, i in enumerate(alive):
            record = {"epoch": epoch, "train_loss": loss_sum[row].item() / n, "train_acc": correct[row].item() / n,
                      "val_loss": val_loss[row], "val_acc": val_acc[row], "lr": settings[i][0] * scale}
            if test is not None:
                record["test_loss"], record["test_acc"] = test[0][row], test[1][row]
            record["epoch_time"] = seconds / len(alive)
            record["activations"] = snapshots(members.member(row)) if tracked else {}
            record["diverged"] = not (math.isfinite(record["train_loss"]) and math.isfinite(record["val_loss"]))
            histories[i].append(record)
            records[i] = record
            if record["diverged"]:
                ended[i] = ("diverged", epoch)
        if on_epoch is not None:
            for i in on_epoch(epoch, records):
                if i in records and i not in ended and epoch < cfg.epochs:
                    ended[i] = ("pruned", epoch)
        kept = [row for row, i in enumerate(alive) if i not in ended]
        if len(kept) < len(alive):
            if not kept:
                break
            members.keep(kept)
            opt.keep(kept, members.named_member_parameters())
            alive = [alive[row] for row in kept]
    return [_result(ended.get(i), cfg.epochs, histories[i]) for i in range(len(settings))]


def _result(end: tuple[str, int] | None, epochs: int, history: list[dict]) -> TrialResult:
    if end is None:
        return TrialResult("completed", epochs, history)
    status, epoch = end
    return TrialResult(status, epoch, history, diverged_at=epoch if status == "diverged" else None)


@torch.no_grad()
def _evaluate(members: Members, split, batch_size: int = 2000) -> tuple[list[float], list[float]]:
    """Each member's mean cross-entropy and accuracy over a split, in eval mode (as workers.train.evaluate)."""
    members.eval()
    loss, correct = torch.zeros(members.size), torch.zeros(members.size, dtype=torch.long)
    for xb, yb in batches(split, batch_size, generator=None, shuffle=False):
        logits = members(xb)
        loss += member_losses(logits, yb) * len(yb)
        correct += (logits.argmax(-1) == yb).sum(1)
    n = max(1, len(split.y))
    return (loss / n).tolist(), (correct.double() / n).tolist()
