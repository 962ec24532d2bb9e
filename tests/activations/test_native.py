"""The fused CPU kernels against the eager paths: same outputs and gradients in every layout, a build that
really happens where there is a compiler, and the eager fallback where the kernels cannot be built."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from torch.autograd import gradcheck

from activations import PWLU, _native, telu

# Without a C++ compiler only the eager paths exist; CI (ACTSTUDY_REQUIRE_NATIVE=1) installs one, so there
# these tests always run.
needs_compiler = pytest.mark.skipif(
    shutil.which("c++") is None and os.environ.get("ACTSTUDY_REQUIRE_NATIVE") != "1",
    reason="no C++ compiler here: apt-get install g++ ninja-build",
)


@needs_compiler
def test_kernels_build_where_there_is_a_compiler(monkeypatch):
    monkeypatch.setenv(_native.ENV_SWITCH, "1")
    # A silent fallback would hide a broken build: with a compiler present the kernels must load.
    assert _native.ops() is not None
    x = torch.randn(4, 3, requires_grad=True)
    assert "TeLUFunction" in telu(x).grad_fn.name()
    pwlu = PWLU(num_features=3, stats_steps=0)
    assert "PWLUFunction" in pwlu(x).grad_fn.name()


def _both(monkeypatch, fn):
    """fn() on the fused kernels, then on the eager path."""
    monkeypatch.setenv(_native.ENV_SWITCH, "1")
    native = fn()
    monkeypatch.setenv(_native.ENV_SWITCH, "0")
    eager = fn()
    return native, eager


def _pwlu(channels: int | None, dtype, segments=8) -> PWLU:
    module = PWLU(num_features=channels, segments=segments, stats_steps=0).to(dtype)
    with torch.no_grad():
        n = module.channels
        module.left_bound.copy_(-1 - torch.rand(n))
        module.right_bound.copy_(1 + torch.rand(n))
        module.points.add_(0.3 * torch.randn_like(module.points))
        module.left_slope.copy_(torch.randn(n))
        module.right_slope.copy_(torch.randn(n))
    return module


LAYOUTS = {
    "mlp": ((32, 5), None),
    "nchw": ((4, 5, 6, 7), None),
    "channels_last": ((4, 5, 6, 7), torch.channels_last),
    "ncl": ((3, 5, 11), None),
}


def _pwlu_pass(module: PWLU, x: torch.Tensor, g: torch.Tensor):
    x = x.detach().clone().requires_grad_()
    module.zero_grad()
    y = module(x)
    y.backward(g)
    return [y, x.grad] + [p.grad.clone() for p in module.parameters()], y


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("channelwise", [True, False], ids=["channelwise", "layerwise"])
@pytest.mark.parametrize("layout", LAYOUTS, ids=str)
@needs_compiler
def test_pwlu_kernels_match_the_eager_path(monkeypatch, layout, channelwise, dtype):
    shape, memory_format = LAYOUTS[layout]
    module = _pwlu(shape[1] if channelwise else None, dtype)
    x = 2 * torch.randn(shape, dtype=dtype)
    g = torch.randn(shape, dtype=dtype)
    if memory_format is not None:
        x, g = x.contiguous(memory_format=memory_format), g.contiguous(memory_format=memory_format)
    (native, y_native), (eager, _) = _both(monkeypatch, lambda: _pwlu_pass(module, x, g))
    assert y_native.stride() == x.stride()  # the layout is kept
    tol = {"rtol": 1e-10, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-4}
    for a, b in zip(native, eager, strict=False):
        torch.testing.assert_close(a, b, **tol)


@needs_compiler
def test_pwlu_kernels_with_an_expanded_gradient_and_nan(monkeypatch):
    module = _pwlu(5, torch.float64)
    x = torch.randn(6, 5, dtype=torch.float64)
    x[2, 3] = float("nan")

    def run():
        xi = x.clone().requires_grad_()
        y = module(xi)
        y[:, :3].sum().backward()  # the gradient of a slice of a sum: zeros and an expanded view
        return y.detach(), xi.grad

    (y_n, gx_n), (y_e, gx_e) = _both(monkeypatch, run)
    torch.testing.assert_close(y_n, y_e, equal_nan=True)
    torch.testing.assert_close(gx_n, gx_e, equal_nan=True)
    assert torch.isnan(y_n[2, 3]) and torch.isfinite(y_n[~torch.isnan(x)]).all()


@needs_compiler
def test_pwlu_kernels_gradcheck_with_bounds_clamped_at_the_minimum_width():
    module = _pwlu(2, torch.float64, segments=4)
    with torch.no_grad():
        module.right_bound[1] = module.left_bound[1] + 1e-4  # narrower than _MIN_WIDTH: the clamp is active
    x = 3 * torch.randn(7, 2, dtype=torch.float64)
    params = [p.detach().clone().requires_grad_() for p in module.parameters()]
    names = [n for n, _ in module.named_parameters()]

    def f(x, *ps):
        return torch.func.functional_call(module, dict(zip(names, ps, strict=False)), (x,))

    assert gradcheck(f, (x.requires_grad_(), *params))


@pytest.mark.parametrize("native", ["1", "0"], ids=["native", "eager"])
@needs_compiler
def test_pwlu_second_derivatives_are_refused_clearly(monkeypatch, native):
    monkeypatch.setenv(_native.ENV_SWITCH, native)
    module = _pwlu(3, torch.float64)
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match="pwlu: second derivatives"):
        torch.autograd.grad(module(x).sum(), x, create_graph=True)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("layout", ["flat", "channels_last", "transposed"])
@needs_compiler
def test_telu_kernels_match_the_eager_path(monkeypatch, layout, dtype):
    x = torch.cat([torch.linspace(-30, 30, 997, dtype=dtype), torch.tensor([0.0, 1e-40, -1e-310, 15.0, -200.0], dtype=dtype)])
    x = x[: 4 * 5 * 7 * 7].reshape(4, 5, 7, 7)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "transposed":
        x = x.transpose(1, 3)
    g = torch.randn(x.shape, dtype=dtype)

    def run():
        xi = x.detach().clone().requires_grad_() if layout != "channels_last" else x.detach().clone(memory_format=torch.channels_last).requires_grad_()
        y = telu(xi)
        y.backward(g)
        return y.detach(), xi.grad

    (y_n, gx_n), (y_e, gx_e) = _both(monkeypatch, run)
    if layout == "channels_last":
        assert y_n.is_contiguous(memory_format=torch.channels_last)
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(y_n, y_e, rtol=4 * eps, atol=torch.finfo(dtype).tiny)  # the same formula
    # The slope from two exponentials against the eager path's tanh(eˣ) = y / x: a few tens of ulps apart
    # where the slope's two terms nearly cancel; both are held to a float64 reference in test_telu.py.
    torch.testing.assert_close(gx_n, gx_e, rtol=64 * eps, atol=64 * eps)


def test_a_failed_build_falls_back_to_the_eager_path(tmp_path):
    # A fresh extension cache and a compiler that fails: a warning, then the eager path, same results.
    script = textwrap.dedent(
        """
        import warnings, torch
        from activations import PWLU, _native, telu
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert _native.ops() is None
        assert any("eager paths" in str(w.message) for w in caught), [str(w.message) for w in caught]
        x = torch.randn(8, 3, requires_grad=True)
        assert type(telu(x).grad_fn).__name__.startswith("_TeLUFunction")
        assert type(PWLU(num_features=3, stats_steps=0)(x).grad_fn).__name__.startswith("_SegmentLookup")
        print("fallback ok")
        """
    )
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path / "ext"), "CXX": "/bin/false", _native.ENV_SWITCH: "1"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "fallback ok" in out.stdout
