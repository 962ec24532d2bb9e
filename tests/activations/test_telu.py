"""TeLU(x) = x·tanh(eˣ): finite everywhere, the right limits, exact gradients."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

import activations
from activations import telu

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def _finite_probe(dtype: torch.dtype) -> torch.Tensor:
    big = torch.finfo(dtype).max
    edges = torch.tensor([-big, -1e4, -100.0, -20.0, -1.0, 0.0, 1.0, 10.0, 11.5, 20.0, 100.0, 1e4, big], dtype=torch.float64)
    return torch.cat([edges, torch.linspace(-30, 30, 601, dtype=torch.float64)]).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_forward_and_backward_finite_for_every_finite_input(dtype):
    x = _finite_probe(dtype)
    assert torch.isfinite(x).all()
    x.requires_grad_()
    y = telu(x)
    assert y.dtype == dtype
    assert torch.isfinite(y).all()
    y.backward(torch.ones_like(y))
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_module_finite_at_dtype_extremes_in_a_batch(dtype):
    module = activations.create("telu")
    x = _finite_probe(dtype).reshape(1, 1, -1).requires_grad_()
    y = module(x)
    (y * torch.randn_like(y)).sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_values_at_the_limits(dtype):
    big = torch.finfo(dtype).max
    x = torch.tensor([100.0, 1e4, big, -100.0, -1e4, -big], dtype=dtype)
    y = telu(x)
    # TeLU(x) → x for large x and → 0 (from below) for very negative x.
    assert torch.equal(y[:3], x[:3])
    assert (y[3:] <= 0).all() and (y[3:].double().abs() < 1e-30).all()


def _reference_slope(x: torch.Tensor) -> torch.Tensor:
    """tanh(eˣ) + x·eˣ·sech²(eˣ) in float64; 1 (to float64 precision) past x = 30, where eˣ·sech² is e^(−2e³⁰)."""
    x = x.double()
    e = torch.exp(x.clamp(max=30.0))
    sech2 = 4 / (torch.exp(e) + torch.exp(-e)) ** 2
    return torch.where(x > 30, torch.ones_like(x), torch.tanh(e) + x * e * sech2)


@pytest.mark.parametrize("upstream", [1.0, 2.0, 1e3], ids=lambda g: f"grad{g:g}")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_scaled_upstream_gradients_stay_finite_and_correct(dtype, upstream):
    # Loss scaling sends large upstream gradients; grad·x must never overflow into inf·0 = NaN.
    x = _finite_probe(dtype).requires_grad_()
    telu(x).backward(torch.full_like(x, upstream))
    assert torch.isfinite(x.grad).all()
    expected = upstream * _reference_slope(x.detach())
    tol = max(8 * torch.finfo(dtype).eps, 1e-5)  # a few ulps of the dtype (bfloat16 keeps 8 bits)
    torch.testing.assert_close(x.grad.double(), expected, rtol=tol, atol=tol * upstream)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gradient_tends_to_one_for_large_x(dtype):
    big = torch.finfo(dtype).max
    x = torch.tensor([8.0, 10.0, 12.0, 20.0, 100.0, 1e4, big], dtype=dtype, requires_grad=True)
    telu(x).sum().backward()
    torch.testing.assert_close(x.grad.float(), torch.ones(x.shape), rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gradient_tends_to_zero_for_very_negative_x(dtype):
    big = torch.finfo(dtype).max
    x = torch.tensor([-20.0, -50.0, -100.0, -1e4, -big], dtype=dtype, requires_grad=True)
    telu(x).sum().backward()
    assert (x.grad.float().abs() < 1e-6).all()


def test_gradient_matches_the_analytic_derivative_float64():
    x = torch.linspace(-20, 9, 2901, dtype=torch.float64, requires_grad=True)
    telu(x).sum().backward()
    e = torch.exp(x.detach())
    expected = torch.tanh(e) + x.detach() * e / torch.cosh(e) ** 2
    torch.testing.assert_close(x.grad, expected, rtol=1e-12, atol=1e-14)


def test_gradcheck_float64():
    x = torch.cat([4 * torch.randn(40, dtype=torch.float64), torch.tensor([-15.0, -5.0, 0.0, 5.0, 11.0, 15.0], dtype=torch.float64)])
    x.requires_grad_()
    assert gradcheck(telu, (x,))
    assert gradgradcheck(telu, (x,))


# Edge cases found against independent code (issue 10): each failed before the fix.

ALL_FLOATS = [torch.float64, torch.float32, torch.float16, torch.bfloat16]


@pytest.mark.parametrize("dtype", ALL_FLOATS, ids=str)
def test_infinities_take_the_limits(dtype):
    # TeLU(x) → x and TeLU'(x) → 1 as x → +inf; TeLU(x) → 0 and TeLU'(x) → 0 as x → −inf.
    x = torch.tensor([float("inf"), float("-inf")], dtype=dtype, requires_grad=True)
    y = telu(x)
    y.backward(torch.ones_like(y))
    assert y[0].item() == float("inf") and y[1].item() == 0.0
    assert x.grad.tolist() == [1.0, 0.0]


@pytest.mark.parametrize("dtype", ALL_FLOATS, ids=str)
def test_nan_propagates_without_spoiling_its_neighbours(dtype):
    x = torch.tensor([float("nan"), 1.0, -1.0], dtype=dtype, requires_grad=True)
    y = telu(x)
    y.backward(torch.ones_like(y))
    assert torch.isnan(y[0]) and torch.isnan(x.grad[0])
    assert torch.isfinite(y[1:]).all() and torch.isfinite(x.grad[1:]).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_gradient_exact_at_subnormal_inputs(dtype):
    # At subnormal x the slope is tanh(e⁰) = tanh(1) to far below the dtype's precision.
    tiny = torch.finfo(dtype).tiny
    x = torch.tensor([tiny / 2, tiny / 8, tiny / 1024, -tiny / 3, -tiny / 700, tiny * 0.9], dtype=dtype, requires_grad=True)
    assert (x.abs() < tiny).all() and (x != 0).all()
    telu(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, math.tanh(1.0)), rtol=4 * torch.finfo(dtype).eps, atol=0)
