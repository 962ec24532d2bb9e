"""Every registered activation under CPU autocast to bfloat16 (training.precision: bf16), against its float32
result: the output dtype follows the input, values and gradients agree within bfloat16's precision, and the
parameters stay float32 with float32 gradients."""

from __future__ import annotations

import pytest
import torch

import activations

C = 6
BF16_TOL = {"rtol": 3e-2, "atol": 3e-2}  # bfloat16 keeps 8 bits: 2⁻⁸ ≈ 4e-3 per rounding, a few roundings deep


def _module(name: str) -> torch.nn.Module:
    params = {"stats_steps": 0} if name == "pwlu" else {}
    module = activations.create(name, num_features=C, spatial_dims=0, **params)
    if name == "pwlu":  # a curve that is not a ReLU
        with torch.no_grad():
            module.points.add_(0.3 * torch.randn_like(module.points))
            module.left_slope.fill_(0.2)
    if name == "lslu":
        # In training mode BatchNorm removes any scale and shift of its input, so θ's and ω's gradients
        # vanish in exact arithmetic and only rounding noise would be compared; with its running statistics
        # they are real. (Training-mode LSLU under bf16 runs in tests/workers/test_train.py.)
        module.bn.running_mean.fill_(0.3)
        module.eval()
    return module


@pytest.mark.parametrize("name", activations.names())
def test_activation_under_bf16_autocast_matches_float32(name):
    module = _module(name)
    x = (2 * torch.randn(64, C)).bfloat16().float()  # values a bf16 Linear could have produced
    g = torch.randn(64, C)

    def run(low: bool):
        module.zero_grad()
        xi = (x.bfloat16() if low else x).clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
            y = module(xi)
        y.backward(g.to(y.dtype))
        return y, xi.grad, {n: p.grad for n, p in module.named_parameters()}

    y32, gx32, p32 = run(False)
    y16, gx16, p16 = run(True)
    # LSLU ends in its per-channel kernel and BatchNorm, which autocast runs in float32 (as it does for
    # torch's own norm layers); every other activation returns its input's dtype.
    assert y16.dtype == (torch.float32 if name == "lslu" else torch.bfloat16)
    assert gx16.dtype == torch.bfloat16
    torch.testing.assert_close(y16.float(), y32, **BF16_TOL)
    torch.testing.assert_close(gx16.float(), gx32, **BF16_TOL)
    for n, p in module.named_parameters():
        assert p.dtype == torch.float32 and p16[n].dtype == torch.float32, n
        scale = p32[n].abs().max().clamp(min=1)
        torch.testing.assert_close(p16[n] / scale, p32[n] / scale, **BF16_TOL, msg=lambda m, n=n: f"{name}.{n}: {m}")


def test_pwlu_phase1_statistics_under_autocast_stay_float32():
    module = activations.create("pwlu", num_features=C, stats_steps=3)
    x = 3 + 2 * torch.randn(128, C)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for _ in range(3):
            module(x.bfloat16())
    assert module.running_mean.dtype == torch.float32
    torch.testing.assert_close(module.running_mean, x.bfloat16().float().mean(0), rtol=1e-3, atol=1e-3)
    assert int(module.phase) == 2
