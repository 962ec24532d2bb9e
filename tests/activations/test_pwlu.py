"""PWLU: Phase I statistics, realignment, the piecewise-linear forward, its gradients, and its state."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

import activations
from activations import PWLU

C = 3


def _reference_pwlu(x, left, right, points, k_left, k_right):
    """Straightforward piecewise-linear PWLU with masks, one channel: points p_0..p_N on [left, right]."""
    n = points.numel() - 1
    step = (right - left) / n
    y = torch.full_like(x, float("nan"))
    below, above = x < left, x >= right
    y[below] = points[0] + k_left * (x[below] - left)
    y[above] = points[n] + k_right * (x[above] - right)
    for j in range(n):
        lo, hi = left + j * step, left + (j + 1) * step
        inside = ~below & ~above
        if j > 0:  # the first and last intervals run to the bounds themselves, whatever the rounding of lo/hi
            inside &= x >= lo
        if j < n - 1:
            inside &= x < hi
        y[inside] = points[j] + (x[inside] - lo) / step * (points[j + 1] - points[j])
    assert not torch.isnan(y).any()
    return y


def _phase2(channelwise: bool, segments: int = 6, dtype=torch.float64) -> PWLU:
    """A Phase II PWLU with per-channel bounds, random points and non-trivial tail slopes."""
    module = PWLU(num_features=C if channelwise else None, segments=segments, stats_steps=0).to(dtype)
    channels = module.channels
    with torch.no_grad():
        module.left_bound.copy_(torch.tensor([-1.5, -0.7, -2.2][:channels], dtype=dtype))
        module.right_bound.copy_(torch.tensor([2.0, 1.1, 0.9][:channels], dtype=dtype))
        module.points.add_(0.5 * torch.randn_like(module.points))
        module.left_slope.copy_(torch.tensor([-0.3, 0.4, 0.1][:channels], dtype=dtype))
        module.right_slope.copy_(torch.tensor([1.7, 0.6, -0.5][:channels], dtype=dtype))
    return module


def _breakpoints(module: PWLU) -> torch.Tensor:
    """(channels, N+1) positions of the grid points."""
    grid = torch.linspace(0, 1, module.segments + 1, dtype=module.points.dtype)
    lo, hi = module.left_bound.detach()[:, None], module.right_bound.detach()[:, None]
    return lo + (hi - lo) * grid


def _input_away_from_breakpoints(module: PWLU, shape, margin=1e-3) -> torch.Tensor:
    """Inputs spread over both tails and the interior, none within `margin` of a breakpoint."""
    bp = _breakpoints(module)  # (channels, N+1)
    channel_dim = 1 if module.channelwise else None
    lo = bp[:, :1] - 2.0
    hi = bp[:, -1:] + 2.0
    view = [1] * len(shape)
    if channel_dim is not None:
        view[1] = module.channels
    u = torch.rand(shape, dtype=module.points.dtype)
    x = lo.reshape(view) + u * (hi - lo).reshape(view)
    for _ in range(3):
        near = _distance_to_breakpoints(module, x) < margin
        x = torch.where(near, x + 5 * margin, x)
    assert (_distance_to_breakpoints(module, x) > 1e-4).all()
    # Both tails and the interior are exercised.
    assert (x < bp[:, 0].min()).any() and (x > bp[:, -1].max()).any()
    return x


def _distance_to_breakpoints(module: PWLU, x: torch.Tensor) -> torch.Tensor:
    bp = _breakpoints(module)
    if module.channelwise:
        xs = x.transpose(0, 1).reshape(module.channels, -1)  # (C, M)
        d = (xs[:, :, None] - bp[:, None, :]).abs().amin(-1)
        return d.reshape(x.transpose(0, 1).shape).transpose(0, 1)
    return (x[..., None] - bp[0]).abs().amin(-1)


# ---------------------------------------------------------------- Phase I


@pytest.mark.parametrize("channelwise", [True, False], ids=["channelwise", "layerwise"])
def test_initialised_as_relu_exactly(channelwise):
    module = PWLU(num_features=C if channelwise else None)
    assert module.channelwise is channelwise
    assert int(module.phase) == 1
    x = 4 * torch.randn(5, C, 7)
    assert torch.equal(module(x), F.relu(x))
    module.eval()
    assert torch.equal(module(x), F.relu(x))


def test_initial_points_are_relu_on_the_initial_grid():
    module = PWLU(num_features=C, segments=8, init_bound=2.0)
    torch.testing.assert_close(module.left_bound.detach(), torch.full((C,), -2.0))
    torch.testing.assert_close(module.right_bound.detach(), torch.full((C,), 2.0))
    torch.testing.assert_close(module.points.detach(), F.relu(_breakpoints(module)))
    assert torch.equal(module.left_slope.detach(), torch.zeros(C))
    assert torch.equal(module.right_slope.detach(), torch.ones(C))


@pytest.mark.parametrize("channelwise", [True, False], ids=["channelwise", "layerwise"])
def test_shapes_of_channelwise_and_layerwise_parameters(channelwise):
    module = PWLU(num_features=C, segments=5, channelwise=channelwise)
    channels = C if channelwise else 1
    assert module.points.shape == (channels, 6)
    for name in ("left_bound", "right_bound", "left_slope", "right_slope", "running_mean", "running_var"):
        assert getattr(module, name).shape == (channels,), name


def test_phase1_parameters_are_frozen():
    module = PWLU(num_features=C)
    x = torch.randn(4, C, requires_grad=True)
    module(x).sum().backward()
    assert torch.equal(x.grad, (x > 0).float())
    assert all(p.grad is None for p in module.parameters())


def test_phase1_collects_statistics_only_in_training_mode():
    module = PWLU(num_features=C, stats_steps=3)
    x = torch.randn(8, C, 5) * torch.tensor([1.0, 2.0, 3.0])[:, None] + torch.tensor([0.5, -1.0, 2.0])[:, None]
    module.eval()
    for _ in range(5):
        module(x)
    assert int(module.steps) == 0 and int(module.phase) == 1
    assert torch.equal(module.running_mean, torch.zeros(C)) and torch.equal(module.running_var, torch.ones(C))
    module.train()
    module(x)
    assert int(module.steps) == 1
    var, mean = torch.var_mean(x, dim=(0, 2), unbiased=False)
    torch.testing.assert_close(module.running_mean, mean)
    torch.testing.assert_close(module.running_var, var)


def test_eval_mode_never_steps_or_realigns():
    module = PWLU(num_features=C, stats_steps=1).eval()
    before = copy.deepcopy(module.state_dict())
    for _ in range(4):
        module(torch.randn(4, C) + 3)
    assert int(module.phase) == 1 and module.state_snapshot()["phase"] == 1
    for key, value in module.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_empty_batch_is_not_a_statistics_step():
    module = PWLU(num_features=C, stats_steps=2)
    module(torch.randn(0, C, 4))
    assert int(module.steps) == 0 and int(module.phase) == 1


def test_phase1_runs_in_double_and_half_buffers():
    for dtype in (torch.float64, torch.float16, torch.bfloat16):
        module = PWLU(num_features=C, stats_steps=3).to(dtype)
        for _ in range(3):
            module(torch.randn(6, C, 4, dtype=dtype))
        assert int(module.phase) == 2, dtype
        assert module.points.dtype == dtype and torch.isfinite(module.points).all()


def test_phase1_statistics_of_a_float64_input_are_float64():
    # A large offset with a small spread: in float32 (as before) 1e8 + 1e-3·z rounds to 1e8 and the variance is 0.
    module = PWLU(num_features=C, stats_steps=5).double()
    x = 1e8 + 1e-3 * torch.randn(16, C, 4, dtype=torch.float64)
    module(x)
    var, mean = torch.var_mean(x, dim=(0, 2), unbiased=False)
    torch.testing.assert_close(module.running_mean, mean, rtol=1e-15, atol=0)
    torch.testing.assert_close(module.running_var, var, rtol=1e-9, atol=0)


def test_phase1_statistics_of_a_half_input_are_taken_in_float32():
    module = PWLU(num_features=C, stats_steps=5)
    x = (300 + 0.5 * torch.randn(64, C, 8)).to(torch.float16)
    module(x)
    var, mean = torch.var_mean(x.float(), dim=(0, 2), unbiased=False)
    torch.testing.assert_close(module.running_var, var, rtol=1e-5, atol=0)


# ---------------------------------------------------------------- realignment


@pytest.mark.parametrize("channelwise", [True, False], ids=["channelwise", "layerwise"])
def test_enters_phase2_after_stats_steps_with_bounds_from_the_statistics(channelwise):
    steps, k = 4, 2.5
    module = PWLU(num_features=C if channelwise else None, stats_steps=steps, bound_k=k, segments=8)
    mean = torch.tensor([0.5, -1.0, 2.0])
    std = torch.tensor([1.0, 2.0, 0.5])
    if not channelwise:
        mean, std = torch.tensor([1.5]), torch.tensor([2.0])
    for i in range(steps):
        assert int(module.phase) == 1
        x = torch.randn(256, C, 16) * std[:, None] + mean[:, None]
        assert torch.equal(module(x), F.relu(x))  # Phase I until the last statistics step is done
        assert int(module.steps) == i + 1
    assert int(module.phase) == 2
    assert module.state_snapshot()["phase"] == 2
    torch.testing.assert_close(module.left_bound.detach(), mean - k * std, rtol=0, atol=0.1)
    torch.testing.assert_close(module.right_bound.detach(), mean + k * std, rtol=0, atol=0.1)
    # Points reset to ReLU on the new grid, tails K_L = 0 and K_R = 1.
    torch.testing.assert_close(module.points.detach(), F.relu(_breakpoints(module)), rtol=0, atol=1e-6)
    assert torch.equal(module.left_slope.detach(), torch.zeros(module.channels))
    assert torch.equal(module.right_slope.detach(), torch.ones(module.channels))
    # Phase II no longer collects statistics.
    frozen = module.running_mean.clone(), module.running_var.clone(), int(module.steps)
    module(torch.randn(8, C, 4) * 10)
    assert torch.equal(module.running_mean, frozen[0]) and torch.equal(module.running_var, frozen[1])
    assert int(module.steps) == frozen[2]


def test_after_realignment_forward_is_relu_at_grid_points_and_away_from_zero():
    module = PWLU(num_features=C, stats_steps=2, segments=8).double()
    for _ in range(2):
        module(torch.randn(64, C, 8, dtype=torch.float64) * 1.5 + 0.2)
    assert int(module.phase) == 2
    bp = _breakpoints(module)  # (C, N+1)
    at_grid = bp[None]  # (1, C, N+1): every channel at its own grid points
    torch.testing.assert_close(module(at_grid), F.relu(at_grid), rtol=0, atol=1e-12)
    # Away from the interval that holds 0 the realigned curve is ReLU itself, tails included.
    x = torch.linspace(-12, 12, 2001, dtype=torch.float64).expand(1, C, -1).contiguous()
    step = (bp[:, 1] - bp[:, 0])[None, :, None]
    away = x.abs() > step
    y = module(x)
    torch.testing.assert_close(y[away], F.relu(x)[away], rtol=0, atol=1e-12)
    # Inside it, linear interpolation of ReLU: never below ReLU, never more than a step above it.
    assert ((y - F.relu(x)) >= -1e-12).all() and ((y - F.relu(x)) <= step).all()


def test_realigned_bounds_never_collapse_on_a_constant_input():
    module = PWLU(num_features=C, stats_steps=2)
    for _ in range(2):
        module(torch.full((4, C, 3), 0.7))
    width = module.right_bound - module.left_bound
    assert (width > 0).all()
    y = module(torch.full((4, C, 3), 0.7, requires_grad=True))
    assert torch.isfinite(y).all()


# ---------------------------------------------------------------- Phase II forward and gradients


@pytest.mark.parametrize("channelwise", [True, False], ids=["channelwise", "layerwise"])
def test_phase2_forward_matches_reference_piecewise_linear(channelwise):
    module = _phase2(channelwise, segments=7)
    x = _input_away_from_breakpoints(module, (6, C, 9), margin=0.0)
    # The breakpoints themselves too (continuity makes either neighbouring segment right there).
    bp = _breakpoints(module).expand(C, -1) if not channelwise else _breakpoints(module)
    x = torch.cat([x, bp[None].expand(1, C, -1)[..., :1].expand(1, C, 9).clone()], 0)
    x[-1, :, : bp.shape[1]] = bp
    y = module(x)
    assert y.dtype == torch.float64
    for c in range(C):
        k = c if channelwise else 0
        expected = _reference_pwlu(
            x[:, c],
            module.left_bound[k].item(),
            module.right_bound[k].item(),
            module.points[k].detach(),
            module.left_slope[k].item(),
            module.right_slope[k].item(),
        )
        torch.testing.assert_close(y[:, c], expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("channelwise", [True, False], ids=["channelwise", "layerwise"])
def test_phase2_forward_is_continuous_at_breakpoints(channelwise):
    module = _phase2(channelwise, segments=5)
    bp = _breakpoints(module)  # (channels, N+1)
    at = bp.expand(C, -1)[None] if not channelwise else bp[None]  # (1, C, N+1)
    expected_points = module.points.detach().expand(C, -1)[None] if not channelwise else module.points.detach()[None]
    for delta in (-1e-9, 0.0, 1e-9):
        torch.testing.assert_close(module(at + delta), expected_points, rtol=0, atol=1e-7)


@pytest.mark.parametrize("channelwise", [True, False], ids=["channelwise", "layerwise"])
def test_gradcheck_phase2_float64(channelwise):
    module = _phase2(channelwise)
    x = _input_away_from_breakpoints(module, (3, C, 5)).requires_grad_()
    names = [name for name, _ in module.named_parameters()]
    assert set(names) == {"left_bound", "right_bound", "points", "left_slope", "right_slope"}
    params = [p.detach().clone().requires_grad_() for _, p in module.named_parameters()]

    def f(x, *ps):
        return torch.func.functional_call(module, dict(zip(names, ps, strict=False)), (x,))

    assert gradcheck(f, (x, *params))


def test_phase2_all_parameters_receive_gradients():
    module = _phase2(True)
    x = _input_away_from_breakpoints(module, (4, C, 6))
    module(x).pow(2).sum().backward()
    for name, p in module.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_float32_module_follows_a_half_input(dtype):
    module = _phase2(True, dtype=torch.float32)
    x = _input_away_from_breakpoints(module, (4, C, 6)).to(dtype).requires_grad_()
    y = module(x)
    assert y.dtype == dtype
    torch.testing.assert_close(y.float(), module(x.float()), rtol=2e-2, atol=2e-2)
    y.sum().backward()
    assert x.grad.dtype == dtype and module.points.grad.dtype == torch.float32
    assert torch.isfinite(module.points.grad).all()


def test_phase2_nan_stays_at_its_position():
    module = _phase2(True)
    x = _input_away_from_breakpoints(module, (2, C, 4))
    x[1, 2, 3] = float("nan")
    y = module(x)
    assert torch.isnan(y[1, 2, 3]) and torch.isnan(y).sum() == 1


def test_wrong_channel_count_raises():
    module = PWLU(num_features=C)
    with pytest.raises(ValueError, match="channels"):
        module(torch.randn(2, C + 1, 4))


@pytest.mark.parametrize(
    "params",
    [{"segments": 1}, {"segments": 2.5}, {"stats_steps": -1}, {"bound_k": 0}, {"momentum": 0}, {"momentum": 1.5}, {"init_bound": 0}],
    ids=str,
)
def test_bad_constructor_arguments_raise(params):
    with pytest.raises(ValueError):
        activations.create("pwlu", num_features=C, **params)


def test_channelwise_needs_num_features():
    with pytest.raises(ValueError, match="num_features"):
        PWLU(channelwise=True)


# ---------------------------------------------------------------- state


def test_state_snapshot_layerwise():
    module = PWLU(segments=6)
    snapshot = module.state_snapshot()
    assert set(snapshot) == {"left_bound", "right_bound", "left_slope", "right_slope", "points", "phase"}
    assert json.loads(json.dumps(snapshot)) == snapshot
    for key in ("left_bound", "right_bound", "left_slope", "right_slope"):
        assert type(snapshot[key]) is float, key
    assert isinstance(snapshot["points"], list) and len(snapshot["points"]) == 7
    assert all(type(v) is float for v in snapshot["points"])
    assert snapshot["phase"] == 1 and type(snapshot["phase"]) is int
    assert (snapshot["left_bound"], snapshot["right_bound"], snapshot["left_slope"], snapshot["right_slope"]) == (-3.0, 3.0, 0.0, 1.0)


def test_state_snapshot_channelwise():
    module = _phase2(True, segments=4)
    snapshot = module.state_snapshot()
    assert json.loads(json.dumps(snapshot)) == snapshot
    for key in ("left_bound", "right_bound", "left_slope", "right_slope"):
        assert isinstance(snapshot[key], list) and len(snapshot[key]) == C, key
        assert all(type(v) is float for v in snapshot[key]), key
    assert len(snapshot["points"]) == C and all(len(row) == 5 for row in snapshot["points"])
    assert all(type(v) is float for row in snapshot["points"] for v in row)
    assert snapshot["phase"] == 2
    torch.testing.assert_close(torch.tensor(snapshot["points"], dtype=torch.float64), module.points.detach(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("channelwise", [True, False], ids=["channelwise", "layerwise"])
def test_state_dict_round_trip_carries_phase2(channelwise):
    num_features = C if channelwise else None
    trained = PWLU(num_features=num_features, stats_steps=2)
    for _ in range(2):
        trained(torch.randn(16, C, 5) * 2 + 1)
    assert int(trained.phase) == 2
    with torch.no_grad():
        trained.points.add_(0.2 * torch.randn_like(trained.points))
    fresh = PWLU(num_features=num_features, stats_steps=2)
    assert int(fresh.phase) == 1
    fresh.load_state_dict(trained.state_dict())
    assert int(fresh.phase) == 2 and fresh.state_snapshot()["phase"] == 2
    x = torch.randn(4, C, 6) * 4
    for training in (True, False):
        trained.train(training)
        fresh.train(training)
        assert torch.equal(fresh(x), trained(x))
    assert fresh.state_snapshot() == trained.state_snapshot()


def test_state_dict_round_trip_resumes_phase1_step_count():
    partial = PWLU(num_features=C, stats_steps=3)
    for _ in range(2):
        partial(torch.randn(8, C) + 2)
    fresh = PWLU(num_features=C, stats_steps=3)
    fresh.load_state_dict(partial.state_dict())
    assert int(fresh.steps) == 2 and int(fresh.phase) == 1
    fresh(torch.randn(8, C) + 2)  # the third statistics step realigns
    assert int(fresh.phase) == 2
    assert (fresh.left_bound < 2).all() and (fresh.right_bound > 2).all()
