"""A small HTTP client for the API ($ACTSTUDY_URL, $ACTSTUDY_TOKEN), used by the CLI and the demo."""

from __future__ import annotations

import os

import httpx
from rich.console import Console
from rich.live import Live
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, stop_never, wait_fixed

from service.models import SpecCheck, StudyPublic, StudyResultsPublic
from studies.spec import StudyStatus, describe


class ApiError(RuntimeError):
    pass


class Client:
    def __init__(self, url: str, token: str | None, timeout: float = 30) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url.rstrip("/") + "/api/v1", headers=headers, timeout=timeout)
        self.url = url

    @classmethod
    def from_env(cls) -> Client:
        return cls(os.environ.get("ACTSTUDY_URL", "http://127.0.0.1:8000"), os.environ.get("ACTSTUDY_TOKEN"))

    def _call(self, method: str, path: str, **kw) -> dict:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise ApiError(f"cannot reach the API at {self.url}: {exc}") from None
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail")
            except ValueError:
                detail = r.text
            if isinstance(detail, list):
                detail = "; ".join(describe(detail))
            hint = " (set ACTSTUDY_TOKEN)" if r.status_code == 401 else ""
            raise ApiError(f"{r.status_code}: {detail}{hint}")
        return r.json()

    def submit(self, spec: dict) -> StudyPublic:
        return StudyPublic.model_validate(self._call("POST", "/studies", json=spec))

    def upload_code(self, archive: bytes) -> dict:
        """A zip archive of your code (service.code.pack_folder): its sha256, files and unpacked bytes."""
        return self._call("POST", "/code", content=archive, headers={"Content-Type": "application/zip"})

    def validate(self, spec: dict) -> SpecCheck:
        return SpecCheck.model_validate(self._call("POST", "/specs/validate", json=spec))

    def study(self, study_id: str) -> StudyPublic:
        return StudyPublic.model_validate(self._call("GET", f"/studies/{study_id}"))

    def results(self, study_id: str) -> StudyResultsPublic:
        return StudyResultsPublic.model_validate(self._call("GET", f"/studies/{study_id}/results"))

    def cancel(self, study_id: str) -> StudyPublic:
        return StudyPublic.model_validate(self._call("POST", f"/studies/{study_id}/cancel"))

    def wait(self, study_id: str, *, console: Console | None = None, poll_s: float = 1.0,
             timeout_s: float | None = None) -> StudyPublic:
        """Follow a study until it ends, with a live progress table when a console is given."""
        from studies.console import progress_table  # Ray Tune, through studies.execution: only when drawing

        live = Live(console=console, refresh_per_second=2) if console else None

        def look() -> StudyPublic:
            study = self.study(study_id)
            if live:
                phase = study.progress.current() if study.progress else None
                live.update(progress_table(phase, title=f"{study_id}: {study.status}, {phase.phase}") if phase
                            else f"{study_id}: {study.status} ...")
            return study

        if live:
            live.start()
        try:
            return Retrying(stop=stop_after_delay(timeout_s) if timeout_s else stop_never, wait=wait_fixed(poll_s),
                            retry=retry_if_result(lambda study: not StudyStatus(study.status).terminal))(look)
        except RetryError as exc:
            study = exc.last_attempt.result()
            raise ApiError(f"study {study_id} still {study.status} after {timeout_s:.0f} s") from None
        finally:
            if live:
                live.stop()
                if not console.is_terminal:  # Live's last frame ends without a newline when not drawing in place
                    console.print()


def print_status(console: Console, study: StudyPublic) -> None:
    console.print(f"study {study.id} ({study.name}): [bold]{study.status}[/bold]")
    for key in ("created_at", "started_at", "finished_at"):
        if getattr(study, key):
            console.print(f"  {key.replace('_', ' ')}: {getattr(study, key)}")
    if study.error:
        console.print(f"  error: {study.error}")
    if study.links.mlflow:
        console.print(f"  MLflow: {study.links.mlflow}")
    phase = study.progress.current() if study.progress else None
    if phase:
        from studies.console import progress_table

        console.print(progress_table(phase))
