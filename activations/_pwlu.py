"""PWLU, the piecewise linear unit with statistics-based boundary realignment (Zhu et al., arXiv 2104.03693).

The forward pass is one segment lookup: with t = (x − B_L)·N/(B_R − B_L) the position in units of the
grid, every segment s (left tail, N interior intervals, right tail) is a line y = A[s] + t·S[s]. The
tables A and S (N+2 entries per channel) are built from the learnable points with ordinary autograd;
`_SegmentLookup` gathers from them and writes its own backward, so only the input and a one-byte
segment index per element are kept for the backward pass instead of the masks and gathered copies a
straightforward autograd version stores, and it works through the input block by block so its
temporaries stay small and in the caches (bench/activations.py measures both).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from activations import _native
from activations._blocks import Workspace, block_size, compute_dtype, flat_in_memory_order

_MIN_WIDTH = 1e-3  # realigned bounds never collapse: a constant input would otherwise give B_L == B_R
_STD_EPS = 1e-5

# Devices whose backward adds G₀ and G₁ as one complex scatter (elsewhere: two real ones).
_COMPLEX_SCATTER = {"cpu"}


class _SegmentLookup(torch.autograd.Function):
    """y = A[s] + t·S[s], t = (x − lo)·inv_width, s = clamp(floor t, −1, N) + 1, per channel (dim 1).

    Computed as y = (A − S)[s] + t₁·S[s] with t₁ = t + 1 = x·w + (1 − lo·w), so that s = trunc(clamp(t₁,
    0, N+1)) needs no floor. The input is seen as (P, C, L) — every run of L elements shares a channel —
    and walked in blocks whose temporaries reuse one workspace. The lookup is one `gather` along L of
    (A − S, S) pairs held as complex numbers, from the (C, N+2) table broadcast over P. The backward
    needs the per-segment sums G₀[s] = Σ g and G₁[s] = Σ g·t₁: on a CPU one complex `scatter_add_`
    along L of g + i·g·t₁. Gather and scatter run in parallel over rows and channels and need no
    per-element channel offset. Saved for backward: the input, and each element's segment as one byte.
    Everything else follows from G₀ and G₁: ∂A = G₀, ∂S = G₁ − G₀, and per channel Σ g·S = Σₛ S·G₀
    and Σ g·S·t = Σₛ S·(G₁ − G₀), which give ∂lo = −w·Σ g·S and ∂w = Σ g·S·t / w.
    """

    @staticmethod
    def forward(ctx, x, lo, inv_width, intercept, slope, n_segments, channelwise):
        ctx.set_materialize_grads(False)
        channels, n = lo.numel(), n_segments
        dtype = slope.dtype  # float32 for a half input: t and the lines need more than 8 or 11 bits
        source, x3 = _arranged(x, channels, channelwise)
        y = torch.empty_like(source)
        y3 = _view3(y, channels, channelwise)
        segments = s3 = None
        if any(ctx.needs_input_grad):
            segments = torch.empty_like(source, dtype=_segment_dtype(n))
            s3 = _view3(segments, channels, channelwise)
        shift, scale = _shift_scale(lo, inv_width, channels)
        pairs = torch.complex(intercept - slope, slope).view(1, channels, n + 2)  # the lines in t₁
        work = Workspace(x3.device)
        for block in _blocks(x3):
            xb = x3[block]
            t1 = _position(work, xb, shift, scale, dtype)
            seg = torch.clamp(t1, 0, n + 1, out=work.like("segf", xb, dtype))
            seg = work.like("seg32", xb, torch.int32).copy_(seg.nan_to_num_(nan=0.0))  # NaN stays NaN through t₁
            if s3 is not None:
                s3[block].copy_(seg)
            seg = work.like("seg", xb, torch.int64).copy_(seg)  # float → int64 directly is much slower
            line = torch.gather(pairs.expand(seg.shape[0], -1, -1), 2, seg, out=work.like("line", seg, pairs.dtype))
            line = torch.view_as_real(line)
            torch.addcmul(line[..., 0], t1, line[..., 1], out=y3[block])
        ctx.save_for_backward(x, segments, lo, inv_width, slope)
        ctx.n_segments, ctx.channelwise = n_segments, channelwise
        return y

    @staticmethod
    def backward(ctx, grad):
        if grad is None:
            return (None,) * 7
        _refuse_create_graph()
        x, segments, lo, inv_width, slope = ctx.saved_tensors
        n, channels, channelwise = ctx.n_segments, lo.numel(), ctx.channelwise
        dtype = slope.dtype
        source, x3 = _arranged(x, channels, channelwise)
        s3 = _view3(segments, channels, channelwise)
        g3 = _view3(grad, channels, channelwise)
        if g3 is None or g3.stride() != x3.stride():  # e.g. the expanded gradient of a sum()
            g3 = _view3(torch.empty_like(source).copy_(grad), channels, channelwise)
        grad_x = torch.empty_like(source)
        gx3 = _view3(grad_x, channels, channelwise)
        shift, scale = _shift_scale(lo, inv_width, channels)
        dydx = (slope.view(channels, n + 2) * inv_width.view(channels, 1)).view(1, channels, n + 2)
        complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        sums = torch.zeros(channels, n + 2, 2, dtype=torch.float64, device=x.device)  # (G₀, G₁)
        work = Workspace(x3.device)
        for block in _blocks(x3):
            xb, gb = x3[block], g3[block]
            if gb.dtype != dtype:
                gb = work.like("g", xb, dtype).copy_(gb)
            t1 = _position(work, xb, shift, scale, dtype)
            seg = work.like("seg", xb, torch.int64).copy_(s3[block])
            rows = seg.shape[0]
            slopes = torch.gather(dydx.expand(rows, -1, -1), 2, seg, out=work.like("dydx", seg, dtype))
            torch.mul(gb, slopes, out=gx3[block])
            if x.device.type in _COMPLEX_SCATTER:  # G₀ + i·G₁ in one scatter
                weights = work.like("weights", xb, complex_dtype)
                pair = torch.view_as_real(weights)
                pair[..., 0].copy_(gb)
                torch.mul(gb, t1, out=pair[..., 1])
                part = _zeroed(work, rows, channels, n + 2, complex_dtype)
                part.scatter_add_(2, seg, weights)
                sums += torch.view_as_real(part).sum(dim=0, dtype=torch.float64)
            else:
                part = _zeroed(work, 2 * rows, channels, n + 2, dtype)
                part[:rows].scatter_add_(2, seg, gb)
                part[rows:].scatter_add_(2, seg, t1.mul_(gb))
                sums += part.view(2, rows, channels, n + 2).sum(dim=1, dtype=torch.float64).permute(1, 2, 0)
        g0, g1 = sums.unbind(-1)
        s = slope.to(torch.float64).view(channels, n + 2)
        w = inv_width.to(torch.float64)
        sum_gs = (s * g0).sum(dim=1)
        sum_gst = (s * (g1 - g0)).sum(dim=1)
        return (
            grad_x,
            (-w * sum_gs).to(dtype).view(lo.shape),
            (sum_gst / w).to(dtype).view(inv_width.shape),
            g0.to(dtype).reshape(slope.shape),
            (g1 - g0).to(dtype).reshape(slope.shape),
            None,
            None,
        )


def _eager_phase2(x, left_bound, right_bound, points, left_slope, right_slope, channelwise):
    """Phase II PWLU in eager ops: line tables built with autograd, then `_SegmentLookup`."""
    lo, inv_width, intercept, slope = _line_tables(left_bound, right_bound, points, left_slope, right_slope, compute_dtype(x.dtype))
    return _SegmentLookup.apply(x, lo, inv_width, intercept, slope, points.shape[1] - 1, channelwise)


def _line_tables(left_bound, right_bound, points, left_slope, right_slope, dtype):
    """Per-channel line tables (flattened) over segments: left tail, N intervals, right tail."""
    n = points.shape[1] - 1
    width = (right_bound - left_bound).clamp(min=_MIN_WIDTH)
    step = width / n
    y = points
    j = torch.arange(n, device=y.device, dtype=y.dtype)
    s_mid = y[:, 1:] - y[:, :-1]
    a_mid = y[:, :-1] - j * s_mid
    s_left, s_right = left_slope * step, right_slope * step
    a_left, a_right = y[:, 0], y[:, n] - n * s_right
    intercept = torch.cat([a_left[:, None], a_mid, a_right[:, None]], dim=1)
    slope = torch.cat([s_left[:, None], s_mid, s_right[:, None]], dim=1)
    return left_bound.to(dtype), (n / width).to(dtype), intercept.reshape(-1).to(dtype), slope.reshape(-1).to(dtype)


def _refuse_create_graph() -> None:
    if torch.is_grad_enabled():  # the backward runs with grad mode on only under create_graph=True
        raise RuntimeError("pwlu: second derivatives (backward with create_graph=True) are not supported")


# The fused kernels keep per-thread (G₀, G₁) sums of channels × (segments + 2) entries: beyond this the
# eager path, whose sums are per block, is the better fit.
_NATIVE_MAX_TABLE = 1 << 16


def _segment_dtype(n_segments: int) -> torch.dtype:
    return torch.uint8 if n_segments + 2 <= 256 else torch.int16 if n_segments + 2 <= 2**15 else torch.int32


def _shift_scale(lo, inv_width, channels):
    """(1, C, 1) views with t₁ = x·scale + shift."""
    shift = torch.addcmul(torch.ones_like(lo), lo, inv_width, value=-1)
    return shift.view(1, channels, 1), inv_width.view(1, channels, 1)


def _position(work, xb, shift, scale, dtype):
    """t₁ = t + 1 of a block (mul then add_: addcmul with (1, C, 1) operands is several times slower)."""
    return torch.mul(xb, scale, out=work.like("t1", xb, dtype)).add_(shift)


def _zeroed(work: Workspace, rows: int, channels: int, width: int, dtype: torch.dtype) -> torch.Tensor:
    """Zeroed per-block sums, (rows, C, width)."""
    return work.flat("part", dtype, rows * channels * width).view(rows, channels, width).zero_()


def _view3(t, channels, channelwise):
    """t as a (P, C, L) view in which each run along L shares one channel, or None when t's layout has none.

    Contiguous (B, C, …) gives (B, C, ∏…); a (B, C) matrix and a channels-last tensor give (1, C, B·∏…)
    with the channel the fast dimension; layer-wise, any dense tensor gives (1, 1, numel) in memory order.
    """
    if not channelwise:
        flat = flat_in_memory_order(t)
        return None if flat is None else flat.view(1, 1, -1)
    if t.is_contiguous():
        rest = math.prod(t.shape[2:])
        if rest > 1:
            return t.view(t.shape[0], channels, rest)
        return t.view(-1, channels).t().unsqueeze(0)
    if t.dim() > 2 and t.movedim(1, -1).is_contiguous():
        return t.movedim(1, -1).reshape(-1, channels).t().unsqueeze(0)
    return None


def _arranged(x, channels, channelwise):
    """x, or a contiguous copy when its layout has no (P, C, L) view, and that view."""
    x3 = _view3(x, channels, channelwise)
    if x3 is not None:
        return x, x3
    x = x.contiguous()
    return x, _view3(x, channels, channelwise)


def _blocks(x3):
    """Index tuples that cut a (P, C, L) tensor into blocks of about `block_size` elements."""
    p, c, length = x3.shape
    block = block_size(x3.device)
    if p * c * length == 0:
        return
    if c * length <= block:
        rows = block // (c * length)
        for p0 in range(0, p, rows):
            yield (slice(p0, p0 + rows),)
    else:
        cols = max(1, block // c)
        for p0 in range(p):
            for l0 in range(0, length, cols):
                yield (slice(p0, p0 + 1), slice(None), slice(l0, l0 + cols))


class PWLU(nn.Module):
    """PWLU: learnable piecewise linear, N intervals on [B_L, B_R] plus two tails — Zhu et al., arXiv 2104.03693.

    Phase I (the first `stats_steps` training steps) is ReLU with frozen parameters while the running
    mean μ and std σ of the input are collected; then B_L, B_R = μ ∓ k·σ, the points are reset to ReLU
    on the new grid, K_L = 0, K_R = 1 and everything trains (Phase II). Eval mode never touches the
    statistics. Channel-wise (one curve per channel of dim 1) when `num_features` is given.
    """

    def __init__(
        self,
        num_features: int | None = None,
        segments: int = 16,
        stats_steps: int = 100,
        bound_k: float = 3.0,
        momentum: float = 0.1,
        channelwise: bool | None = None,
        init_bound: float = 3.0,
    ) -> None:
        super().__init__()
        if not isinstance(segments, int) or segments < 2:
            raise ValueError(f"pwlu: segments must be an integer >= 2, got {segments!r}")
        if not isinstance(stats_steps, int) or stats_steps < 0:
            raise ValueError(f"pwlu: stats_steps must be an integer >= 0, got {stats_steps!r}")
        if not bound_k > 0:
            raise ValueError(f"pwlu: bound_k must be > 0, got {bound_k!r}")
        if not 0 < momentum <= 1:
            raise ValueError(f"pwlu: momentum must be in (0, 1], got {momentum!r}")
        if not init_bound > 0:
            raise ValueError(f"pwlu: init_bound must be > 0, got {init_bound!r}")
        if channelwise is None:
            channelwise = num_features is not None
        if channelwise and not num_features:
            raise ValueError("pwlu: channelwise=True needs num_features (the channel count of the input)")
        self.segments, self.stats_steps, self.bound_k, self.momentum = segments, stats_steps, bound_k, momentum
        self.channelwise = bool(channelwise)
        channels = num_features if self.channelwise else 1
        self.channels = channels
        self.left_bound = nn.Parameter(torch.full((channels,), -float(init_bound)))
        self.right_bound = nn.Parameter(torch.full((channels,), float(init_bound)))
        self.points = nn.Parameter(torch.empty(channels, segments + 1))
        self.left_slope = nn.Parameter(torch.zeros(channels))
        self.right_slope = nn.Parameter(torch.ones(channels))
        with torch.no_grad():
            self._reset_points_to_relu()
        self.register_buffer("phase", torch.tensor(1 if stats_steps > 0 else 2))
        self.register_buffer("steps", torch.tensor(0))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        # Python mirrors of the buffers: reading a CUDA scalar each forward would sync the device.
        self._phase, self._steps = int(self.phase), 0
        self.register_load_state_dict_post_hook(_refresh_mirrors)

    def extra_repr(self) -> str:
        mode = f"channels={self.channels}" if self.channelwise else "layer-wise"
        return f"segments={self.segments}, {mode}, stats_steps={self.stats_steps}, bound_k={self.bound_k}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channelwise and (x.dim() < 2 or x.shape[1] != self.channels):
            raise ValueError(f"pwlu: expected input with {self.channels} channels in dim 1, got shape {tuple(x.shape)}")
        if self._phase == 1:
            if self.training:
                self._collect(x.detach())
            return F.relu(x)
        kernels = _native.ops_for(x)
        if kernels is not None and x.dtype == self.points.dtype and self.channels * (self.segments + 2) <= _NATIVE_MAX_TABLE:
            # The fused CPU kernels, backward node included (activations/csrc/kernels.cpp).
            return kernels.pwlu(x, *self._phase2_parameters(), self.channelwise, _MIN_WIDTH)
        return _eager_phase2(x, *self._phase2_parameters(), self.channelwise)

    def _phase2_parameters(self):
        return self.left_bound, self.right_bound, self.points, self.left_slope, self.right_slope

    @torch.no_grad()
    def _collect(self, x: torch.Tensor) -> None:
        dims = [d for d in range(x.dim()) if not (self.channelwise and d == 1)]
        if x.numel() == 0:
            return
        # Half inputs are summed in float32; float64 keeps its precision (a large mean over a small spread).
        stats_input = x if x.dtype == torch.float64 else x.float()
        var, mean = torch.var_mean(stats_input, dim=dims, unbiased=False)
        # Back to the buffers' dtype: lerp_ refuses mixed dtypes once the module is .double()/.half().
        var, mean = var.to(self.running_var.dtype), mean.to(self.running_mean.dtype)
        if self._steps == 0:
            self.running_mean.copy_(mean.reshape(-1))
            self.running_var.copy_(var.reshape(-1))
        else:
            self.running_mean.lerp_(mean.reshape(-1), self.momentum)
            self.running_var.lerp_(var.reshape(-1), self.momentum)
        self._steps += 1
        self.steps.fill_(self._steps)
        if self._steps >= self.stats_steps:
            self.realign()

    @torch.no_grad()
    def realign(self) -> None:
        """Enter Phase II: bounds from the collected statistics, points reset to ReLU on the new grid."""
        std = (self.running_var + _STD_EPS).sqrt()
        half = (self.bound_k * std).clamp(min=_MIN_WIDTH / 2)
        self.left_bound.copy_(self.running_mean - half)
        self.right_bound.copy_(self.running_mean + half)
        self._reset_points_to_relu()
        self.left_slope.zero_()
        self.right_slope.fill_(1.0)
        self._phase = 2
        self.phase.fill_(2)

    def _reset_points_to_relu(self) -> None:
        grid = torch.linspace(0, 1, self.segments + 1, device=self.points.device, dtype=self.points.dtype)
        lo, hi = self.left_bound[:, None], self.right_bound[:, None]
        self.points.copy_(F.relu(lo + (hi - lo) * grid))

    def state_snapshot(self) -> dict:
        """Bounds, tail slopes and points as plain floats (lists per channel when channel-wise), and the phase."""

        def plain(t: torch.Tensor):
            values = t.detach().float().cpu().tolist()
            return values if self.channelwise else values[0]

        return {
            "left_bound": plain(self.left_bound),
            "right_bound": plain(self.right_bound),
            "left_slope": plain(self.left_slope),
            "right_slope": plain(self.right_slope),
            "points": plain(self.points),
            "phase": self._phase,
        }


def _refresh_mirrors(module: PWLU, incompatible_keys) -> None:
    module._phase, module._steps = int(module.phase), int(module.steps)
