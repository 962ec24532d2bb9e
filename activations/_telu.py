"""TeLU, the hyperbolic tangent exponential linear unit (Fernandez & Mali, arXiv 2412.20269)."""

from __future__ import annotations

import math

import torch
from torch import nn

from activations import _native
from activations._blocks import Workspace, block_size, compute_dtype, flat_in_memory_order

# tanh(e^x) == 1 exactly in float64 (and every narrower type) once x >= 10, and the derivative term
# x·e^x·sech²(e^x) underflows to 0 there. Clamping exp's argument keeps e^x finite (float16 overflows
# at e^11.1) so autograd never forms 0·inf; above the clamp the gradient is tanh(e^10) = 1, the true limit.
_EXP_CLAMP = 10.0
# tanh(e^x) where |x| is so small that y = x·tanh(e^x) is subnormal or 0, and y / x loses precision:
# tanh(e^x) = tanh(1) + O(x) there, exact to far below the dtype's precision.
_TANH_1 = math.tanh(1.0)


def _telu_slope(x: torch.Tensor) -> torch.Tensor:
    """dTeLU/dx = tanh(eˣ) + x·(eˣ·sech²(eˣ)); the bracket (≤ 0.45) is formed before x multiplies it.
    x is clamped where the bracket is exactly 0 (and ±inf to finite), so that ±inf never meets that 0."""
    e = torch.exp(x.clamp(max=_EXP_CLAMP))
    t = torch.tanh(e)
    return t + x.clamp(min=-torch.finfo(x.dtype).max, max=_EXP_CLAMP) * (e * (1 - t * t))


class _TeLUFunction(torch.autograd.Function):
    """Plain autograd would form grad·x first: for large |x| that overflows (float16: x = −100 with an
    upstream gradient of 1000) and then meets the 0 of eˣ·sech²(eˣ) as inf·0 = NaN. Here the bounded
    slope is built first and only then scaled by grad.

    Speed: both passes walk the tensor in blocks whose temporaries live in a few reused buffers
    (float32 for half inputs), which on a CPU costs a fraction of the same ops over the whole tensor,
    and the backward takes tanh(eˣ) = y / x from the saved output instead of a second tanh (the
    slowest op here; tanh(e⁰) where |x| is within twice the smallest normal number of 0, where y is
    subnormal, and 1 past the point where tanh(eˣ) rounds to 1, +inf included) and sech²(eˣ) from e^(−2eˣ), which is more accurate than
    1 − tanh²(eˣ) too. Saved: x and y (the output, which the next layer usually keeps alive anyway).
    A backward that must itself be differentiable (create_graph=True) uses the formulas as plain ops."""

    @staticmethod
    def forward(ctx, x):
        y = _blockwise(_value_block, x)
        ctx.save_for_backward(x, y)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, y = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: the backward must be differentiable
            return grad * _telu_slope(x)
        near_zero = 2 * torch.finfo(y.dtype).tiny  # |x| below it: y is subnormal (or 0), y / x imprecise
        # e^(−2eˣ) stays normal up to x = ln(−ln(tiny)/2): 3.77 in float32, 5.87 in float64, where tanh(eˣ)
        # is 1 in the dtype.
        bracket_clamp = math.log(-math.log(torch.finfo(compute_dtype(x.dtype)).tiny) / 2) - 0.01
        return _blockwise(
            lambda xb, yb, gb, out, work: _slope_block(xb, yb, gb, out, work, near_zero, bracket_clamp),
            x,
            y,
            grad,
        )


def _value_block(xb, out, work):
    t = torch.clamp(xb, max=_EXP_CLAMP, out=work(0)).exp_().tanh_()
    # −inf·tanh(e^−inf) would be −inf·0: x is clamped to the dtype's finite range below, so the limit 0 comes out.
    torch.mul(torch.clamp(xb, min=-torch.finfo(xb.dtype).max, out=work(1)), t, out=out)


def _slope_block(xb, yb, gb, out, work, near_zero, bracket_clamp):
    # x·eˣ·sech²(eˣ) = 4·x·eˣ·u/(1 + u)² with u = e^(−2eˣ) ∈ (0, 1]: no cancellation, unlike 1 − tanh²(eˣ)
    # near 1. Past x = bracket_clamp the term is below the dtype's precision; clamping x there keeps u
    # a normal number (subnormal arithmetic is many times slower) and the term ~0 even for x = 3e38.
    # −inf is clamped to the dtype's finite range, where the term is 0 too.
    xc = torch.clamp(xb, min=-torch.finfo(xb.dtype).max, max=bracket_clamp, out=work(0))
    e = torch.exp(xc, out=work(1))
    u = torch.mul(e, -2.0, out=work(2)).exp_()
    u.div_(torch.add(u, 1.0, out=work(3)).square_()).mul_(e)
    t = torch.div(yb, xb, out=work(1))  # tanh(eˣ), to the precision of y
    mask = work("mask", torch.bool)
    # Where y / x fails: within near_zero of 0 (x = 0, or y subnormal) tanh(e⁰) is exact to the dtype's
    # precision; past bracket_clamp (+inf included, where y / x = inf / inf) tanh(eˣ) is 1 in the dtype.
    t.masked_fill_(torch.lt(torch.abs(xb, out=work(3)), near_zero, out=mask), _TANH_1)
    t.masked_fill_(torch.gt(xb, bracket_clamp, out=mask), 1.0)
    torch.mul(gb, torch.addcmul(t, u, xc, value=4.0, out=t), out=out)


def _blockwise(kernel, x, *others):
    """kernel(x block, other blocks…, out block, work) over x in memory order; out has x's layout."""
    x_flat = flat_in_memory_order(x)
    if x_flat is None:
        x = x.contiguous()
        x_flat = x.view(-1)
    flats = []
    for t in others:
        flat = flat_in_memory_order(t) if t.stride() == x.stride() else None
        flats.append(flat if flat is not None else flat_in_memory_order(torch.empty_like(x).copy_(t)))  # e.g. a sum()'s expanded grad
    dtype = compute_dtype(x.dtype)
    block = block_size(x.device)
    workspace = Workspace(x.device)
    out = torch.empty_like(x)
    out_flat = flat_in_memory_order(out)
    for start in range(0, x_flat.numel(), block):
        stop = min(start + block, x_flat.numel())

        def work(key, kind=dtype, n=stop - start):
            return workspace.flat(key, kind, n)

        blocks = [f[start:stop] for f in (x_flat, *flats)]
        blocks = [b if b.dtype == dtype else work(("in", i)).copy_(b) for i, b in enumerate(blocks)]
        kernel(*blocks, out_flat[start:stop], work)
    return out


def telu(x: torch.Tensor) -> torch.Tensor:
    """TeLU(x) = x·tanh(eˣ), finite with finite gradients for every finite input."""
    kernels = _native.ops_for(x)
    if kernels is not None:  # the fused CPU kernels, backward node included (activations/csrc/kernels.cpp)
        return kernels.telu(x)
    return _TeLUFunction.apply(x)


class TeLU(nn.Module):
    """TeLU(x) = x·tanh(eˣ) — Fernandez & Mali, "TeLU activation function for fast and stable deep learning"."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return telu(x)
