"""TrialConfig: the one declaration of a trial's options, their types, limits, defaults and units.

Everything else is derived from it: a study spec's `training` section (`TrainingOptions`, with a
study's own defaults), the Tune config of every study trial, `actstudy train`'s flags and the params
each trial run logs to MLflow. Adding an option here and using it in the training loop is the whole
change; an option nobody declared is an error, never silently ignored.
"""

from __future__ import annotations

import copy
from pathlib import PurePath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from workers.data import DATA_SOURCES, DATASETS, IMAGE_DATASETS
from workers.models import IMAGE_MODELS, MODEL_SOURCES, MODELS, SEQUENCE_MODELS

MAX_EPOCHS = 500
MAX_BATCH_SIZE = 8192

# Types shared with the study spec's dataset and model sections (the names come from the registries).
DatasetName = Literal[DATASETS]
ModelName = Literal[MODELS]
DataSource = Literal[DATA_SOURCES]
ModelSource = Literal[MODEL_SOURCES]
ImageSize = Annotated[int, Field(ge=4, le=1024, description="image_folder: resize every image to this square size (pixels)")]
# Class names of the model's activation modules to replace (exactly these types); empty: torch's and timm's.
SwapTypes = Annotated[tuple[Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$")], ...],
                      Field(max_length=16, strict=False, description="activation module types to swap (e.g. ReLU,GELU); "
                                                                     "default: torch's and timm's, exact types")]
Precision = Literal["fp32", "bf16", "fp16"]  # workers.precision maps these to autocast dtypes
ValFraction = Annotated[float, Field(gt=0, le=0.5, description="of the training data, held out for validation")]
# A JSON list is taken for the tuple; its items are strict integers.
Hidden = Annotated[tuple[Annotated[int, Field(ge=1, le=4096, strict=True)], ...],
                   Field(max_length=8, strict=False, description="mlp hidden sizes")]


class TrainingOptions(BaseModel):
    """How a model is trained: `actstudy train`'s options and, with a study's defaults, a spec's `training`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    # 167 epochs × 36 steps ≈ 6,000 steps on MNIST-1D, as the MNIST-1D paper.
    epochs: int = Field(167, ge=1, le=MAX_EPOCHS, description="passes over the training data")
    batch_size: int = Field(100, ge=1, le=MAX_BATCH_SIZE, description="samples per step")
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd only")
    nesterov: bool = Field(False, description="sgd only")
    schedule: Literal["constant", "cosine"] = Field("constant", description="cosine decays to 0 at the last step")
    warmup_epochs: float = Field(0.0, ge=0, le=MAX_EPOCHS, description="linear warm-up from 0, in epochs")
    l2_all: bool = Field(False, description="also penalise biases, norm layers and activation parameters")
    augment: bool | None = Field(None, description="CIFAR crop + flip; unset: on for cifar10/100 only")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="of the training loss's targets")
    precision: Precision = Field(
        "fp32", description="forward passes under autocast to bf16 or fp16 (fp16 with a loss scaler); weights stay fp32"
    )


class TrialConfig(TrainingOptions):
    """Everything that defines a trial."""

    dataset_source: DataSource = Field("builtin", description="builtin, file (.npz/.safetensors), image_folder, torchvision, plugin")
    dataset: str = Field("mnist1d", min_length=1, max_length=200,
                         description=f"builtin: {', '.join(DATASETS)}; torchvision: a dataset class; plugin: its name")
    dataset_path: str | None = Field(None, max_length=1000, description="file / image_folder: the file or folder (relative: "
                                                                        "below data_root)")
    image_size: ImageSize | None = None
    grayscale: bool = Field(False, description="image_folder: one channel instead of RGB")
    data_root: str | None = Field(None, description="folder of datasets; unset: $ACTSTUDY_DATA_ROOT")
    val_fraction: ValFraction = 0.1
    model_source: ModelSource = Field("builtin", description="builtin, timm, torchvision, plugin, import")
    model: str = Field("mlp", min_length=1, max_length=200,
                       description=f"builtin: {', '.join(MODELS)}; timm/torchvision: a model name; plugin: its name; "
                                   "import: package.module:build")
    model_kwargs: dict[str, Any] = Field(default_factory=dict, description="the model constructor's arguments (not builtin)")
    swap: SwapTypes = ()
    hidden: Hidden = (100, 100)
    activation: str = "relu"
    activation_params: dict[str, Any] = Field(default_factory=dict, description="the activation's constructor parameters")
    lr: float = Field(1e-2, gt=0, description="peak learning rate")
    l2: float = Field(0.0, ge=0, description="λ of the L2 penalty: gradient λ·w on weights (decoupled decay for adamw)")
    seed: int = Field(0, ge=0, description="weights, batch order, augmentation and the validation split")
    evaluate_test: bool = Field(False, description="score the test split each epoch (confirmation runs)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(1, ge=1, description="torch intra-op threads (the trial's CPUs)")

    @model_validator(mode="after")
    def _fits_the_data(self) -> TrialConfig:
        if self.dataset_source == "builtin" and self.dataset not in DATASETS:
            raise ValueError(f"dataset {self.dataset!r} is not a built-in dataset ({', '.join(DATASETS)}); other data takes a dataset_source")
        if self.dataset_source in ("file", "image_folder"):
            if not self.dataset_path:
                raise ValueError(f"a {self.dataset_source} dataset needs dataset_path")
            if "dataset" not in self.model_fields_set:  # named after its file or folder, as in a spec
                self.dataset = PurePath(self.dataset_path).stem
        if self.model_source == "builtin":
            if self.model not in MODELS:
                raise ValueError(f"model {self.model!r} is not a built-in model ({', '.join(MODELS)}); other models take a model_source")
            if self.model_kwargs or self.swap:
                raise ValueError("model_kwargs and swap are for models from timm, torchvision, a plugin or an import path")
        if self.dataset_source != "builtin" or self.model_source != "builtin":
            return self  # shapes known once the data is read: checked by the spec and at training
        images = self.dataset in IMAGE_DATASETS
        if self.model in IMAGE_MODELS and not images:
            raise ValueError(f"model {self.model} needs an image dataset ({', '.join(IMAGE_DATASETS)}), not {self.dataset}")
        if self.model in SEQUENCE_MODELS and images:
            raise ValueError(f"model {self.model} is for sequences (mnist1d), not {self.dataset}")
        if self.augment and not images:
            raise ValueError(f"augment crops and flips images; {self.dataset} has none")
        return self

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    def params(self) -> dict[str, str]:
        """Every option as a flat string mapping (MLflow params): `hidden` as `100,100`, activation params as `act.<name>`."""
        out = {}
        for name, value in self.to_dict().items():
            if name == "activation_params":
                out.update({f"act.{k}": str(v) for k, v in value.items()})
            elif name == "model_kwargs":
                out.update({f"model.{k}": str(v) for k, v in value.items()})
            elif isinstance(value, list):
                out[name] = ",".join(str(v) for v in value)
            else:
                out[name] = str(value)
        return out


def with_defaults(model: type[BaseModel], name: str, module: str, doc: str, **defaults: Any) -> type[BaseModel]:
    """`model` as a new class `module.name` with other defaults; every type, limit and description kept."""
    fields = {}
    for key, default in defaults.items():
        info = copy.copy(model.model_fields[key])
        info.default = default
        fields[key] = (info.annotation, info)
    return create_model(name, __base__=model, __module__=module, __doc__=doc, **fields)
