"""Studies as Ray jobs: submission through Ray's Jobs API, and the reconciler that maps job states
onto study states (and relaunches a driver that died, which then continues from the study's stores)."""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

import requests
from ray.job_submission import JobStatus, JobSubmissionClient
from tenacity import Retrying, before_sleep_log, retry_if_exception_type, stop_after_delay, wait_fixed

from service.settings import Settings
from studies.records import RecordStore, Study, StudyStatus
from workers.files import written_whole

log = logging.getLogger(__name__)

# How long a submission keeps trying: a head that has just started answers before its job agent is up (an
# HTTP 500, which Ray's SDK raises as RuntimeError, its one type for a refusal), and that passes in seconds.
SUBMIT_RETRY_S = 30.0
SUBMIT_RETRIES = {"stop": stop_after_delay(SUBMIT_RETRY_S), "wait": wait_fixed(1),
                  "retry": retry_if_exception_type((RuntimeError, requests.ConnectionError)),
                  "before_sleep": before_sleep_log(log, logging.INFO)}


class JobLauncherError(RuntimeError):
    """The Ray cluster could not be reached or refused the job."""


class JobLauncher:
    """Submits `python -m studies.driver <id>` as a Ray job and asks how it is doing."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: JobSubmissionClient | None = None

    @property
    def client(self) -> JobSubmissionClient:
        if self._client is None:
            if not self.settings.ray_jobs_url:
                raise JobLauncherError("no Ray cluster configured (ACTSTUDY_RAY_JOBS_URL)")
            headers = {"Authorization": f"Bearer {self.settings.ray_auth_token}"} if self.settings.ray_auth_token else None
            try:
                self._client = JobSubmissionClient(self.settings.ray_jobs_url, headers=headers)
            except Exception as exc:  # noqa: BLE001 — connection or auth
                raise JobLauncherError(f"Ray Jobs API at {self.settings.ray_jobs_url} unreachable: {type(exc).__name__}") from exc
        return self._client

    def submit(self, study: Study, attempt: int) -> str:
        s = self.settings
        env = {
            # A file, not the URL: Ray writes a job's runtime env to its logs, and the URL may hold a password.
            "ACTSTUDY_DATABASE_URL_FILE": str(self.database_url_file),
            "MLFLOW_TRACKING_URI": s.mlflow_uri or "",
            "ACTSTUDY_MLFLOW_PUBLIC_URL": s.mlflow_public_url or "",
            "ACTSTUDY_DATA_DIR": str(Path(s.data_dir).resolve()),
        }
        client = self.client  # JobLauncherError when there is no cluster: nothing to retry
        try:
            return Retrying(**SUBMIT_RETRIES, reraise=True)(
                client.submit_job,
                entrypoint=f"{s.driver_python or sys.executable} -m studies.driver {study.id}",
                submission_id=job_id_for(study.id, attempt),
                runtime_env={"env_vars": env},
                metadata={"study_id": study.id, "owner": study.owner, "attempt": str(attempt)},
                entrypoint_num_cpus=0,  # the driver only orchestrates; trials hold the CPUs
            )
        except Exception as exc:  # noqa: BLE001 — whatever Ray answered, the job was not taken
            raise JobLauncherError(f"Ray refused the job: {type(exc).__name__}: {str(exc)[:300]}") from exc

    @functools.cached_property
    def database_url_file(self) -> Path:
        """The records database's URL in `<data dir>/secrets/database-url`, readable by this user only (the
        data dir is the same shared path on the head, where drivers run); written once per launcher."""
        folder = Path(self.settings.data_dir).resolve() / "secrets"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = folder / "database-url"
        with written_whole(path) as f:  # mkstemp: mode 600 from the start
            f.write(self.settings.db_url.encode())
        return path

    def status(self, job_id: str) -> tuple[JobStatus, str]:
        info = self.client.get_job_info(job_id)
        return info.status, info.message or ""

    def stop(self, job_id: str) -> bool:
        try:
            return self.client.stop_job(job_id)
        except Exception as exc:  # noqa: BLE001 — already gone
            log.warning("stop_job %s: %s", job_id, exc)
            return False

    def node_resources(self) -> list[dict[str, float]] | None:
        """Each live node's total resources ("CPU", "GPU", ...), from Ray's State API; None when it cannot
        tell (the submission then goes ahead, and the driver checks again before any trial)."""
        from ray.util.state.api import StateApiClient
        from ray.util.state.common import ListApiOptions, StateResource

        headers = {"Authorization": f"Bearer {self.settings.ray_auth_token}"} if self.settings.ray_auth_token else None
        try:
            nodes = StateApiClient(self.settings.ray_jobs_url, headers=headers).list(
                StateResource.NODES, options=ListApiOptions(detail=True, timeout=10), raise_on_missing_output=False)
        except Exception as exc:  # noqa: BLE001 — an old head, a blip: not a reason to refuse a study
            log.warning("could not list the cluster's nodes: %s", exc)
            return None
        return [dict(n.resources_total or {}) for n in nodes if n.state == "ALIVE"]

    def ping(self) -> bool:
        try:
            self.client.list_jobs()
            return True
        except Exception:  # noqa: BLE001
            return False


def job_id_for(study_id: str, attempt: int) -> str:
    return f"actstudy-{study_id}-{attempt}"


def launch(store: RecordStore, jobs: JobLauncher, study: Study) -> str | None:
    """Submit the study's next driver attempt; None when another process has just taken it.

    The attempt is decided by one compare-and-set on the study's row before anything is submitted, so
    concurrent deciders (the reconciler in several API processes, a submission) launch exactly one driver.
    """
    attempt = study.attempts + 1
    if not store.claim_attempt(study.id, study.attempts, job_id_for(study.id, attempt)):
        return None
    return jobs.submit(study, attempt)


def reconcile_one(store: RecordStore, jobs: JobLauncher, study: Study, max_attempts: int) -> str:
    """Bring one active study's status in line with its Ray job; returns the (new) status."""
    if StudyStatus(study.status).terminal or not study.ray_job_id:
        return study.status
    try:
        status, message = jobs.status(study.ray_job_id)
    except Exception as exc:  # noqa: BLE001 — cluster away: leave the record as it is
        log.warning("job %s of study %s: %s", study.ray_job_id, study.id, exc)
        return study.status
    if status == JobStatus.FAILED:
        if study.attempts < max_attempts:
            log.warning("driver of study %s died (%s); relaunching, attempt %d", study.id, message, study.attempts + 1)
            try:
                launch(store, jobs, study)
            except JobLauncherError as exc:
                store.mark(study.id, StudyStatus.failed, error=f"driver died and could not be relaunched: {exc}")
        else:
            # Ray's message is a traceback of our internals: for the log, not for the API's users.
            log.error("driver of study %s failed %d times; last job %s: %s", study.id, study.attempts, study.ray_job_id, message)
            store.mark(study.id, StudyStatus.failed,
                       error=f"the study's driver failed {study.attempts} times (last: Ray job {study.ray_job_id}); "
                             "the service's log has the details")
    elif status == JobStatus.STOPPED:
        store.mark(study.id, StudyStatus.cancelled, error=study.error or "the Ray job was stopped")
    elif status == JobStatus.SUCCEEDED:
        # The driver records the outcome itself; a row still active means it exited without doing so.
        fresh = store.get(study.id)
        if not StudyStatus(fresh.status).terminal:
            store.mark(study.id, StudyStatus.failed, error="the driver exited without recording a result")
    return store.get(study.id).status


def reconcile_all(store: RecordStore, jobs: JobLauncher, max_attempts: int) -> None:
    for study in store.active():
        reconcile_one(store, jobs, study, max_attempts)
