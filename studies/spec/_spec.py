"""StudySpec: what a study compares and how — pydantic v2, loaded from YAML or JSON.

Limits (documented in the README, enforced here): at most MAX_ACTIVATIONS activations, MAX_TRIALS
trials per activation, MAX_EPOCHS epochs, MAX_SEEDS confirmation seeds, and MAX_TRIAL_EPOCHS trial-epochs
in all (activations × (trials + seeds) × epochs).
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, create_model, field_validator, model_validator

import activations
from studies.spec._errors import describe
from workers import (
    MAX_EPOCHS,
    DataSource,
    Hidden,
    ImageSize,
    ModelSource,
    SwapTypes,
    TrainingOptions,
    TrialConfig,
    ValFraction,
    with_defaults,
)
from workers.data import DATASETS
from workers.models import IMAGE_MODELS, MODELS, SEQUENCE_MODELS

MAX_ACTIVATIONS = 20
MAX_TRIALS = 200
MAX_SEEDS = 20
MAX_POPULATION = 64  # members of one population (search.population)
MAX_TRIAL_EPOCHS = 200_000
CONFIRM_SEED_OFFSET = 1000  # confirmation seeds differ from the search seed, and are shared by all activations


class _Strict(BaseModel):
    # strict: "1" or true is no epoch count; finite: a stored spec must re-read as it was.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


_TRIAL = TrialConfig.model_fields
_user_code = {"allowed": False, "run_here": True}
_data_here = {"read": True}


def allow_user_code(allowed: bool, *, run_here: bool = True) -> None:
    """Whether specs may name activations and models by import path (`package.module:name`) in this process:
    `actstudy run` (your own machine) allows it; the service and its drivers only when the administrator set
    ACTSTUDY_ALLOW_USER_CODE. `run_here=False` (the service's API): such a model is not built at validation (its
    code reaches the cluster with the study), its driver checks it."""
    _user_code.update(allowed=allowed, run_here=run_here)


def read_data_here(read: bool) -> None:
    """Whether validating a spec reads its dataset and builds its model in this process (the default). Off in the
    client that submits to a service, whose data lives on the cluster: the service checks them."""
    _data_here["read"] = read


USER_CODE_OFF = ("this service runs no user code: its administrator may allow it (ACTSTUDY_ALLOW_USER_CODE=1); "
                 "`actstudy run` on your own machine takes it")
_data_roots: dict[str, list[Path] | None] = {"roots": None}


def confine_data(roots: list[Path] | None) -> None:
    """The service's API: a spec's `dataset.data_root` and an absolute `dataset.path` must lie below one of `roots`
    (the operator's ACTSTUDY_DATA_ROOTS), checked before anything is read. None (the CLI, drivers): anywhere."""
    _data_roots["roots"] = None if roots is None else [Path(r).resolve() for r in roots]


def _inside_data_roots(field: str, value: str) -> None:
    roots = _data_roots["roots"]
    if roots is None or (field == "path" and not Path(value).is_absolute()):
        return  # a relative path lies below data_root, which is checked itself
    path = Path(value)
    # resolve() follows `..` and symbolic links as this host sees them; the nodes mount the same paths.
    if not (path.is_absolute() and any(path.resolve() == root or root in path.resolve().parents for root in roots)):
        where = f"an absolute path below {', '.join(map(str, roots))}" if roots else (
            "unset: this service takes no data_root (each node reads its own $ACTSTUDY_DATA_ROOT)" if field == "data_root"
            else "relative: this service reads data only below each node's $ACTSTUDY_DATA_ROOT")
        raise ValueError(f"must be {where}")


class DatasetSpec(_Strict):
    """The data: a built-in dataset by name (the default source), or your own (see docs/your-model.md)."""

    source: DataSource = _TRIAL["dataset_source"].default
    name: str | None = Field(None, min_length=1, max_length=200, validate_default=True, description=f"builtin (default mnist1d): {', '.join(DATASETS)}; "
                                                                             "torchvision: a dataset class; plugin: its entry point")
    path: str | None = Field(None, min_length=1, max_length=1000, description="file (.npz/.safetensors) or image_folder: "
                                                                              "absolute, or relative to data_root")
    image_size: ImageSize | None = None
    grayscale: bool = _TRIAL["grayscale"].default
    data_root: str | None = Field(None, description=f"{_TRIAL['data_root'].description}, on each node")
    val_fraction: ValFraction = _TRIAL["val_fraction"].default

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None, info: ValidationInfo) -> str | None:
        source = info.data.get("source")
        if source == "builtin":
            value = (value or _TRIAL["dataset"].default).strip().lower().replace("-", "_")
            if value not in DATASETS:
                raise ValueError(f"{value!r} is not a built-in dataset ({', '.join(DATASETS)}); your own data takes a "
                                 "source: file, image_folder, torchvision or plugin")
        elif source in ("torchvision", "plugin") and not value:
            raise ValueError(f"a {source} dataset needs its name")
        return value

    @field_validator("path", "data_root")
    @classmethod
    def _confined(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            if ".." in Path(value).parts and info.field_name == "path":
                raise ValueError(f"{value!r} may not contain '..'")
            _inside_data_roots(info.field_name, value)
        return value

    @model_validator(mode="after")
    def _check(self) -> DatasetSpec:
        if self.source in ("file", "image_folder"):
            if not self.path:
                raise ValueError(f"path: a {self.source} dataset needs the path of its {'file' if self.source == 'file' else 'folder'}")
            self.name = self.name or Path(self.path).stem
        if self.source != "image_folder" and (self.image_size is not None or self.grayscale):
            raise ValueError("image_size and grayscale are options of image_folder datasets")
        return self

    def info(self) -> Any:
        """Sample shape, classes and sizes (workers.data.DataInfo), read lightly; ValueError naming the field."""
        from workers.data import DatasetError, describe_dataset

        try:
            return describe_dataset(self.source, self.name, path=self.path, data_root=self.data_root,
                                    image_size=self.image_size, grayscale=self.grayscale)
        except DatasetError as exc:
            message = str(exc)
            raise ValueError(message if message.startswith("dataset") else f"dataset: {message}") from None


class ModelSpec(_Strict):
    """The model: a built-in one by name (the default source), or timm's, torchvision's, a plugin's, your code's."""

    source: ModelSource = _TRIAL["model_source"].default
    name: str = Field(_TRIAL["model"].default, min_length=1, max_length=200, description=_TRIAL["model"].description)
    hidden: Hidden = _TRIAL["hidden"].default
    kwargs: dict[str, Any] = Field(default_factory=dict, max_length=32, description="the constructor's arguments (JSON values)")
    swap: SwapTypes = ()

    @field_validator("name")
    @classmethod
    def _name(cls, value: str, info: ValidationInfo) -> str:
        source = info.data.get("source")
        if source == "builtin" and value not in MODELS:
            raise ValueError(f"{value!r} is not a built-in model ({', '.join(MODELS)}); others take a source: timm, "
                             "torchvision, plugin or import")
        if source == "import" and not _user_code["allowed"]:
            raise ValueError(f"{value!r} is your own code (source: import): {USER_CODE_OFF}")
        return value

    @field_validator("kwargs", "swap")
    @classmethod
    def _outside_only(cls, value: Any, info: ValidationInfo) -> Any:
        if value and info.data.get("source") == "builtin":
            raise ValueError("is for models from timm, torchvision, a plugin or an import path")
        return value


@functools.lru_cache(maxsize=64)
def _model_report(source: str, name: str, kwargs_json: str, swap: tuple[str, ...], input_shape: tuple[int, ...],
                  num_classes: int, cap: int) -> dict:
    from workers.models import ModelSourceError, NoActivationSites, build_model_reporting, count_parameters

    kwargs = json.loads(kwargs_json)
    try:
        parameters = count_parameters(source, name, kwargs, input_shape, num_classes)
        if parameters > cap:
            raise ValueError(f"model: {name!r} has {parameters:,} parameters, above this service's limit of {cap:,} "
                             "(ACTSTUDY_MAX_MODEL_PARAMETERS)")
        _, report = build_model_reporting(name, source=source, kwargs=kwargs, swap=swap, input_shape=input_shape,
                                          num_classes=num_classes, activation="relu")
    except NoActivationSites as exc:
        raise ValueError(f"model: {exc}") from None
    except ModelSourceError as exc:
        raise ValueError(str(exc)) from None
    return {"parameters": parameters, **report.to_dict()}


@functools.cache
def parameters_model(name: str) -> type[BaseModel]:
    """The activation's parameters as a strict model (types from its constructor; finite numbers only)."""
    strict = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)
    fields = {p: (kind, Field(default, ge=bounds[0], le=bounds[1]) if bounds else default)
              for p, (kind, default, bounds) in activations.parameter_types(name).items()}
    return create_model(f"{name}_parameters", __config__=strict, **fields)


def usable_parameters_model(name: str) -> type[BaseModel]:
    """parameters_model, or ValueError when an activation's constructor (a plugin's, a user's class) has parameter
    types a spec cannot hold (e.g. a tensor)."""
    try:
        return parameters_model(name)
    except Exception as exc:  # noqa: BLE001 — pydantic refusing someone else's annotations
        raise ValueError(f"activation {name!r} cannot be used in a study: its constructor's parameter types are not "
                         f"ones a spec can hold ({type(exc).__name__})") from None


def check_parameters(name: str, params: dict) -> None:
    """Raise ValueError naming each parameter the activation does not take, or of the wrong type (strictly:
    no "1" for 1, no true for 1.0), or outside its choices."""
    activations.check_params(name, params)
    model = usable_parameters_model(name)
    try:
        model.model_validate(params)
    except ValidationError as exc:
        wrong = "; ".join(describe(exc.errors(include_url=False)))
        raise ValueError(f"activation {name!r}: {wrong}") from None




_NUMBER = {"type": "number", "minimum": -activations.MAX_CONSTANT, "maximum": activations.MAX_CONSTANT}
FORMULA_SCHEMA = {
    "type": "object", "title": "formula", "required": ["name", "expr"], "additionalProperties": False,
    "description": "your own activation, an expression in x; checked for finite values and gradients before any trial",
    "properties": {
        "name": {"const": activations.FORMULA},
        "expr": {"type": "string", "minLength": 1, "maxLength": activations.MAX_CHARS, "examples": ["x * tanh(softplus(x))"],
                 "description": "allowed: x, the params, numbers, + - * / ** (number exponent), " + ", ".join(activations.FORMULA_FUNCTIONS)},
        "params": {"type": "object", "maxProperties": activations.MAX_PARAMS, "additionalProperties": {"oneOf": [
            {**_NUMBER, "title": "a constant"},
            {"type": "object", "title": "a parameter", "required": ["init"], "additionalProperties": False,
             "properties": {"init": _NUMBER, "learnable": {"type": "boolean", "default": False},
                            "per_channel": {"type": "boolean", "default": False}, "low": _NUMBER, "high": _NUMBER}}]}},
        "label": {"type": "string", "minLength": 1, "maxLength": activations.MAX_LABEL,
                  "description": "its name in the study's results (default: the expression)"},
    },
}


@functools.lru_cache(maxsize=256)
def _checked(expr: str, params_json: str) -> activations.NumericsReport:
    return activations.check_formula(activations.create(activations.FORMULA, expr=expr, params=json.loads(params_json), num_features=4))


def checked_formula(module: activations.Formula) -> activations.NumericsReport:
    """The numerical check of a formula (cached: a spec is validated at submission, by the driver, and on reads)."""
    params = {name: vars(spec) for name, spec in module.specs.items()}
    return _checked(module.parsed.text, json.dumps(params, sort_keys=True))


class ActivationSpec(_Strict):
    """One candidate: a registered activation and its constructor parameters."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    name: str

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> ActivationSpec:
        if activations.is_import_path(self.name):
            if not _user_code["allowed"]:
                raise ValueError(f"{self.name!r} is an import path (your own code): this service runs only registered activations, "
                                 "formulas and installed plugins; its administrator may allow user code (ACTSTUDY_ALLOW_USER_CODE=1). "
                                 "`actstudy run` on your own machine takes it")
        else:
            self.name = self.name.lower()
        try:
            activations.entry(self.name)
            check_parameters(self.name, self.params)
            # Build one, so bad values (pwlu segments=1) fail here rather than in a trial.
            module = activations.create(self.name, num_features=4, spatial_dims=0, **self.params)
        except (ValueError, TypeError) as exc:  # a FormulaError names its key: expr, params.<name> or label
            raise ValueError(str(exc)) from None
        except (RuntimeError, OverflowError) as exc:  # torch refusing a value, e.g. prelu init=1e308 for float32
            raise ValueError(f"activation {self.name!r}: these parameters do not build ({exc})") from None
        if isinstance(module, activations.Formula):
            report = checked_formula(module)
            if not report.ok:
                raise ValueError(f"expr: {module.parsed.text!r} is not finite everywhere: {report.message()}")
        return self

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema, handler) -> dict:
        """Documented as what is checked: a registered name, or an object with the name and that activation's
        own parameters, typed (so the registry, the validation and the OpenAPI schema agree)."""
        variants: list[dict] = [{"type": "string", "enum": activations.names(), "title": "name (default parameters)"}]
        for name in activations.names():
            try:
                params = usable_parameters_model(name).model_json_schema()
            except ValueError:  # a plugin whose parameters a spec cannot hold: refused by validation, left out here
                continue
            variants.append({"type": "object", "title": name, "required": ["name"], "additionalProperties": False,
                             "properties": {"name": {"const": name}, **params.get("properties", {})}})
        variants.append(FORMULA_SCHEMA)
        return {"oneOf": variants}

    @property
    def label(self) -> str:
        """Unique name within a study: `pwlu`, `pwlu(segments=8)`, or a formula's label (its own, else its expression)."""
        if self.name == activations.FORMULA:
            p = self.params
            return activations.formula_label(p.get("expr"), p.get("params"), p.get("label"))
        if not self.params:
            return self.name
        return f"{self.name}({','.join(f'{k}={v}' for k, v in sorted(self.params.items()))})"


class RangeSpec(_Strict):
    low: float
    high: float
    log: bool = True

    @model_validator(mode="after")
    def _check(self) -> RangeSpec:
        if not self.low < self.high:
            raise ValueError(f"low must be < high, got low={self.low} high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scale range needs low > 0, got low={self.low}")
        if self.low < 0:
            raise ValueError(f"low must be >= 0, got {self.low}")
        return self


class SearchSpec(_Strict):
    trials_per_activation: int = Field(20, ge=1, le=MAX_TRIALS)
    lr: RangeSpec = Field(default_factory=lambda: RangeSpec(low=1e-4, high=1e-1, log=True))
    l2: RangeSpec = Field(default_factory=lambda: RangeSpec(low=1e-6, high=1e-2, log=True))
    sampler: Literal["tpe", "random", "grid", "cmaes"] = "tpe"
    pruner: Literal["asha", "median", "none"] = "asha"
    grace_epochs: int = Field(2, ge=1, le=MAX_EPOCHS)  # no trial is pruned before this many epochs
    # Trials of one activation run one after another so each Optuna study sees its results in a fixed
    # order: the same seed gives the same configurations. >1 trades that for speed on big clusters.
    concurrency_per_activation: int = Field(1, ge=1, le=64)
    max_concurrent_trials: int | None = Field(None, ge=1, le=1024)  # default: what the cluster fits
    # P trials of one activation trained as one batched computation in one Tune trial (workers.population): asked
    # from Optuna together, pruned together at the ASHA rungs. An activation runs one population at a time, so its
    # configurations are the same whatever the cluster's size. 1: one trial per Tune trial.
    population: int = Field(1, ge=1, le=MAX_POPULATION,
                            description="trials of one activation trained as one batched computation (docs/populations.md); "
                                        "1: one trial at a time")


# A study trains many models: shorter and in larger batches than one `actstudy train` by default.
TrainingSpec = with_defaults(TrainingOptions, "TrainingSpec", __name__,
                             "How every trial of the study trains (workers.config.TrainingOptions).", epochs=30, batch_size=128)


class ConfirmSpec(_Strict):
    seeds: int = Field(3, ge=1, le=MAX_SEEDS)
    baseline: str | None = None  # label of the activation the others are tested against; default relu, else the first


class ResourcesSpec(_Strict):
    cpus_per_trial: float = Field(1.0, gt=0, le=64)
    gpus_per_trial: float = Field(0.0, ge=0, le=8)

    def unplaceable(self, nodes: list[dict[str, float]]) -> list[tuple[str, str]]:
        """(field, why) for each resource no node has enough of, given each node's total resources ("CPU",
        "GPU"); empty when some node can run a trial (a trial runs on one node)."""
        need = {"CPU": self.cpus_per_trial, "GPU": self.gpus_per_trial}
        if any(all(node.get(k, 0.0) >= v for k, v in need.items() if v > 0) for node in nodes):
            return []
        largest = {k: max((node.get(k, 0.0) for node in nodes), default=0.0) for k in need}
        fields = {"CPU": "cpus_per_trial", "GPU": "gpus_per_trial"}
        short = [(fields[k], f"{need[k]:g} per trial, but the largest node of the cluster has {largest[k]:g}")
                 for k in need if need[k] > largest[k]]
        return short or [("cpus_per_trial", f"no node has {need['CPU']:g} CPUs and {need['GPU']:g} GPUs at once")]


class StudySpec(_Strict):
    name: str = Field("study", min_length=1, max_length=100)
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    activations: list[ActivationSpec] = Field(min_length=1, max_length=MAX_ACTIVATIONS)
    search: SearchSpec = Field(default_factory=SearchSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    confirm: ConfirmSpec = Field(default_factory=ConfirmSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    code: str | None = Field(None, pattern=r"^[0-9a-f]{64}$",
                             description="your code's sha256 (POST /api/v1/code, `actstudy submit --code DIR`): the study's "
                                         "driver and trials run in that folder, so `source: import` names import from it")

    @field_validator("code")
    @classmethod
    def _code(cls, value: str | None) -> str | None:
        if value is not None and not _user_code["allowed"]:
            raise ValueError(USER_CODE_OFF)
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
            raise ValueError("use letters, digits, '.', '_' and '-' only, starting with a letter or digit")
        return value

    @model_validator(mode="after")
    def _check(self) -> StudySpec:
        labels = [a.label for a in self.activations]
        dupes = sorted({label for label in labels if labels.count(label) > 1})
        if dupes:
            formulas = " (two formulas may share an expression: give each a `label`)" if any(
                a.name == activations.FORMULA and a.label in dupes for a in self.activations) else ""
            raise ValueError(f"activations: each may appear once, duplicated: {', '.join(dupes)}{formulas}")
        if self.confirm.baseline is None:
            self.confirm.baseline = "relu" if "relu" in labels else labels[0]
        # A label as written, else its name in any case (`ReLU`); parameter text keeps its case (`channelwise=True`).
        same = [label for label in labels if label == self.confirm.baseline] or [
            label for label in labels if label.lower() == self.confirm.baseline.lower()]
        if not same:
            raise ValueError(f"confirm.baseline: {self.confirm.baseline!r} is not among the study's activations ({', '.join(labels)})")
        self.confirm.baseline = same[0]
        try:
            self.trial_config()  # the model, the data and the training options fit together
        except ValidationError as exc:
            raise ValueError("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None
        self._check_population()
        self._check_model_and_data()
        total = len(self.activations) * (self.search.trials_per_activation + self.confirm.seeds) * self.training.epochs
        if total > MAX_TRIAL_EPOCHS:
            raise ValueError(f"study too large: {total} trial-epochs (activations × (trials + seeds) × epochs), the limit is {MAX_TRIAL_EPOCHS}")
        return self

    def _check_population(self) -> None:
        if self.search.population == 1:
            return
        t = self.training
        taken = {"training.precision": (t.precision, ("fp32",)),
                 "search.pruner": (self.search.pruner, ("asha", "none"))}
        for name, (value, allowed) in taken.items():
            if value not in allowed:
                raise ValueError(f"search.population: a population of {self.search.population} trains with {name} "
                                 f"{' or '.join(allowed)} for now, not {value!r} (population: 1 takes every option)")
        if self.resources.gpus_per_trial > 0:
            raise ValueError(f"search.population: populations train on CPUs for now, not with resources.gpus_per_trial "
                             f"{self.resources.gpus_per_trial:g} (population: 1 takes GPUs)")

    def _check_model_and_data(self) -> None:
        """The data is there and usable, the model builds on it within the parameter cap, and has activation sites."""
        if (self.dataset.source == "builtin" and self.model.source == "builtin") or not _data_here["read"]:
            return  # the built-in pairs are checked by TrialConfig
        info = self.dataset.info()
        shape = tuple(info.input_shape)
        if self.model.source == "builtin":
            if self.model.name in IMAGE_MODELS and len(shape) != 3:
                raise ValueError(f"model {self.model.name} needs images (C, H, W); {self.dataset.name}'s samples are {shape}")
            if self.model.name in SEQUENCE_MODELS and len(shape) != 1:
                raise ValueError(f"model {self.model.name} is for sequences (L,); {self.dataset.name}'s samples are {shape}")
        if self.training.augment and len(shape) != 3:
            raise ValueError(f"training.augment crops and flips images; {self.dataset.name}'s samples are {shape}")
        self.model_report()

    def model_report(self) -> dict | None:
        """For a model from outside: its parameter count and what is swapped where (`coverage`, `sites`,
        `functional`, `not_reached`); None for a built-in model, or for your code where it is not run (the
        service's API). Cached: a spec is validated at submission, by the driver, and on reads."""
        if self.model.source == "builtin" or (self.model.source == "import" and not _user_code["run_here"]) or not _data_here["read"]:
            return None
        from workers.models import max_model_parameters

        info = self.dataset.info()
        return _model_report(self.model.source, self.model.name, json.dumps(self.model.kwargs, sort_keys=True), tuple(self.model.swap),
                             tuple(info.input_shape), info.num_classes, max_model_parameters())

    @property
    def labels(self) -> list[str]:
        return [a.label for a in self.activations]

    def activation(self, label: str) -> ActivationSpec:
        return next(a for a in self.activations if a.label == label)

    def confirm_seeds(self) -> list[int]:
        """The confirmation seeds, the same for every activation."""
        return [self.seed + CONFIRM_SEED_OFFSET + i for i in range(self.confirm.seeds)]

    def total_trials(self) -> int:
        return len(self.activations) * self.search.trials_per_activation

    def trial_config(self, **per_trial: Any) -> TrialConfig:
        """What every trial of the study shares, plus `per_trial` (the activation, lr, l2, seed, ...)."""
        r = self.resources
        d, m = self.dataset, self.model
        shared = {"dataset_source": d.source, "dataset": d.name, "dataset_path": d.path, "image_size": d.image_size,
                  "grayscale": d.grayscale, "data_root": d.data_root, "val_fraction": d.val_fraction,
                  "model_source": m.source, "model": m.name, "model_kwargs": m.kwargs, "swap": m.swap,
                  "hidden": m.hidden, "seed": self.seed, **self.training.model_dump(),
                  "threads": max(1, int(r.cpus_per_trial)), "device": "cuda" if r.gpus_per_trial > 0 else "cpu"}
        return TrialConfig(**{**shared, **per_trial})


class SpecError(ValueError):
    """A spec that does not validate; `errors` are pydantic's, each with a field path and a reason."""

    def __init__(self, errors: list[dict]):
        self.errors = errors
        lines = [f"  {line}" for line in describe(errors, whole="(spec)")]
        super().__init__("invalid study spec:\n" + "\n".join(lines))


def parse_spec(data: dict) -> StudySpec:
    try:
        return StudySpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(exc.errors(include_url=False, include_context=False)) from None


def load_spec(path: str | Path) -> StudySpec:
    """Read a spec from a YAML or JSON file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"spec file not found: {path}")
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise SpecError([{"loc": (), "msg": "the spec must be a mapping of fields"}])
    return parse_spec(data)
