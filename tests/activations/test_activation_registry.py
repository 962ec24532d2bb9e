"""The registry: names, lookup, parameter checking and the errors a user sees."""

from __future__ import annotations

import typing

import pytest
import torch
from torch import nn

import activations
from activations import UnknownActivationError


def test_names_are_unique_snake_case():
    names = activations.names()
    assert len(names) == len(set(names))
    for name in names:
        assert name == name.lower() and " " not in name and "-" not in name


def test_unknown_name_raises_naming_it_and_listing_valid_names():
    with pytest.raises(UnknownActivationError) as info:
        activations.create("no_such_activation")
    message = str(info.value)
    assert "no_such_activation" in message
    for name in activations.names():
        assert name in message
    assert isinstance(info.value, ValueError)


def test_unknown_name_through_entry_and_parameters():
    for lookup in (activations.entry, activations.parameters):
        with pytest.raises(UnknownActivationError, match="swishy"):
            lookup("swishy")


def test_bad_parameter_raises_naming_it():
    with pytest.raises(UnknownActivationError) as info:
        activations.create("pwlu", bogus=1)
    message = str(info.value)
    assert "bogus" in message
    assert "segments" in message  # the valid parameters are listed too


def test_parameter_for_an_activation_without_parameters_is_rejected():
    with pytest.raises(UnknownActivationError, match="bogus"):
        activations.create("telu", bogus=1)


def test_parameter_of_the_wrong_type_raises_unknown_activation_error():
    # A string where a float belongs makes the constructor raise TypeError; the registry names the activation.
    with pytest.raises(UnknownActivationError, match="pwlu"):
        activations.create("pwlu", bound_k="wide")


@pytest.mark.parametrize(
    ("name", "cls"),
    [("TeLU", activations.TeLU), ("PWLU", activations.PWLU), ("ReLU", nn.ReLU), ("GELU", nn.GELU), ("Smish", activations.Smish)],
)
def test_lookup_is_case_insensitive(name, cls):
    module = activations.create(name, num_features=4)
    assert type(module) is cls
    assert activations.entry(name) is activations.entry(name.lower())


def test_classes_pass_through():
    assert type(activations.create(activations.TeLU)) is activations.TeLU
    assert type(activations.create(nn.Hardswish)) is nn.Hardswish
    pwlu = activations.create(activations.PWLU, num_features=5, spatial_dims=2, segments=4)
    assert pwlu.channels == 5 and pwlu.segments == 4


def test_site_hints_reach_only_the_classes_that_take_them():
    assert type(activations.create("relu", num_features=3, spatial_dims=2)) is nn.ReLU
    assert activations.create("prelu", num_features=5).weight.shape == (5,)
    assert activations.create("prelu").weight.shape == (1,)
    lslu = activations.create("lslu", num_features=6, spatial_dims=1)
    assert lslu.num_features == 6 and lslu.spatial_dims == 1
    assert activations.create("pwlu", num_features=7).channels == 7
    assert not activations.create("pwlu").channelwise


def test_params_are_forwarded():
    module = activations.create("pwlu", num_features=2, segments=8, stats_steps=5, bound_k=2.5)
    assert (module.segments, module.stats_steps, module.bound_k) == (8, 5, 2.5)
    assert activations.create("leaky_relu", negative_slope=0.2).negative_slope == 0.2
    assert activations.create("lslu", num_features=2, spatial_dims=0, terms=2).theta.shape == (2,)


def test_parameters_exclude_site_hints():
    params = activations.parameters("pwlu")
    assert {"segments", "stats_steps", "bound_k"} <= set(params)
    assert params["segments"] == 16
    assert "num_features" not in params
    assert "spatial_dims" not in activations.parameters("lslu")
    assert activations.parameters("telu") == {}


def test_entries_have_formula_and_source():
    for name in activations.names():
        entry = activations.entry(name)
        assert entry.formula and entry.source, name
        assert issubclass(entry.cls, nn.Module), name


def test_every_activation_class_has_a_docstring():
    for name in activations.names():
        cls = activations.entry(name).cls
        if cls.__module__.startswith("activations"):
            assert cls.__doc__ and cls.__doc__.strip(), name


def test_reports_evolution():
    assert activations.reports_evolution(activations.create("pwlu"))
    assert activations.reports_evolution(activations.create("lslu", num_features=2))
    assert not activations.reports_evolution(activations.create("telu"))
    assert not activations.reports_evolution(torch.nn.ReLU())
    # Learnable (it has a trained slope) but its evolution is not reported: two different words.
    assert activations.entry("prelu").learnable and not activations.reports_evolution(activations.create("prelu"))


@pytest.mark.parametrize("name", activations.names())
def test_parameters_are_real_keywords(name):
    params = activations.parameters(name)
    assert not {"args", "kwargs", "self", "inplace"} & set(params)
    module = activations.create(name, num_features=2, spatial_dims=1, **params)  # every default is accepted back
    assert isinstance(module, nn.Module)



@pytest.mark.parametrize("name", activations.names())
def test_every_parameter_has_a_declared_type(name):
    """What a study spec checks submitted parameters against: no parameter is of any type."""
    for param, (kind, default, bounds) in activations.parameter_types(name).items():
        assert kind is not typing.Any, f"{name}.{param} has no type annotation"
        if kind in (int, float):  # every number is bounded: no value builds a module of unbounded size
            assert bounds is not None and bounds[0] <= (default if default is not None else bounds[0]) <= bounds[1]
