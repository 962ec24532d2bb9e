"""LSLU: initial state, a reference formula, gradients, BatchNorm folding and input checks."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

import activations
from activations import LSLU

C = 2
SHAPES = {0: (5, C), 1: (3, C, 7), 2: (2, C, 5, 4)}  # spatial_dims -> (N, C), (N, C, L), (N, C, H, W)
SPATIAL = sorted(SHAPES)


def _randomise(module: LSLU) -> LSLU:
    """Move every parameter off its initial value so that no term is trivially an identity."""
    with torch.no_grad():
        module.theta.copy_(torch.tensor([1.3, 0.7, 1.1][: module.terms]))
        module.omega.copy_(torch.tensor([0.2, -0.5, 0.1][: module.terms]))
        module.weight.copy_(torch.randn_like(module.weight) * 0.5)
        module.bn.weight.copy_(torch.rand_like(module.bn.weight) + 0.5)
        module.bn.bias.copy_(torch.randn_like(module.bn.bias))
    return module


def _series(x, theta, omega):
    """Pre-activations of every ReLU of the series: x, s_1, …, s_n (ReLU(s_n) goes to the kernel)."""
    pre = [x]
    for t, w in zip(theta, omega, strict=False):
        pre.append(t * F.relu(pre[-1]) + w)
    return pre


def _away_from_kinks(module: LSLU, x: torch.Tensor, margin: float = 1e-3) -> torch.Tensor:
    theta, omega = module.theta.detach(), module.omega.detach()
    for _ in range(5):
        near = torch.zeros_like(x, dtype=torch.bool)
        for p in _series(x, theta, omega):
            near |= p.abs() < margin
        x = torch.where(near, x + 7 * margin, x)
    assert all((p.abs() > 1e-4).all() for p in _series(x, theta, omega))
    return x


def _reference(module: LSLU, x: torch.Tensor, training: bool) -> torch.Tensor:
    """BN(k ∗ ReLU(s_n(…s_1(x)))) written out: the depthwise kernel as a sum of shifted copies."""
    a = F.relu(_series(x, module.theta, module.omega)[-1])
    w = module.weight
    if module.spatial_dims == 0:
        z = a * w
    else:
        pad = module.terms
        k = 2 * pad + 1
        if module.spatial_dims == 1:
            ap = F.pad(a, (pad, pad))
            z = sum(w[:, 0, i][None, :, None] * ap[:, :, i : i + a.shape[2]] for i in range(k))
        else:
            ap = F.pad(a, (pad, pad, pad, pad))
            h, wd = a.shape[2:]
            z = sum(
                w[:, 0, i, j][None, :, None, None] * ap[:, :, i : i + h, j : j + wd] for i in range(k) for j in range(k)
            )
    dims = [0] + list(range(2, z.dim()))
    view = [1, -1] + [1] * (z.dim() - 2)
    bn = module.bn
    if training:
        var, mean = torch.var_mean(z, dim=dims, unbiased=False)
    else:
        var, mean = bn.running_var, bn.running_mean
    return (z - mean.view(view)) / torch.sqrt(var.view(view) + bn.eps) * bn.weight.view(view) + bn.bias.view(view)


def test_initial_theta_one_omega_zero_and_snapshot():
    module = activations.create("lslu", num_features=4, spatial_dims=2)
    assert torch.equal(module.theta.detach(), torch.ones(3))
    assert torch.equal(module.omega.detach(), torch.zeros(3))
    snapshot = module.state_snapshot()
    assert snapshot == {"theta": [1.0, 1.0, 1.0], "omega": [0.0, 0.0, 0.0]}
    assert json.loads(json.dumps(snapshot)) == snapshot
    assert all(type(v) is float for v in snapshot["theta"] + snapshot["omega"])


@pytest.mark.parametrize("terms", [1, 2, 5])
def test_snapshot_has_one_float_per_term_and_follows_training(terms):
    module = LSLU(num_features=C, spatial_dims=1, terms=terms)
    assert module.weight.shape == (C, 1, 2 * terms + 1)
    snapshot = module.state_snapshot()
    assert len(snapshot["theta"]) == terms and len(snapshot["omega"]) == terms
    with torch.no_grad():
        module.theta.mul_(2.0)
        module.omega.add_(0.25)
    snapshot = module.state_snapshot()
    assert snapshot["theta"] == [2.0] * terms and snapshot["omega"] == [0.25] * terms
    assert json.loads(json.dumps(snapshot)) == snapshot


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("spatial_dims", SPATIAL)
def test_matches_reference_formula_float64(spatial_dims, training):
    module = _randomise(LSLU(num_features=C, spatial_dims=spatial_dims)).double()
    with torch.no_grad():
        module.bn.running_mean.copy_(torch.tensor([0.3, -0.2]))
        module.bn.running_var.copy_(torch.tensor([1.5, 0.4]))
    x = 2 * torch.randn(SHAPES[spatial_dims], dtype=torch.float64)
    expected = _reference(module, x, training)
    module.train(training)
    torch.testing.assert_close(module(x), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("spatial_dims", SPATIAL)
def test_gradcheck_float64(spatial_dims, training):
    module = _randomise(LSLU(num_features=C, spatial_dims=spatial_dims)).double().train(training)
    x = _away_from_kinks(module, 2 * torch.randn(SHAPES[spatial_dims], dtype=torch.float64)).requires_grad_()
    names = [name for name, _ in module.named_parameters()]
    assert {"theta", "omega", "weight", "bn.weight", "bn.bias"} == set(names)
    params = [p.detach().clone().requires_grad_() for _, p in module.named_parameters()]

    def f(x, *ps):
        return torch.func.functional_call(module, dict(zip(names, ps, strict=False)), (x,))

    assert gradcheck(f, (x, *params))


@pytest.mark.parametrize("spatial_dims", SPATIAL)
def test_fuse_matches_eval_mode_unfused(spatial_dims):
    module = _randomise(LSLU(num_features=C, spatial_dims=spatial_dims))
    shape = (8,) + SHAPES[spatial_dims][1:]
    for _ in range(5):
        module(3 * torch.randn(shape) + 1.0)
    # The running statistics really moved away from their initial 0 / 1.
    assert (module.bn.running_mean.abs() > 1e-2).all() and ((module.bn.running_var - 1).abs() > 1e-2).any()
    x = 2 * torch.randn(SHAPES[spatial_dims]) + 0.5
    unfused = copy.deepcopy(module).eval()
    expected = unfused(x)
    fused = module.fuse()
    assert fused is module and not module.training
    y = module(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("spatial_dims", "shape"),
    [(2, (2, C, 5)), (2, (2, C)), (1, (2, C, 4, 4)), (1, (2, C)), (0, (2, C, 3)), (2, (1, 2, C, 3, 3))],
    ids=str,
)
def test_wrong_input_rank_raises(spatial_dims, shape):
    module = LSLU(num_features=C, spatial_dims=spatial_dims)
    with pytest.raises(ValueError, match="lslu"):
        module(torch.randn(shape))


def test_wrong_channel_count_raises():
    module = LSLU(num_features=C, spatial_dims=1)
    with pytest.raises(ValueError, match="channels"):
        module(torch.randn(2, C + 1, 5))


def test_missing_num_features_raises():
    with pytest.raises(ValueError, match="num_features"):
        LSLU()
    with pytest.raises(ValueError, match="num_features"):
        activations.create("lslu", spatial_dims=1)


@pytest.mark.parametrize("params", [{"spatial_dims": 3}, {"terms": 0}, {"terms": 1.5}], ids=str)
def test_bad_constructor_arguments_raise(params):
    with pytest.raises(ValueError):
        LSLU(num_features=C, **params)


@pytest.mark.parametrize("spatial_dims", SPATIAL)
def test_state_dict_round_trip_includes_running_statistics(spatial_dims):
    trained = _randomise(LSLU(num_features=C, spatial_dims=spatial_dims))
    for _ in range(3):
        trained(2 * torch.randn((6,) + SHAPES[spatial_dims][1:]) - 1)
    fresh = LSLU(num_features=C, spatial_dims=spatial_dims)
    fresh.load_state_dict(trained.state_dict())
    assert torch.equal(fresh.bn.running_mean, trained.bn.running_mean)
    assert fresh.state_snapshot() == trained.state_snapshot()
    x = torch.randn(SHAPES[spatial_dims])
    assert torch.equal(fresh.eval()(x), trained.eval()(x))


def _trained_and_fused(spatial_dims: int) -> tuple[LSLU, LSLU]:
    """A module whose running statistics moved, fused, and an unfused copy in eval mode."""
    module = _randomise(LSLU(num_features=C, spatial_dims=spatial_dims))
    for _ in range(4):
        module(3 * torch.randn((8,) + SHAPES[spatial_dims][1:]) + 1.0)
    unfused = copy.deepcopy(module).eval()
    return module.fuse(), unfused


@pytest.mark.parametrize("spatial_dims", SPATIAL)
def test_fused_module_moves_between_dtypes(spatial_dims):
    fused, unfused = _trained_and_fused(spatial_dims)
    x = torch.randn(SHAPES[spatial_dims], dtype=torch.float64)
    y = fused.double()(x)  # raised before: the fused tensors stayed float32
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, unfused.double()(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("spatial_dims", SPATIAL)
def test_fused_module_state_dict_reproduces_its_output(spatial_dims):
    fused, _ = _trained_and_fused(spatial_dims)
    x = torch.randn(SHAPES[spatial_dims])
    fresh = LSLU(num_features=C, spatial_dims=spatial_dims)
    fresh.load_state_dict(fused.state_dict())
    torch.testing.assert_close(fresh.fuse()(x), fused(x), rtol=0, atol=0)


@pytest.mark.parametrize("spatial_dims", SPATIAL)
def test_loading_weights_into_a_fused_module_takes_effect(spatial_dims):
    fused, _ = _trained_and_fused(spatial_dims)
    other = _randomise(LSLU(num_features=C, spatial_dims=spatial_dims))
    with torch.no_grad():
        other.bn.running_mean.fill_(0.7)
        other.weight.mul_(-2.0)
    fused.load_state_dict(other.state_dict())
    x = torch.randn(SHAPES[spatial_dims])
    torch.testing.assert_close(fused(x), other.eval()(x), rtol=1e-5, atol=1e-5)  # no stale fused kernel


@pytest.mark.parametrize("spatial_dims", SPATIAL)
def test_train_mode_leaves_the_fused_path(spatial_dims):
    fused, _ = _trained_and_fused(spatial_dims)
    steps = int(fused.bn.num_batches_tracked)
    fused.train()
    assert not fused.fused
    fused(torch.randn(SHAPES[spatial_dims]) + 2.0)
    assert int(fused.bn.num_batches_tracked) == steps + 1  # BatchNorm in training mode again
