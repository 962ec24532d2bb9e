"""/api/v1/studies: submit, list, read, results, cancel."""

from __future__ import annotations

import re
import secrets
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Query, Request

from service.api.checks import check_submission
from service.api.json_route import CheckedJsonRoute
from service.api.responses import documented
from service.auth import CurrentCaller
from service.deps import JobsDep, SettingsDep, StoreDep
from service.jobs import JobLauncherError, finish_cancel, launch
from service.models import Links, StudiesPublic, StudyPublic, StudyResultsPublic
from studies.records import Study, StudyStatus
from studies.spec import MlflowLinks, StudySpec

router = APIRouter(prefix="/studies", tags=["studies"], responses=documented(401), route_class=CheckedJsonRoute)


def _public(study: Study, request: Request) -> StudyPublic:
    # From configuration, never from the request's Host header (which the client chooses).
    settings = request.app.state.settings
    base = (settings.public_url or "").rstrip("/") + request.app.url_path_for("read_study", study_id=study.id)
    mlflow = MlflowLinks.model_validate(study.mlflow).parent_run_url if study.mlflow else None
    return StudyPublic(
        id=study.id, name=study.name, owner=study.owner, status=study.status, progress=study.progress, error=study.error,
        ray_job_id=study.ray_job_id, attempts=study.attempts, created_at=study.created_at, started_at=study.started_at,
        finished_at=study.finished_at, links=Links(self=base, results=f"{base}/results", cancel=f"{base}/cancel", mlflow=mlflow),
    )


_STUDY_ID = re.compile(r"[A-Za-z0-9_.-]{1,32}")  # what an id can be; anything else is unknown without a query


def _visible(store, caller, study_id: str) -> Study:
    # A NUL byte or an over-long id would otherwise reach the database (PostgreSQL refuses NUL: a 500).
    study = store.get(study_id) if _STUDY_ID.fullmatch(study_id) else None
    if study is None or not caller.may_see(study.owner):
        raise HTTPException(404, f"no study {study_id!r}")  # another owner's study is not acknowledged
    return study


@router.post("", status_code=201, response_model=StudyPublic, summary="Submit a study", responses=documented(400, 413, 429, 503))
def create_study(spec: Annotated[StudySpec, Body()], request: Request, caller: CurrentCaller, store: StoreDep,
                 jobs: JobsDep, settings: SettingsDep) -> StudyPublic:
    check_submission(spec, jobs, settings)
    study_id = secrets.token_hex(6)
    study = Study(id=study_id, owner=caller.owner, name=spec.name, spec=spec.model_dump(mode="json"),
                  status=StudyStatus.queued.value, attempts=0)
    if not store.add_within_quota(study, settings.max_active_studies_per_owner):
        raise HTTPException(429, f"at most {settings.max_active_studies_per_owner} queued or running studies per owner")
    try:
        launch(store, jobs, study)
    except JobLauncherError as exc:
        store.mark(study_id, StudyStatus.failed, error=str(exc))
        raise HTTPException(503, f"study {study_id} stored but not started: {exc}") from None
    return _public(store.get(study_id), request).model_copy(update={"model_report": spec.model_report()})


@router.get("", response_model=StudiesPublic, summary="The caller's studies, newest first")
def list_studies(request: Request, caller: CurrentCaller, store: StoreDep,
                 status: Annotated[StudyStatus | None, Query()] = None,
                 limit: Annotated[int, Query(ge=1, le=100)] = 20, offset: Annotated[int, Query(ge=0, le=10**9)] = 0) -> StudiesPublic:
    rows, count = store.page(owner=None if caller.admin else caller.owner, status=status, limit=limit, offset=offset)
    return StudiesPublic(data=[_public(r, request) for r in rows], count=count)


@router.get("/{study_id}", response_model=StudyPublic, summary="Status and progress of a study", responses=documented(404))
def read_study(study_id: str, request: Request, caller: CurrentCaller, store: StoreDep) -> StudyPublic:
    # Only reads: the reconciler alone follows the Ray job (and relaunches a dead driver).
    return _public(_visible(store, caller, study_id), request)


@router.get("/{study_id}/results", response_model=StudyResultsPublic, summary="Ranking, statistics, best params, MLflow links",
            responses=documented(404, 409))
def read_results(study_id: str, caller: CurrentCaller, store: StoreDep) -> StudyResultsPublic:
    study = _visible(store, caller, study_id)
    if study.status != StudyStatus.succeeded.value or not study.results:
        raise HTTPException(409, f"study {study_id} has no results yet (status {study.status})")
    return StudyResultsPublic(id=study.id, status=study.status, **study.results)


@router.post("/{study_id}/cancel", response_model=StudyPublic, summary="Stop a queued or running study",
             description="A study with a driver answers `cancelling`: its Ray job is stopped, then every MLflow run it "
                         "left open is ended (KILLED) and it becomes `cancelled`, freeing its quota slot (seconds). "
                         "A study with no driver yet is `cancelled` at once.",
             responses=documented(404, 409, 413))
def cancel_study(study_id: str, request: Request, caller: CurrentCaller, store: StoreDep, jobs: JobsDep) -> StudyPublic:
    study = _visible(store, caller, study_id)
    if StudyStatus(study.status).terminal:
        raise HTTPException(409, f"study {study_id} is already {study.status}")
    reason = study.error if study.status == StudyStatus.cancelling.value else f"cancelled by {caller.owner}"
    if not study.ray_job_id:
        store.mark(study_id, StudyStatus.cancelled, error=reason)
        return _public(store.get(study_id), request)
    # Marked first, so the driver's own exit path does not overwrite it as failed.
    store.mark(study_id, StudyStatus.cancelling, error=reason)
    jobs.stop(study.ray_job_id)
    try:  # a driver that is already gone: done now; else the reconciler finishes it when the driver is
        finish_cancel(store, jobs, store.get(study_id))
    except JobLauncherError:  # the cluster does not answer now: the reconciler tries again
        pass
    return _public(store.get(study_id), request)
