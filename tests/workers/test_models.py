"""workers.models: output shapes, the MNIST-1D CNN's size, one activation instance per site (never
shared, every one used), `activation_sites` and the errors `build_model` raises.

    .venv/bin/python -m pytest tests/workers/test_models.py -q      # ~3 s on one core
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import activations
from workers.models import MODELS, ModelError, activation_sites, build_model

LEARNABLE = ("pwlu", "lslu")

# model → per-sample input shapes it is built for
INPUTS = {
    "mlp": [(40,)],
    "cnn1d": [(40,)],
    "cnn": [(3, 32, 32), (1, 28, 28)],
    "resnet18": [(3, 32, 32), (1, 28, 28)],
}
CASES = [(model, shape) for model, shapes in INPUTS.items() for shape in shapes]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def build(name: str, shape: tuple[int, ...], activation: str = "relu", num_classes: int = 10, **kwargs) -> nn.Module:
    return build_model(name, input_shape=shape, num_classes=num_classes, activation=activation, **kwargs)


def learnable_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (activations.PWLU, activations.LSLU))]


def test_every_model_is_covered():
    assert set(INPUTS) == set(MODELS)


@pytest.mark.parametrize(("name", "shape"), CASES)
def test_output_shape(name, shape):
    model = build(name, shape, num_classes=7).eval()
    with torch.no_grad():
        out = model(torch.randn(3, *shape))
    assert out.shape == (3, 7)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


# resnet18 with a learnable activation is covered by the block-hook test below (its forward is slow).
@pytest.mark.parametrize("activation", LEARNABLE)
@pytest.mark.parametrize(("name", "shape"), [c for c in CASES if c[0] != "resnet18"])
def test_output_shape_with_learnable_activation(name, shape, activation):
    model = build(name, shape, activation, num_classes=7)
    out = model(torch.randn(3, *shape))  # train mode: PWLU collects statistics, LSLU's BN uses the batch
    assert out.shape == (3, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("name", "shape"), [c for c in CASES if c[0] != "resnet18"] + [("resnet18", (1, 28, 28))])
def test_trains_one_step(name, shape):
    """Every parameter of a relu model receives a gradient (no dead branch, no detached head)."""
    model = build(name, shape).train()
    loss = nn.functional.cross_entropy(model(torch.randn(2, *shape)), torch.arange(2))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []


def test_cnn1d_has_the_papers_parameter_count():
    model = build("cnn1d", (40,))
    # conv 1·25·5+25, two convs 25·25·3+25, linear 25·5·10+10: the MNIST-1D paper's ConvBase.
    assert sum(p.numel() for p in model.parameters()) == 150 + 1900 + 1900 + 1260 == 5210


def test_cnn1d_accepts_channel_first_input():
    model = build("cnn1d", (2, 40)).eval()
    assert model(torch.randn(3, 2, 40)).shape == (3, 10)


def test_mlp_hidden_sizes():
    model = build("mlp", (40,), hidden=(64, 32, 16))
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(40, 64), (64, 32), (32, 16), (16, 10)]


# --- one activation instance per site ------------------------------------------------------------

SITES = {  # model, input shape → expected number of activation sites
    ("mlp", (40,)): 2,
    ("cnn1d", (40,)): 3,
    ("cnn", (3, 32, 32)): 3,
    ("resnet18", (3, 32, 32)): 1 + 2 * 8,  # the stem, then act1 and act2 in each of 8 BasicBlocks
}


@pytest.mark.parametrize("activation", LEARNABLE)
@pytest.mark.parametrize(("name", "shape"), list(SITES))
def test_learnable_activation_has_one_instance_per_site(name, shape, activation):
    model = build(name, shape, activation)
    sites = learnable_modules(model)
    assert len(sites) == SITES[name, shape]
    assert len({id(m) for m in sites}) == len(sites)
    # No two sites share storage: every parameter of every site has its own data pointer.
    pointers = [p.data_ptr() for m in sites for p in m.parameters()]
    assert len(pointers) == len(set(pointers))
    # model.parameters() deduplicates and named_modules() visits a shared module once; counting each
    # registration (remove_duplicate=False) would count a shared site twice.
    registered = [p for _, m in model.named_modules(remove_duplicate=False) for p in m.parameters(recurse=False)]
    assert len(registered) == len(list(model.parameters()))


def test_resnet18_pwlu_sites_are_17_distinct_instances_with_their_widths():
    model = build("resnet18", (3, 32, 32), "pwlu")
    sites = activation_sites(model)
    assert len(sites) == 17
    assert all(isinstance(m, activations.PWLU) for m in sites.values())
    assert len({id(m) for m in sites.values()}) == 17
    widths = {path: m.channels for path, m in sites.items()}
    assert widths["relu"] == 64
    for layer, planes in zip(range(1, 5), (64, 128, 256, 512), strict=False):
        for block in (0, 1):
            assert widths[f"layer{layer}.{block}.act1"] == planes
            assert widths[f"layer{layer}.{block}.act2"] == planes
    # Changing one site's points leaves every other site as it was.
    with torch.no_grad():
        sites["layer1.0.act1"].points.add_(1.0)
    assert not torch.equal(sites["layer1.0.act1"].points, sites["layer1.0.act2"].points)
    assert torch.equal(sites["layer1.0.act2"].points, sites["layer1.1.act1"].points)


@pytest.mark.parametrize("activation", LEARNABLE)
def test_resnet18_block_calls_both_of_its_activations(activation):
    model = build("resnet18", (3, 32, 32), activation).eval()
    calls: dict[str, int] = {}
    for path, module in activation_sites(model).items():
        module.register_forward_hook(lambda m, i, o, path=path: calls.__setitem__(path, calls.get(path, 0) + 1))
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert len(calls) == 17
    assert set(calls.values()) == {1}
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())


def test_resnet18_relu_blocks_have_no_shared_relu():
    model = build("resnet18", (3, 32, 32))
    blocks = [m for m in model.modules() if hasattr(m, "act1")]
    assert len(blocks) == 8
    assert all(not hasattr(b, "relu") and b.act1 is not b.act2 for b in blocks)


@pytest.mark.parametrize(("name", "shape"), [("mlp", (40,)), ("cnn1d", (40,)), ("cnn", (1, 28, 28))])
def test_activation_sites_are_module_paths(name, shape):
    model = build(name, shape, "pwlu")
    sites = activation_sites(model)
    modules = dict(model.named_modules())
    assert sites and all(modules[path] is m for path, m in sites.items())
    assert all(isinstance(m, activations.PWLU) for m in sites.values())
    if name == "mlp":
        assert list(sites) == ["net.2", "net.4"]


def test_activation_sites_empty_for_fixed_activations():
    assert activation_sites(build("resnet18", (3, 32, 32), "relu")) == {}
    assert activation_sites(build("mlp", (40,), "telu")) == {}


def test_activation_snapshots_are_json_serialisable():
    model = build("cnn1d", (40,), "pwlu")
    snap = {path: m.state_snapshot() for path, m in activation_sites(model).items()}
    assert json.loads(json.dumps(snap)) == snap


def test_activation_params_reach_every_site():
    model = build("resnet18", (3, 32, 32), "pwlu", activation_params={"segments": 6})
    assert {m.segments for m in activation_sites(model).values()} == {6}
    assert {m.points.shape[1] for m in activation_sites(model).values()} == {7}


# --- errors ----------------------------------------------------------------------------------------


def test_unknown_model_names_the_valid_ones():
    with pytest.raises(ModelError, match="vgg") as info:
        build("vgg", (3, 32, 32))
    assert all(name in str(info.value) for name in MODELS)
    assert isinstance(info.value, ValueError)


def test_unknown_activation_raises():
    with pytest.raises(activations.UnknownActivationError, match="not_an_activation"):
        build("mlp", (40,), "not_an_activation")


def test_unknown_activation_param_raises_naming_it():
    with pytest.raises(ValueError, match="wiggles"):
        build("mlp", (40,), "pwlu", activation_params={"wiggles": 3})


@pytest.mark.parametrize("params", [{"segments": 1}, {"segments": "many"}, {"bound_k": -1.0}])
def test_bad_activation_param_value_raises(params):
    with pytest.raises(ValueError, match="segments|bound_k|bad parameter"):
        build("mlp", (40,), "pwlu", activation_params=params)


@pytest.mark.parametrize("name", ["cnn", "resnet18"])
def test_image_models_refuse_flat_inputs(name):
    with pytest.raises(ValueError, match="image inputs"):
        build(name, (40,))
