"""Contract tests every registered activation passes (timm's test_layers.py, Optuna's shared sampler tests).

Each case builds its module through the registry exactly as a model does: `create(name, num_features=C,
spatial_dims=rank - 2)`; the registry forwards only the site hints a class accepts. PWLU is also run in
Phase II with perturbed points (a fresh PWLU is plain ReLU until it has collected its statistics).
"""

from __future__ import annotations

import copy
import json

import pytest
import torch

import activations

C = 3
SHAPES = {2: (4, C), 3: (4, C, 6), 4: (2, C, 4, 5)}  # (N, C), (N, C, L), (N, C, H, W)
RANKS = sorted(SHAPES)


def _perturb_pwlu(module: torch.nn.Module) -> None:
    with torch.no_grad():
        module.points.add_(0.3 * torch.randn_like(module.points))
        module.left_slope.fill_(-0.2)
        module.right_slope.fill_(1.3)


# case id -> (registered name, extra params, what to do to the fresh module)
CASES: dict[str, tuple[str, dict, object]] = {name: (name, {}, None) for name in activations.names()}
CASES["pwlu[phase2]"] = ("pwlu", {"stats_steps": 0}, _perturb_pwlu)
CASES["pwlu[layerwise,phase2]"] = ("pwlu", {"stats_steps": 0, "channelwise": False}, _perturb_pwlu)

# LSLU mixes neighbouring positions with a depthwise kernel and normalises over the batch, so NaN
# locality and empty batches do not apply to it; every other activation works element by element.
ELEMENTWISE = [case for case, (name, _, _) in CASES.items() if name != "lslu"]
LEARNABLE = [case for case, (name, _, _) in CASES.items() if activations.entry(name).learnable]


def build(case: str, rank: int) -> torch.nn.Module:
    name, params, prepare = CASES[case]
    module = activations.create(name, num_features=C, spatial_dims=rank - 2, **params)
    if prepare is not None:
        prepare(module)
    return module


def test_cases_cover_every_registered_name():
    assert {name for name, _, _ in CASES.values()} == set(activations.names())
    # The activations the design's example study names must all be registered.
    assert {"relu", "gelu", "silu", "mish", "telu", "pwlu", "lslu"} <= set(activations.names())
    assert {"prelu", "pwlu", "lslu"} <= {CASES[c][0] for c in LEARNABLE}


@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("case", CASES)
def test_output_shape_equals_input_shape(case, rank):
    module = build(case, rank)
    x = torch.randn(SHAPES[rank])
    y = module(x)
    assert isinstance(y, torch.Tensor)
    assert y.shape == x.shape


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("case", CASES)
def test_dtype_preserved(case, rank, dtype):
    module = build(case, rank).to(dtype)
    x = torch.randn(SHAPES[rank]).to(dtype)
    # Two training forwards: the second is the one that updates running statistics with momentum.
    module(x)
    y = module(x)
    assert y.dtype == dtype
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("case", CASES)
def test_finite_gradients_for_finite_inputs(case, rank, dtype):
    module = build(case, rank).to(dtype)
    x = (3 * torch.randn(SHAPES[rank])).to(dtype).requires_grad_()
    y = module(x)
    y.backward(torch.randn_like(y))
    assert x.grad is not None and x.grad.dtype == dtype and x.grad.shape == x.shape
    assert torch.isfinite(x.grad).all()
    for name, p in module.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("case", CASES)
def test_deterministic(case, rank, training):
    module = build(case, rank).train(training)
    x = torch.randn(SHAPES[rank])
    first = module(x)
    second = module(x)
    assert torch.equal(first, second)


def _extreme_input(shape, dtype=torch.float32) -> torch.Tensor:
    x = 3 * torch.randn(shape, dtype=dtype)
    flat = x.view(-1)
    flat[0::3] = 100.0
    flat[1::3] = -100.0
    return x


@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("case", CASES)
def test_extreme_inputs_give_finite_outputs_and_gradients(case, rank):
    module = build(case, rank)
    x = _extreme_input(SHAPES[rank]).requires_grad_()
    y = module(x)
    assert torch.isfinite(y).all()
    y.backward(torch.ones_like(y))
    # Every activation here has a finite derivative (or a finite one-sided limit) at ±100.
    assert torch.isfinite(x.grad).all()
    for name, p in module.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("case", ELEMENTWISE)
def test_nan_in_gives_nan_out_at_that_position_only(case, rank):
    module = build(case, rank)
    x = torch.randn(SHAPES[rank])
    clean = module(x)
    poisoned = x.clone()
    position = (1,) * x.dim()
    poisoned[position] = float("nan")
    y = module(poisoned)
    nan = torch.zeros_like(x, dtype=torch.bool)
    nan[position] = True
    assert torch.isnan(y[position])
    assert torch.equal(y[~nan], clean[~nan])


@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("case", ELEMENTWISE)
def test_empty_batch(case, rank):
    module = build(case, rank)
    x = torch.randn((0,) + SHAPES[rank][1:], requires_grad=True)
    y = module(x)
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


@pytest.mark.parametrize("name", activations.names())
def test_every_create_builds_a_new_instance(name):
    a = activations.create(name, num_features=C, spatial_dims=1)
    b = activations.create(name, num_features=C, spatial_dims=1)
    assert a is not b
    storages_a = {t.untyped_storage().data_ptr() for t in list(a.parameters()) + list(a.buffers()) if t.numel()}
    storages_b = {t.untyped_storage().data_ptr() for t in list(b.parameters()) + list(b.buffers()) if t.numel()}
    assert not storages_a & storages_b
    before = copy.deepcopy(b.state_dict())
    with torch.no_grad():
        for p in a.parameters():
            p.add_(1.0)
    for key, value in b.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_two_pwlu_from_create_never_share_parameters():
    a = activations.create("pwlu", num_features=C)
    b = activations.create("pwlu", num_features=C)
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=False):
        assert pa is not pb, name
        assert pa.data_ptr() != pb.data_ptr(), name
    before = b.points.detach().clone()
    with torch.no_grad():
        a.points.mul_(-2.0)
    assert torch.equal(b.points, before)


def _train_a_little(module: torch.nn.Module, shape) -> None:
    for _ in range(3):
        module(2 * torch.randn(shape) + 0.5)


@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("case", LEARNABLE)
def test_state_dict_round_trip(case, rank):
    trained = build(case, rank)
    assert list(trained.parameters())
    _train_a_little(trained, SHAPES[rank])
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.1 * torch.randn_like(p))
    state = copy.deepcopy(trained.state_dict())
    torch.manual_seed(123)  # the fresh module must get its values from the state dict, not the seed
    fresh = build(case, rank)
    fresh.load_state_dict(state)
    trained.eval()
    fresh.eval()
    x = _extreme_input(SHAPES[rank])
    assert torch.equal(fresh(x), trained(x))
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, state[key]), key


@pytest.mark.parametrize("case", CASES)
def test_state_snapshot_only_on_evolving_activations_and_plain_json(case):
    module = build(case, 3)
    # The MLflow layout logs the evolution of PWLU and LSLU; they alone report a snapshot.
    assert activations.reports_evolution(module) == (CASES[case][0] in {"pwlu", "lslu"})
    if activations.reports_evolution(module):
        module(torch.randn(SHAPES[3]))
        snapshot = module.state_snapshot()
        assert json.loads(json.dumps(snapshot)) == snapshot
