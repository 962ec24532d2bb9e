"""Parity of every element-wise activation with its textbook formula, in float64.

The references are written out from the papers' formulas (no torch.nn.functional activations), on a
range where the naive formula is itself accurate: [-20, 20], and [-20, 9] for TeLU.
"""

from __future__ import annotations

import math

import pytest
import torch

import activations

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _sigmoid(x):
    return 1 / (1 + torch.exp(-x))


def _tanh(x):
    # 1 − 2/(e^{2x} + 1) rather than (e^{2x} − 1)/(e^{2x} + 1): the latter is inf/inf once e^{2x} overflows.
    return 1 - 2 / (torch.exp(2 * x) + 1)


def _softplus(x):
    return torch.log(1 + torch.exp(x))


def _relu(x):
    return torch.where(x > 0, x, torch.zeros_like(x))


REFERENCES = {
    "relu": _relu,
    "leaky_relu": lambda x: torch.where(x > 0, x, 0.01 * x),
    "prelu": lambda x: torch.where(x > 0, x, 0.25 * x),
    "elu": lambda x: torch.where(x > 0, x, torch.exp(x) - 1),
    "selu": lambda x: _SELU_SCALE * torch.where(x > 0, x, _SELU_ALPHA * (torch.exp(x) - 1)),
    "celu": lambda x: _relu(x) + torch.minimum(torch.zeros_like(x), torch.exp(x) - 1),
    "silu": lambda x: x * _sigmoid(x),
    "gelu": lambda x: 0.5 * x * (1 + torch.erf(x / math.sqrt(2))),
    "mish": lambda x: x * _tanh(_softplus(x)),
    "logish": lambda x: x * torch.log(1 + _sigmoid(x)),
    "smish": lambda x: x * _tanh(torch.log(1 + _sigmoid(x))),
    "tanh": _tanh,
    "sigmoid": _sigmoid,
    "softplus": _softplus,
    "telu": lambda x: x * _tanh(torch.exp(x)),
    "pwlu": _relu,  # a fresh PWLU is ReLU until its statistics are collected (Phase I)
}
RANGES = {"telu": (-20.0, 9.0)}  # beyond 9, tanh(e^x) in the reference is exactly 1 anyway


def test_every_element_wise_activation_has_a_reference():
    # LSLU (not element-wise) has its own reference in test_lslu.py.
    assert set(REFERENCES) == set(activations.names()) - {"lslu"}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_parity_with_reference_formula_float64(name):
    low, high = RANGES.get(name, (-20.0, 20.0))
    x = torch.cat([torch.linspace(low, high, 4001, dtype=torch.float64), torch.randn(999, dtype=torch.float64)])
    x = x.clamp(low, high).reshape(5, 1, -1)  # (N, C, L) with one channel, for the per-channel ones
    module = activations.create(name, num_features=1, spatial_dims=1).double()
    y = module(x)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, REFERENCES[name](x), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_float32_close_to_float64_reference(name):
    low, high = RANGES.get(name, (-20.0, 20.0))
    x = torch.linspace(low, high, 2001, dtype=torch.float64).reshape(1, 1, -1)
    module = activations.create(name, num_features=1, spatial_dims=1)
    y = module(x.float())
    torch.testing.assert_close(y.double(), REFERENCES[name](x), rtol=1e-5, atol=1e-6)


def test_telu_function_and_module_agree():
    x = torch.randn(7, 3, dtype=torch.float64) * 5
    assert torch.equal(activations.TeLU()(x), activations.telu(x))
