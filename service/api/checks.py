"""What a submission checks beyond the spec's own validation, in one place for `POST /studies` and
`POST /specs/validate`: uploaded code that exists, and a cluster with room for one trial."""

from __future__ import annotations

from fastapi.exceptions import RequestValidationError

from service.code import code_dir
from service.jobs import JobLauncher
from service.settings import Settings
from studies.spec import StudySpec


def check_submission(spec: StudySpec, jobs: JobLauncher, settings: Settings) -> None:
    """422 naming the field: `code` that was never uploaded; `resources` no node of the cluster can hold (a study
    that would wait forever, holding a quota slot)."""
    if spec.code and not code_dir(settings.data_dir, spec.code).is_dir():
        raise RequestValidationError([{"loc": ("body", "code"), "type": "value_error",
                                       "msg": "no code uploaded with this sha256: upload the folder first (POST /api/v1/code)"}])
    if not settings.ray_jobs_url:
        return  # no cluster configured: the launch answers 503
    nodes = jobs.node_resources()
    short = spec.resources.unplaceable(nodes) if nodes is not None else []
    if short:
        raise RequestValidationError([{"loc": ("body", "resources", field), "type": "value_error", "msg": why}
                                      for field, why in short])
