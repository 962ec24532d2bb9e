"""Click options derived from a pydantic model, one per field with its type, choices, limits and description:
how `actstudy train` offers every option of `workers.TrialConfig` without declaring any twice."""

from __future__ import annotations

import json
import types
import typing
from typing import Any

import click
from pydantic import BaseModel
from pydantic.fields import FieldInfo


class _Sizes(click.ParamType):
    name = "N,N,..."

    def convert(self, value, param, ctx):
        if isinstance(value, (tuple, list)):
            return tuple(value)
        try:
            return tuple(int(v) for v in str(value).split(",") if v.strip())
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of integers", param, ctx)


class _Names(click.ParamType):
    name = "NAME,NAME,..."

    def convert(self, value, param, ctx):
        if isinstance(value, (tuple, list)):
            return tuple(value)
        return tuple(v.strip() for v in str(value).split(",") if v.strip())


class _Json(click.ParamType):
    name = "JSON"

    def convert(self, value, param, ctx):
        if isinstance(value, dict):
            return value
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            self.fail(f"{value!r} is not JSON: {exc}", param, ctx)
        if not isinstance(parsed, dict):
            self.fail(f"{value!r} is not a JSON object", param, ctx)
        return parsed


def _click_type(annotation: Any) -> tuple[Any, bool]:
    """(click type, is a boolean flag) for a field's annotation."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _click_type(args[0])
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _click_type(args[0])
    if origin is typing.Literal:
        return click.Choice([str(a) for a in args]), False
    if origin is tuple:
        inner = typing.get_args(annotation)[0]
        inner = typing.get_args(inner)[0] if typing.get_origin(inner) is typing.Annotated else inner
        return (_Names() if inner is str else _Sizes()), False
    if origin is dict or annotation is dict:
        return _Json(), False
    if annotation is bool:
        return bool, True
    return {int: int, float: float}.get(annotation, str), False


def _describe(info: FieldInfo, default: Any) -> str:
    text = info.description or ""
    limits = [f"{word} {v}" for m in info.metadata for word, v in
              (("≥", getattr(m, "ge", None)), (">", getattr(m, "gt", None)), ("≤", getattr(m, "le", None)), ("<", getattr(m, "lt", None)))
              if v is not None]
    shown = ",".join(map(str, default)) if isinstance(default, tuple) else json.dumps(default) if isinstance(default, dict) else default
    return "; ".join(p for p in (text, ", ".join(limits), "" if default is None else f"default {shown}") if p)


def model_options(model: type[BaseModel], defaults: dict[str, Any]):
    """A decorator adding one option per field of `model`; an option not given arrives as None."""

    own = [name for name in model.model_fields if name in model.__annotations__]  # the model's own first, then inherited
    ordered = own + [name for name in model.model_fields if name not in own]

    def decorate(fn):
        for name in reversed(ordered):
            info = model.model_fields[name]
            kind, flag = _click_type(info.annotation)
            default = defaults.get(name, info.get_default(call_default_factory=True))
            dashed = name.replace("_", "-")
            decls = [f"--{dashed}/--no-{dashed}"] if flag else [f"--{dashed}"]
            fn = click.option(*decls, name, type=None if flag else kind, default=None, help=_describe(info, default))(fn)
        return fn

    return decorate
