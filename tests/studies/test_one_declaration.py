"""A trial's options are declared once (workers.config.TrialConfig): every option is reachable from a
study spec and from `actstudy train`, logged as an MLflow param and documented in the API schema."""

from __future__ import annotations

import typing

import pytest

from service.main import create_app
from service.settings import Settings
from studies import cli
from studies.spec import TrainingSpec, parse_spec, read_data_here
from workers.config import TrainingOptions, TrialConfig

# Options a study sets outside its `training` section: TrialConfig field → (spec edit, the value it gives).
FROM_SPEC_SECTIONS = {
    "dataset": ({"dataset": {"name": "digits"}}, "digits"),
    "dataset_source": ({"dataset": {"source": "torchvision", "name": "KMNIST"}}, "torchvision"),
    "dataset_path": ({"dataset": {"source": "file", "path": "toy.npz"}}, "toy.npz"),
    "image_size": ({"dataset": {"source": "image_folder", "path": "pets", "image_size": 16}}, 16),
    "grayscale": ({"dataset": {"source": "image_folder", "path": "pets", "grayscale": True}}, True),
    "data_root": ({"dataset": {"name": "digits", "data_root": "/data"}}, "/data"),
    "val_fraction": ({"dataset": {"name": "mnist1d", "val_fraction": 0.2}}, 0.2),
    "model": ({"model": {"name": "cnn1d"}}, "cnn1d"),
    "model_source": ({"model": {"source": "timm", "name": "resnet18"}}, "timm"),
    "model_kwargs": ({"model": {"source": "timm", "name": "resnet18", "kwargs": {"drop_rate": 0.1}}}, {"drop_rate": 0.1}),
    "swap": ({"model": {"source": "timm", "name": "resnet18", "swap": ["ReLU"]}}, ("ReLU",)),
    "hidden": ({"model": {"name": "mlp", "hidden": [8, 4]}}, (8, 4)),
    "seed": ({"seed": 7}, 7),
    "threads": ({"resources": {"cpus_per_trial": 2}}, 2),
    "device": ({"resources": {"gpus_per_trial": 0.5}}, "cuda"),
}
# Options each trial gets from the phase that runs it: the searcher (activation and its parameters, lr,
# l2) and the confirmation phase (evaluate_test); checked in test_search and test_study_e2e.
PER_TRIAL = {"activation", "activation_params", "lr", "l2", "evaluate_test"}


def other_value(info):
    """A valid value of the field other than its default."""
    default, annotation = info.default, info.annotation
    choices = typing.get_args(annotation) if typing.get_origin(annotation) is typing.Literal else ()
    if choices:
        return next(c for c in choices if c != default)
    if annotation in (bool, bool | None):
        return not default
    if annotation is int:
        return default + 1
    return default / 2 if default else 0.1


def test_every_option_has_one_way_in_from_a_spec():
    assert set(FROM_SPEC_SECTIONS) | set(TrainingOptions.model_fields) | PER_TRIAL == set(TrialConfig.model_fields)
    assert set(TrainingSpec.model_fields) == set(TrainingOptions.model_fields)  # the training section is derived


@pytest.mark.parametrize("name", sorted(TrainingOptions.model_fields))
def test_each_training_option_reaches_the_trials_from_the_spec(name):
    value = other_value(TrainingOptions.model_fields[name])
    data = {"dataset": {"name": "digits"}} if name == "augment" else {}  # crops and flips need images
    spec = parse_spec({"activations": ["relu"], **data, "training": {name: value}})
    assert getattr(spec.trial_config(), name) == value
    assert getattr(parse_spec({"activations": ["relu"], **data}).trial_config(), name) != value


@pytest.mark.parametrize("name", sorted(FROM_SPEC_SECTIONS))
def test_each_study_level_option_reaches_the_trials_from_the_spec(name):
    read_data_here(False)  # the files named above are not there: only the fields are followed here
    edit, value = FROM_SPEC_SECTIONS[name]
    spec = parse_spec({"activations": ["relu"], "model": {"name": "mlp"}, **edit})
    assert getattr(spec.trial_config(), name) == value
    assert getattr(parse_spec({"activations": ["relu"]}).trial_config(), name) != value


def train_flags(args: list[str]) -> TrialConfig:
    """The TrialConfig `actstudy train ARGS` trains."""
    params = cli.train.make_context("train", args).params
    return cli.train_config({k: v for k, v in params.items() if k != "as_json"})


@pytest.mark.parametrize("name", sorted(TrialConfig.model_fields))
def test_each_option_is_a_train_flag(name):
    info = TrialConfig.model_fields[name]
    value = {"hidden": (8, 4), "activation_params": {"alpha": 0.5}, "activation": "elu", "data_root": "/data",
             "lr": 0.5, "l2": 0.5, "seed": 3, "threads": 2, "evaluate_test": False, "dataset": "digits",
             "dataset_source": "torchvision", "dataset_path": "toy.npz", "image_size": 16, "model": "cnn1d",
             "model_kwargs": {"alpha": 0.5}, "swap": ("ReLU",)}.get(name)
    value = other_value(info) if value is None else value
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        args = [flag if value else f"--no-{name.replace('_', '-')}"]
    else:
        text = ",".join(map(str, value)) if isinstance(value, tuple) else '{"alpha": 0.5}' if isinstance(value, dict) else str(value)
        args = [flag, text]
    # crops and flips need images; constructor arguments and swapped types, a model from outside
    data = {"augment": ["--dataset", "digits"], "model_kwargs": ["--model-source", "timm"], "swap": ["--model-source", "timm"]}.get(name, [])
    assert getattr(train_flags([*data, *args]), name) == value
    assert getattr(train_flags(data), name) != value


def test_each_option_is_an_mlflow_param():
    cfg = TrialConfig(activation="pwlu", activation_params={"segments": 8}, model_source="timm", model="resnet18",
                      model_kwargs={"drop_rate": 0.1})
    params = cfg.params()
    assert set(TrialConfig.model_fields) - {"activation_params", "model_kwargs"} <= set(params)
    assert params["act.segments"] == "8" and params["hidden"] == "100,100" and params["model.drop_rate"] == "0.1"


def test_each_training_option_is_in_the_api_schema():
    schema = create_app(Settings(database_url="sqlite://", reconcile_interval_s=0)).openapi()
    training = schema["components"]["schemas"]["TrainingSpec"]["properties"]
    assert set(training) == set(TrainingOptions.model_fields)
    assert training["label_smoothing"]["maximum" if "maximum" in training["label_smoothing"] else "exclusiveMaximum"] == 1
