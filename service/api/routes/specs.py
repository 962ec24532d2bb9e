"""/api/v1/specs: check a study's spec as a submission would, without submitting it (`actstudy submit --check`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from service.api.checks import check_submission
from service.api.json_route import CheckedJsonRoute
from service.api.responses import documented
from service.auth import CurrentCaller
from service.deps import JobsDep, SettingsDep
from service.models import SpecCheck
from studies.spec import StudySpec

router = APIRouter(prefix="/specs", tags=["studies"], responses=documented(401), route_class=CheckedJsonRoute)


@router.post("/validate", response_model=SpecCheck, summary="Check a study without submitting it", responses=documented(400, 413))
def validate_spec(spec: Annotated[StudySpec, Body()], caller: CurrentCaller, jobs: JobsDep, settings: SettingsDep) -> SpecCheck:
    """Everything a submission checks (the fields, the data, the model and its parameter count, uploaded code, the
    cluster's room for a trial), nothing stored or started: the spec as it would run, what its model's activations
    replace, and the dataset's shape and size."""
    check_submission(spec, jobs, settings)
    info = spec.dataset.info() if spec.dataset.source != "builtin" else None
    return SpecCheck(spec=spec.model_dump(mode="json"), model_report=spec.model_report(), dataset=info.to_dict() if info else None)
