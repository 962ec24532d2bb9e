"""Populations: P members of one model trained as one batched computation
reproduce P single trainings — the same weights within float noise after an epoch, the same validation accuracy —
with per-member learning rate and L2 in one vectorised Adam step, and a diverging member leaves the others exactly
as they would be without it."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from workers import TrialConfig
from workers.data import batches, load_dataset
from workers.models import build_model
from workers.population import Members, PopulationAdam, PopulationOptimizer, population_loss
from workers.train import evaluate, make_optimizer

LRS, L2S = [1e-3, 3e-3, 2e-3], [0.0, 1e-3, 1e-4]


@pytest.fixture(scope="module")
def mnist1d():
    return load_dataset("mnist1d", seed=0)


def _population(model, lrs, l2s):
    members = Members(copy.deepcopy(model), len(lrs))
    return members, PopulationAdam(members.named_member_parameters(), torch.tensor(lrs), torch.tensor(l2s), members.decayed)


def _epoch_of_population(members, opt, data, seed=0):
    members.train()
    for xb, yb in batches(data.train, 128, generator=torch.Generator().manual_seed(seed)):
        opt.zero_grad()
        population_loss(members(xb), yb).backward()
        opt.step()


def _worst(a: torch.nn.Module, b: torch.nn.Module) -> float:
    sb = b.state_dict()
    return max((v - sb[k]).abs().max().item() for k, v in a.state_dict().items() if v.is_floating_point())


@pytest.fixture(scope="module")
def mnist1d_f64(mnist1d):
    return dataclasses.replace(mnist1d, **{name: dataclasses.replace(getattr(mnist1d, name), x=getattr(mnist1d, name).x.double())
                                           for name in ("train", "val", "test")})


# In float64: the batched and the plain computations sum in different orders, and in float32 that 1e-7 noise is not
# harmless — PWLU's segment choice is a step function of its input and Adam's g/(√v + ε) on near-zero gradients
# turns noise into lr-sized steps, so one flipped segment grows 1e-7 into 1e-4 within an epoch, differently on each
# CPU's kernels. The float64 comparison tests the algorithm (the same training, member by member), not float noise;
# the float32 population is checked on its accuracy (test_a_population_trains_as_its_members_trials_would).
@pytest.mark.parametrize(("model", "activation", "params"), [
    ("mlp", "relu", {}), ("mlp", "telu", {}), ("mlp", "prelu", {}), ("mlp", "pwlu", {"stats_steps": 5}),
    ("mlp", "pwlu", {"stats_steps": 5, "channelwise": False}), ("mlp", "lslu", {}), ("cnn1d", "telu", {}), ("cnn1d", "prelu", {}),
    ("cnn1d", "pwlu", {"stats_steps": 5}), ("cnn1d", "lslu", {}),
])
def test_members_reproduce_their_single_trainings(mnist1d_f64, model, activation, params):
    data = mnist1d_f64
    torch.set_num_threads(1)
    torch.manual_seed(0)
    template = build_model(model, input_shape=(40,), num_classes=10, activation=activation, activation_params=params).double()
    members, opt = _population(template, LRS, L2S)
    _epoch_of_population(members, opt, data)
    for i, (lr, l2) in enumerate(zip(LRS, L2S, strict=True)):
        single = copy.deepcopy(template)
        single_opt = make_optimizer(single, TrialConfig(lr=lr, l2=l2, activation=activation, activation_params=params))
        single.train()
        for xb, yb in batches(data.train, 128, generator=torch.Generator().manual_seed(0)):
            single_opt.zero_grad()
            F.cross_entropy(single(xb), yb).backward()
            single_opt.step()
        member = members.member(i)
        assert _worst(single, member) < 1e-4, (i, lr, l2)
        assert abs(evaluate(single, data.val)[1] - evaluate(member, data.val)[1]) <= 0.005


@pytest.mark.parametrize(("activation", "params"), [("relu", {}), ("pwlu", {"stats_steps": 2}), ("lslu", {})])
def test_image_members_reproduce_their_single_trainings(activation, params):
    """The image CNN (BatchNorm: its running statistics per member) on random 3×16×16 images, four steps, float64.
    (resnet18 agrees too — 2.8e-5 with PWLU — but takes ~2 min a case on this CPU.)"""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x, y = torch.randn(256, 3, 16, 16, dtype=torch.float64), torch.randint(0, 10, (256,))
    template = build_model("cnn", input_shape=(3, 16, 16), num_classes=10, activation=activation, activation_params=params).double()
    members, opt = _population(template, LRS, L2S)
    members.train()
    for xb, yb in zip(x.split(64), y.split(64), strict=True):
        opt.zero_grad()
        population_loss(members(xb), yb).backward()
        opt.step()
    for i, (lr, l2) in enumerate(zip(LRS, L2S, strict=True)):
        single = copy.deepcopy(template)
        single_opt = make_optimizer(single, TrialConfig(lr=lr, l2=l2, activation=activation, activation_params=params))
        single.train()
        for xb, yb in zip(x.split(64), y.split(64), strict=True):
            single_opt.zero_grad()
            F.cross_entropy(single(xb), yb).backward()
            single_opt.step()
        assert _worst(single, members.member(i)) < 1e-4, (i, lr, l2)


def test_a_diverging_member_leaves_the_others_exactly_as_without_it(mnist1d):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    template = build_model("mlp", input_shape=(40,), num_classes=10, activation="pwlu", activation_params={"stats_steps": 5})
    with_it, opt = _population(template, [1e-3, 10.0, 3e-3], [0.0, 0.0, 1e-3])
    without, opt_without = _population(template, [1e-3, 3e-3], [0.0, 1e-3])
    with torch.no_grad():  # and one more member starts from NaN weights
        poisoned, poisoned_opt = _population(template, [1e-3, 1e-3, 3e-3], [0.0, 0.0, 1e-3])
        poisoned.params["net::1::weight"][1] = float("nan")
    for m, o in ((with_it, opt), (without, opt_without), (poisoned, poisoned_opt)):
        _epoch_of_population(m, o, mnist1d)
    diverged, kept_loss = evaluate(with_it.member(1), mnist1d.val)[0], evaluate(with_it.member(0), mnist1d.val)[0]
    assert not math.isfinite(diverged) or diverged > 5 * kept_loss  # lr = 10 did diverge
    assert not math.isfinite(evaluate(poisoned.member(1), mnist1d.val)[0])
    for kept, alone in ((0, 0), (2, 1)):
        for m in (with_it, poisoned):
            same = m.member(kept).state_dict()
            for k, v in without.member(alone).state_dict().items():
                assert torch.equal(same[k], v), (kept, k)


def test_population_adam_is_torch_adam_on_each_member():
    torch.manual_seed(0)
    lr, l2 = torch.tensor([1e-3, 5e-2, 1e-2]), torch.tensor([0.0, 1e-2, 1e-3])
    shapes = {"w": (4, 3), "b": (4,), "late": (2, 5)}
    stacked = {k: torch.randn(3, *s, dtype=torch.float64, requires_grad=True) for k, s in shapes.items()}
    singles = [{k: v[i].detach().clone().requires_grad_(True) for k, v in stacked.items()} for i in range(3)]
    opt = PopulationAdam(stacked, lr, l2, decayed={"w"})
    torch_opts = [torch.optim.Adam([{"params": [p["w"]], "weight_decay": float(l2[i])},
                                    {"params": [p["b"], p["late"]], "weight_decay": 0.0}], lr=float(lr[i])) for i, p in enumerate(singles)]
    for step in range(6):
        grads = {k: torch.randn_like(v) for k, v in stacked.items()}
        for k, v in stacked.items():
            v.grad = None if (k == "late" and step < 3) else grads[k].clone()  # `late` starts later, as PWLU's points do
        for i, p in enumerate(singles):
            for k, v in p.items():
                v.grad = None if (k == "late" and step < 3) else grads[k][i].clone()
            torch_opts[i].step()
        opt.step(scale=0.5 if step == 4 else 1.0)
        if step == 4:  # a schedule's factor: the same as each torch optimizer's lr times it, for one step
            for i, o in enumerate(torch_opts):
                for g in o.param_groups:
                    g["lr"] = float(lr[i])
        for i, p in enumerate(singles):
            for k, v in p.items():
                if step == 3:
                    for g in torch_opts[i].param_groups:
                        g["lr"] = float(lr[i]) * 0.5
                assert torch.allclose(stacked[k][i], v, rtol=0, atol=1e-12), (step, i, k)


@pytest.mark.parametrize(("kind", "options"), [("adamw", {}), ("sgd", {"momentum": 0.9}), ("sgd", {"momentum": 0.9, "nesterov": True}),
                                               ("sgd", {"momentum": 0.0})])
def test_population_adamw_and_sgd_are_torchs_on_each_member(kind, options):
    torch.manual_seed(0)
    lr, l2 = torch.tensor([1e-3, 5e-2, 1e-2]), torch.tensor([0.0, 1e-2, 1e-3])
    shapes = {"w": (4, 3), "b": (4,)}
    stacked = {k: torch.randn(3, *s, dtype=torch.float64, requires_grad=True) for k, s in shapes.items()}
    singles = [{k: v[i].detach().clone().requires_grad_(True) for k, v in stacked.items()} for i in range(3)]
    opt = PopulationOptimizer(stacked, lr, l2, {"w"}, kind, **options)
    make = torch.optim.AdamW if kind == "adamw" else torch.optim.SGD
    extra = {} if kind == "adamw" else {"momentum": options["momentum"], "nesterov": options.get("nesterov", False)}
    torch_opts = [make([{"params": [p["w"]], "weight_decay": float(l2[i])}, {"params": [p["b"]], "weight_decay": 0.0}],
                       lr=float(lr[i]), **extra) for i, p in enumerate(singles)]
    for step in range(5):
        scale = 0.5 if step == 3 else 1.0  # a schedule's factor on every member's lr
        grads = {k: torch.randn_like(v) for k, v in stacked.items()}
        for k, v in stacked.items():
            v.grad = grads[k].clone()
        opt.step(scale)
        for i, p in enumerate(singles):
            for g in torch_opts[i].param_groups:
                g["lr"] = float(lr[i]) * scale
            for k, v in p.items():
                v.grad = grads[k][i].clone()
            torch_opts[i].step()
            for k, v in p.items():
                assert torch.allclose(stacked[k][i], v, rtol=0, atol=1e-12), (step, i, k)


@pytest.mark.parametrize(("activation", "params", "optimizer"), [("telu", {}, "adam"), ("pwlu", {"stats_steps": 10}, "adam"),
                                                                 ("relu", {}, "adamw"), ("relu", {}, "sgd")])
def test_a_population_trains_as_its_members_trials_would(mnist1d, activation, params, optimizer):
    from workers.population import train_population
    from workers.train import train

    cfg = TrialConfig(activation=activation, activation_params=params, epochs=2, batch_size=128, schedule="cosine",
                      warmup_epochs=0.5, evaluate_test=True, optimizer=optimizer, nesterov=optimizer == "sgd")
    settings = [(1e-3, 0.0), (3e-3, 1e-3), (1e30, 0.0)]  # the last one diverges at once
    results = train_population(cfg, settings, dataset=mnist1d)
    for (lr, l2), got in zip(settings, results, strict=True):
        alone = train(cfg.model_copy(update={"lr": lr, "l2": l2}), dataset=mnist1d)
        assert (got.status, got.epochs_run, got.diverged_at) == (alone.status, alone.epochs_run, alone.diverged_at)
        for mine, theirs in zip(got.history, alone.history, strict=True):
            assert mine["epoch"] == theirs["epoch"] and mine["lr"] == pytest.approx(theirs["lr"], rel=1e-12)
            if not theirs["diverged"]:
                for key in ("val_acc", "train_acc", "test_acc"):
                    assert abs(mine[key] - theirs[key]) <= 0.005, key
                assert mine["train_loss"] == pytest.approx(theirs["train_loss"], abs=1e-3)
                assert set(mine["activations"]) == set(theirs["activations"])
    assert results[2].status == "diverged" and len(results[0].history) == 2  # the others trained on without it


class Branchy(torch.nn.Module):
    """Data-dependent control flow in forward: fine alone, impossible under vmap."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.hidden = torch.nn.Linear(math.prod(input_shape), 32)
        self.act = torch.nn.ReLU()
        self.out = torch.nn.Linear(32, num_classes)

    def forward(self, x):
        h = self.act(self.hidden(x.flatten(1)))
        if h.mean() > 1e9:  # never true; vmap cannot branch on a batched value
            h = h * 0
        return self.out(h)


def build_branchy(input_shape, num_classes):
    return Branchy(input_shape, num_classes)


def test_a_model_that_does_not_batch_trains_its_members_one_by_one_saying_why(mnist1d, caplog):
    from workers.population import Unbatchable, run_population
    from workers.train import train

    cfg = TrialConfig(model_source="import", model=f"{__name__}:build_branchy", activation="telu", epochs=2, batch_size=256)
    members = Members(build_model(cfg.model, input_shape=(40,), num_classes=10, activation="telu", source="import"), 2)
    with pytest.raises(Unbatchable, match="RuntimeError"):
        members.check(mnist1d.train.x[:8], mnist1d.train.y[:8])
    cfgs = [cfg.model_copy(update={"lr": lr, "l2": 1e-4}) for lr in (1e-3, 3e-3)]
    reports = []
    with caplog.at_level("WARNING"):
        results = run_population(cfgs, ["m0", "m1"], report=reports.append)
    assert "does not train as a population" in caplog.text and "one after another" in caplog.text
    for c, got in zip(cfgs, results, strict=True):
        alone = train(c)
        assert [r["val_acc"] for r in got.history] == [r["val_acc"] for r in alone.history]
    assert {k: m["status"] for k, m in reports[-1]["members"].items()} == {"m0": "completed", "m1": "completed"}
