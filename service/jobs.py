"""Studies as Ray jobs: submission through Ray's Jobs API, and the reconciler's decisions that map job states
onto study states — relaunching a driver that died (it then continues from the study's stores), and finishing
a cancel once the driver is gone (every MLflow run of the study ended, then `cancelled`)."""

from __future__ import annotations

import functools
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import requests
from ray.job_submission import JobStatus, JobSubmissionClient
from tenacity import Retrying, before_sleep_log, retry_if_exception_type, stop_after_delay, wait_fixed

from service.code import code_dir
from service.settings import Settings
from studies.mlflow import MLFLOW_AWAY, close_study_runs
from studies.records import RecordStore, Study, StudyStatus
from workers.files import written_whole

log = logging.getLogger(__name__)

# How long a submission keeps trying: a head that has just started answers before its job agent is up (an
# HTTP 500, which Ray's SDK raises as RuntimeError, its one type for a refusal), and that passes in seconds.
SUBMIT_RETRY_S = 30.0
SUBMIT_RETRIES = {"stop": stop_after_delay(SUBMIT_RETRY_S), "wait": wait_fixed(1),
                  "retry": retry_if_exception_type((RuntimeError, requests.ConnectionError)),
                  "before_sleep": before_sleep_log(log, logging.INFO)}
STATUS_TIMEOUT_S = 10.0
# A job the cluster does not know may be one still being submitted (the attempt is claimed on the study's row
# first, then submitted, retrying for up to SUBMIT_RETRY_S): it counts as gone only once the row has been quiet
# for longer than that. A live driver writes its progress often; a dead one's row stays quiet.
GONE_AFTER_QUIET_S = SUBMIT_RETRY_S + 15.0
ENDED = (JobStatus.STOPPED, JobStatus.SUCCEEDED, JobStatus.FAILED)


class JobLauncherError(RuntimeError):
    """The Ray cluster could not be reached or refused the job."""


class ClusterAway(JobLauncherError):
    """The Ray cluster did not answer (or answered with a server error): nothing is known about the job."""


class JobGone(JobLauncherError):
    """The Ray cluster answered that the job does not exist (HTTP 404): its driver is gone with it."""


class JobLauncher:
    """Submits `python -m studies.driver <id>` as a Ray job, asks how it is doing, stops it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: JobSubmissionClient | None = None

    @functools.cached_property
    def http(self) -> httpx.Client:
        """One client for every status call: its connections are kept, and no TLS context is built per call (that
        alone cost the reconciler milliseconds of CPU per study per pass, taken from the API's reads)."""
        return httpx.Client(timeout=STATUS_TIMEOUT_S)

    @property
    def headers(self) -> dict[str, str] | None:
        return {"Authorization": f"Bearer {self.settings.ray_auth_token}"} if self.settings.ray_auth_token else None

    @property
    def client(self) -> JobSubmissionClient:
        if self._client is None:
            if not self.settings.ray_jobs_url:
                raise JobLauncherError("no Ray cluster configured (ACTSTUDY_RAY_JOBS_URL)")
            try:
                self._client = JobSubmissionClient(self.settings.ray_jobs_url, headers=self.headers)
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
            "ACTSTUDY_ALLOW_USER_CODE": "1" if s.allow_user_code else "0",  # the driver validates the spec again
        }
        runtime_env: dict = {"env_vars": env}
        code = (study.spec or {}).get("code")
        if code:  # the user's uploaded folder: Ray ships it to the driver and every trial, and puts it on their sys.path
            runtime_env["working_dir"] = str(code_dir(s.data_dir, code))
        client = self.client  # JobLauncherError when there is no cluster: nothing to retry
        try:
            return Retrying(**SUBMIT_RETRIES, reraise=True)(
                client.submit_job,
                entrypoint=f"{s.driver_python or sys.executable} -m studies.driver {study.id}",
                submission_id=job_id_for(study.id, attempt),
                runtime_env=runtime_env,
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
        """The job's status and message, from Ray's Jobs REST API (`GET /api/jobs/<id>`), whose status code tells
        a job that does not exist (404: JobGone) from a cluster that does not answer (ClusterAway)."""
        url = self.settings.ray_jobs_url
        if not url:
            raise JobLauncherError("no Ray cluster configured (ACTSTUDY_RAY_JOBS_URL)")
        try:
            r = self.http.get(f"{url.rstrip('/')}/api/jobs/{job_id}", headers=self.headers)
        except httpx.HTTPError as exc:
            raise ClusterAway(f"the Ray Jobs API at {url} does not answer ({type(exc).__name__})") from exc
        if r.status_code == 404:
            raise JobGone(f"Ray job {job_id} does not exist")
        if r.status_code != 200:
            raise ClusterAway(f"the Ray Jobs API at {url} answered {r.status_code} for job {job_id}")
        body = r.json()
        return JobStatus(body["status"]), body.get("message") or ""

    def stop(self, job_id: str) -> bool:
        try:
            return self.client.stop_job(job_id)
        except Exception as exc:  # noqa: BLE001 — already gone, or the cluster is away: the reconciler tries again
            log.warning("stop_job %s: %s", job_id, exc)
            return False

    def node_resources(self) -> list[dict[str, float]] | None:
        """Each live node's total resources ("CPU", "GPU", ...), from Ray's State API; None when it cannot
        tell (the submission then goes ahead, and the driver checks again before any trial)."""
        from ray.util.state.api import StateApiClient
        from ray.util.state.common import ListApiOptions, StateResource

        try:
            nodes = StateApiClient(self.settings.ray_jobs_url, headers=self.headers).list(
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
    """Submit the study's next driver attempt; None when another process has just taken it, or (a first attempt)
    when `max_running_studies` drivers run already: the study then waits `queued`, and the reconciler starts it.

    The attempt is decided by one compare-and-set on the study's row before anything is submitted, so
    concurrent deciders (the reconciler in several API processes, a submission) launch exactly one driver.
    """
    attempt = study.attempts + 1
    if not store.claim_attempt(study.id, study.attempts, job_id_for(study.id, attempt), max_drivers=jobs.settings.max_running_studies):
        return None
    return jobs.submit(study, attempt)


def start_waiting(store: RecordStore, jobs: JobLauncher) -> int:
    """Launch queued studies that wait for a driver slot, oldest first, while slots are free; how many started.
    Only under a limit (`max_running_studies`): without one, no study waits for a slot."""
    if jobs.settings.max_running_studies is None:
        return 0
    started = 0
    for study in store.waiting():
        try:
            if launch(store, jobs, study) is None:
                break  # no slot free (or another process took it): the rest wait too
        except JobLauncherError as exc:
            if isinstance(exc, ClusterAway):
                raise
            store.mark(study.id, StudyStatus.failed, error=f"the driver could not be launched: {exc}")
            continue
        started += 1
    return started


def _driver_died(store: RecordStore, jobs: JobLauncher, study: Study, max_attempts: int, why: str, spent: str) -> None:
    """Relaunch the study's driver (it resumes from the study's stores), or fail the study with `spent`."""
    if study.attempts < max_attempts:
        log.warning("driver of study %s is gone (%s); relaunching, attempt %d", study.id, why, study.attempts + 1)
        try:
            launch(store, jobs, study)
        except JobLauncherError as exc:
            store.mark(study.id, StudyStatus.failed, error=f"driver died and could not be relaunched: {exc}")
    else:
        log.error("driver of study %s is gone after %d attempts (last job %s): %s", study.id, study.attempts, study.ray_job_id, why)
        store.mark(study.id, StudyStatus.failed, error=spent)


def _quiet_for(study: Study) -> float:
    """Seconds since the study's row last changed (SQLite gives naive datetimes: they are UTC)."""
    last = study.updated_at or study.created_at
    last = last if last.tzinfo else last.replace(tzinfo=UTC)
    return (datetime.now(UTC) - last).total_seconds()


def finish_cancel(store: RecordStore, jobs: JobLauncher, study: Study) -> str:
    """A cancelling study becomes `cancelled` once its driver is gone and every MLflow run it left open is
    ended (KILLED); until then it stays `cancelling` (the job is asked to stop again). ClusterAway propagates."""
    if study.ray_job_id:
        try:
            status, _ = jobs.status(study.ray_job_id)
        except JobGone:
            status = None
        if status is not None and status not in ENDED:
            jobs.stop(study.ray_job_id)
            return study.status
    if jobs.settings.mlflow_uri:
        try:
            closed = close_study_runs(jobs.settings.mlflow_uri, study.name, study.id, study.error or "cancelled")
        except MLFLOW_AWAY as exc:
            log.warning("study %s: cannot end its MLflow runs yet: %s", study.id, exc)
            return study.status
        if closed:
            log.info("study %s: ended %d MLflow run(s) its driver left open", study.id, closed)
    store.mark(study.id, StudyStatus.cancelled, error=study.error)
    return StudyStatus.cancelled.value


def reconcile_one(store: RecordStore, jobs: JobLauncher, study: Study, max_attempts: int) -> str:
    """Bring one active study's status in line with its Ray job; returns the (new) status. Raises ClusterAway
    when the cluster does not answer: then nothing is changed."""
    if StudyStatus(study.status).terminal:
        return study.status
    if study.status == StudyStatus.cancelling.value:
        return finish_cancel(store, jobs, study)
    if not study.ray_job_id:
        return study.status
    try:
        status, message = jobs.status(study.ray_job_id)
    except JobGone:
        if _quiet_for(study) < GONE_AFTER_QUIET_S:
            return study.status  # perhaps still being submitted: look again later
        _driver_died(store, jobs, study, max_attempts, f"its Ray job {study.ray_job_id} does not exist",
                     f"the study's driver is gone: its Ray job {study.ray_job_id} no longer exists (the Ray cluster was "
                     f"restarted or replaced), and {study.attempts} attempt(s) of {max_attempts} are spent "
                     "(ACTSTUDY_MAX_DRIVER_ATTEMPTS)")
        return store.get(study.id).status
    if status == JobStatus.FAILED:
        # Ray's message is a traceback of our internals: for the log, not for the API's users.
        _driver_died(store, jobs, study, max_attempts, message,
                     f"the study's driver failed {study.attempts} times (last: Ray job {study.ray_job_id}); "
                     "the service's log has the details")
    elif status == JobStatus.STOPPED:  # stopped from outside the service: a cancel all the same
        store.mark(study.id, StudyStatus.cancelling, error=study.error or "the Ray job was stopped")
        return finish_cancel(store, jobs, store.get(study.id))
    elif status == JobStatus.SUCCEEDED:
        # The driver records the outcome itself; a row still active means it exited without doing so.
        fresh = store.get(study.id)
        if not StudyStatus(fresh.status).terminal:
            store.mark(study.id, StudyStatus.failed, error="the driver exited without recording a result")
    return store.get(study.id).status


def reconcile_all(store: RecordStore, jobs: JobLauncher, max_attempts: int) -> None:
    """Every active study, in turn, then the queued ones waiting for a driver slot; stops at the first
    ClusterAway (the cluster is away for all of them)."""
    for study in store.active():
        reconcile_one(store, jobs, study, max_attempts)
    start_waiting(store, jobs)
