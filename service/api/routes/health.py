"""/healthz (the process is up) and /readyz (database, Ray and MLflow reachable)."""

import httpx
from fastapi import APIRouter, Response

from service.deps import JobsDep, SettingsDep, StoreDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "a check failed; `checks` says which"}})
def readyz(response: Response, store: StoreDep, jobs: JobsDep, settings: SettingsDep) -> dict:
    checks = {}
    try:
        store.ping()
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["database"] = f"unreachable: {type(exc).__name__}"
    checks["ray"] = "ok" if jobs.ping() else "unreachable"
    uri = settings.mlflow_uri
    try:
        checks["mlflow"] = "ok" if uri and httpx.get(f"{uri.rstrip('/')}/health", timeout=3).status_code == 200 else "unreachable"
    except httpx.HTTPError as exc:
        checks["mlflow"] = f"unreachable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    response.status_code = 200 if ready else 503
    return {"status": "ready" if ready else "not ready", "checks": checks}
