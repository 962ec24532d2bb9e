"""API models, in families: StudyPublic, StudiesPublic, StudyResultsPublic, ActivationPublic, and the error Message.

Progress and results are the study layer's own models (studies.spec), so the OpenAPI schema documents
exactly what a driver writes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from studies.spec import StudyProgress, StudyResults


class Links(BaseModel):
    self: str
    results: str
    cancel: str
    mlflow: str | None = None


class StudyPublic(BaseModel):
    id: str
    name: str
    owner: str
    status: str
    progress: StudyProgress | None = None
    error: str | None = None
    ray_job_id: str | None = None
    attempts: int = 0
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    links: Links
    model_report: dict | None = Field(None, description="in the answer to a submission, for a model from timm, torchvision or a "
                                                        "plugin: its parameters and its activation sites, swapped one by one")

    @field_validator("created_at", "started_at", "finished_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        # Stored in UTC; SQLite hands them back without the zone, PostgreSQL with it: answer the same.
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class SpecCheck(BaseModel):
    """A spec that passed every check of a submission, as it would run (defaults filled in)."""

    spec: dict[str, Any]
    model_report: dict | None = Field(None, description="for a model from timm, torchvision or a plugin: its parameters and "
                                                        "activation sites (your code's model is built by its driver)")
    dataset: dict | None = Field(None, description="for data from outside: sample shape, classes, split sizes, bytes in memory")


class StudiesPublic(BaseModel):
    data: list[StudyPublic]
    count: int


class StudyResultsPublic(StudyResults):
    """A succeeded study's results, with its id and status."""

    id: str
    status: str


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class FieldErrors(BaseModel):
    """A 422: what is wrong, field by field (the same shape as FastAPI's own validation answers)."""

    detail: list[FieldError]


class Message(BaseModel):
    """Every error but 422: a short `detail`."""

    detail: str


class ActivationPublic(BaseModel):
    name: str
    formula: str
    source: str
    learnable: bool
    parameters: dict[str, Any]
    kind: Literal["builtin", "plugin", "formula"] = Field("builtin", description="plugin: from an installed package's entry point")
    language: dict[str, Any] | None = Field(None, description="the formula language (the `formula` entry only)")
