"""Activation sites of any model (workers/models/_sites.py): found by a dry run, one fresh instance per call,
the channel count and axis right on NCHW convolutions, NHWC blocks and (B, N, C) tokens, functional calls
counted in the coverage, exact types only, and a model with no site refused."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import activations
from workers.models import NoActivationSites, swap_activations


def prelu(channels: int, spatial_dims: int) -> nn.Module:
    return activations.create("prelu", num_features=channels)


def test_a_torchvision_resnet_gets_one_instance_per_call_site():
    model = torchvision.models.resnet18(num_classes=10)
    assert sum(isinstance(m, nn.ReLU) for m in model.modules()) == 9  # 1 stem + 8 blocks, each block's called twice
    report = swap_activations(model, prelu, torch.randn(2, 3, 32, 32))
    assert report.coverage() == "17 of 17 activation calls swapped"
    prelus = [m for m in model.modules() if isinstance(m, activations.PReLU)]
    assert len(prelus) == 17 and len({id(m.weight) for m in prelus}) == 17  # no tied parameters
    # The stem's 64 channels, then two sites per block: 64·4 + 128·4 + 256·4 + 512·4 = 3904 slopes in all.
    assert sum(m.weight.numel() for m in prelus) == 3904
    assert {s.path for s in report.sites} >= {"relu", "layer1.0.relu.sites.0", "layer1.0.relu.sites.1"}
    assert all(s.channel_axis == 1 for s in report.sites)
    before = model(torch.randn(2, 3, 32, 32)).shape
    assert before == model(torch.randn(2, 3, 32, 32)).shape == (2, 10)  # the per-call count restarts each forward
    loss = model(torch.randn(2, 3, 32, 32)).sum()
    loss.backward()
    assert all(m.weight.grad is not None for m in prelus)  # every site is used, by its own call


def test_the_dry_run_leaves_batch_norm_statistics_and_mode_as_they_were():
    model = torchvision.models.resnet18(num_classes=10).eval()
    stats = model.bn1.running_mean.clone()
    swap_activations(model, prelu, torch.randn(2, 3, 32, 32) * 5 + 3)
    assert not model.training and torch.equal(model.bn1.running_mean, stats)


class ConvNeXtBlock(nn.Module):
    """ConvNeXt's MLP runs on NHWC: a depthwise conv, permute, LayerNorm, Linear, GELU, Linear, permute back."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.fc1, self.act, self.fc2 = nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)

    def forward(self, x):
        y = self.norm(self.dw(x).permute(0, 2, 3, 1))
        return x + self.fc2(self.act(self.fc1(y))).permute(0, 3, 1, 2)


def test_channels_last_blocks_and_tokens_get_channel_wise_activations_over_their_last_dim():
    block = ConvNeXtBlock(8)
    report = swap_activations(block, lambda c, sd: activations.create("pwlu", num_features=c), torch.randn(2, 8, 6, 6))
    (site,) = report.sites
    assert (site.channel_axis, site.shape) == (-1, (2, 6, 6, 32))
    assert block.act.act.channels == 32 and block(torch.randn(2, 8, 6, 6)).shape == (2, 8, 6, 6)

    tokens = nn.Sequential(nn.Linear(16, 24), nn.GELU(), nn.Linear(24, 16))  # a ViT's MLP on (B, N, C)
    swap_activations(tokens, prelu, torch.randn(2, 5, 16))
    with torch.no_grad():
        tokens[1].act.weight.copy_(torch.linspace(0.1, 0.9, 24))
    x = torch.randn(2, 5, 16)
    h = tokens[0](x)
    expected = tokens[2](torch.where(h > 0, h, h * torch.linspace(0.1, 0.9, 24)))  # the slope of channel c on h[..., c]
    assert torch.allclose(tokens(x), expected, atol=1e-6)


class Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(F.gelu(self.inner(x)) + torch.relu(x))


def test_functional_calls_are_counted_in_the_coverage():
    report = swap_activations(Functional(), prelu, torch.randn(3, 4))
    assert report.coverage() == "1 of 3 activation calls swapped; 2 functional calls in `(the model)` were not"
    encoder = nn.Sequential(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), nn.ReLU())
    report = swap_activations(encoder, prelu, torch.randn(2, 5, 8))
    assert report.functional == {"0": 1} and report.sites[0].channel_axis == -1  # its `activation` is F.relu


def test_exact_types_only_and_gates_left_alone():
    class MyReLU(nn.ReLU):  # a subclass (e.g. a learnable variant of the model's own): not clobbered
        pass

    model = nn.Sequential(nn.Linear(4, 4), MyReLU(), nn.Linear(4, 4), nn.SiLU(), nn.Linear(4, 4), nn.Sigmoid())
    report = swap_activations(model, prelu, torch.randn(2, 4))
    assert [s.path for s in report.sites] == ["3"]
    assert type(model[1]) is MyReLU and isinstance(model[3], activations.PReLU) and isinstance(model[5], nn.Sigmoid)


class _OnlyFunctional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return F.silu(self.fc(x))


def test_a_model_with_no_site_is_refused_saying_so():
    with pytest.raises(NoActivationSites, match=r"0 of 1 activation calls swapped; 1 functional call in `\(the model\)` was not"):
        swap_activations(_OnlyFunctional(), prelu, torch.randn(2, 4))
    with pytest.raises(NoActivationSites, match="0 of 0 activation calls swapped"):
        swap_activations(nn.Sequential(nn.Linear(4, 4), nn.Tanh()), prelu, torch.randn(2, 4))  # tanh: not an activation type here
