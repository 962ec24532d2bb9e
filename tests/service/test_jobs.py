"""The reconciler's state machine (service.jobs): Ray job states mapped onto study states, on both databases.

    .venv/bin/python -m pytest tests/service/test_jobs.py -q      # a few seconds

A scripted stand-in answers for Ray here, so each job state is reached on purpose; the end-to-end tests
(test_e2e.py) run the same code against a real Ray head.
"""

from __future__ import annotations

import http.server
import json
import threading
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from ray.job_submission import JobStatus
from sqlalchemy import update

from service.jobs import (
    GONE_AFTER_QUIET_S,
    ClusterAway,
    JobGone,
    JobLauncher,
    JobLauncherError,
    launch,
    reconcile_all,
    reconcile_one,
    start_waiting,
)
from service.settings import Settings
from studies.local import free_port
from studies.records import RecordStore, Study, StudyStatus, migrate
from tests.utils.databases import DATABASES, fresh_postgres_database
from tests.utils.factories import add_study, unique_owner


class ScriptedJobs:
    """Answers `status` from a dict of job id -> JobStatus (a job in `gone`: Ray's 404; any other: the cluster
    does not answer); records submissions and stops."""

    def __init__(self, states: dict[str, JobStatus] | None = None, refuse: bool = False, gone: tuple[str, ...] = (),
                 others: JobStatus | None = None) -> None:
        self.states = states or {}
        self.others = others  # every other job's state (the database may hold other tests' studies); None: away
        self.refuse = refuse
        self.gone = gone
        self.submitted: list[tuple[str, int]] = []
        self.stopped: list[str] = []
        self.settings = SimpleNamespace(mlflow_uri=None, max_running_studies=None)

    def status(self, job_id: str) -> tuple[JobStatus, str]:
        if job_id in self.gone:
            raise JobGone(f"Ray job {job_id} does not exist")
        if job_id not in self.states and self.others is None:
            raise ClusterAway("the Ray Jobs API does not answer")
        state = self.states.get(job_id, self.others)
        return state, f"job {job_id} is {state}: Traceback (most recent call last):\n  File ..."

    def stop(self, job_id: str) -> bool:
        self.stopped.append(job_id)
        return True

    def submit(self, study, attempt: int) -> str:
        if self.refuse:
            raise JobLauncherError("Ray refused the job")
        self.submitted.append((study.id, attempt))
        return f"actstudy-{study.id}-{attempt}"


@pytest.fixture
def store(db_url) -> RecordStore:
    migrate(db_url)
    store = RecordStore(db_url)
    yield store
    store.engine.dispose()


def _running(store, attempts: int = 1, status=StudyStatus.running) -> str:
    study_id = add_study(store, unique_owner(), status=status, attempts=attempts)
    store.update(study_id, ray_job_id=f"actstudy-{study_id}-{attempts}")
    return study_id


def test_a_failed_driver_is_relaunched_with_the_next_attempt(store):
    study_id = _running(store, attempts=1)
    jobs = ScriptedJobs({f"actstudy-{study_id}-1": JobStatus.FAILED})
    assert reconcile_one(store, jobs, store.get(study_id), max_attempts=3) == "running"
    assert jobs.submitted == [(study_id, 2)]
    study = store.get(study_id)
    assert (study.attempts, study.ray_job_id) == (2, f"actstudy-{study_id}-2")


def test_a_driver_that_fails_every_attempt_fails_the_study(store):
    study_id = _running(store, attempts=3)
    jobs = ScriptedJobs({f"actstudy-{study_id}-3": JobStatus.FAILED})
    assert reconcile_one(store, jobs, store.get(study_id), max_attempts=3) == "failed"
    assert jobs.submitted == []
    study = store.get(study_id)
    assert study.error.startswith("the study's driver failed 3 times (last: Ray job actstudy-") and study.finished_at
    assert "Traceback" not in study.error  # Ray's traceback goes to the log, not to the API's users


def test_a_relaunch_the_cluster_refuses_fails_the_study(store):
    study_id = _running(store, attempts=1)
    jobs = ScriptedJobs({f"actstudy-{study_id}-1": JobStatus.FAILED}, refuse=True)
    assert reconcile_one(store, jobs, store.get(study_id), max_attempts=3) == "failed"
    assert "could not be relaunched" in store.get(study_id).error


def test_a_stopped_job_cancels_the_study(store):
    study_id = _running(store)
    jobs = ScriptedJobs({f"actstudy-{study_id}-1": JobStatus.STOPPED})
    assert reconcile_one(store, jobs, store.get(study_id), max_attempts=3) == "cancelled"
    assert store.get(study_id).error == "the Ray job was stopped"


def test_a_driver_that_exits_without_a_result_fails_the_study(store):
    study_id = _running(store)
    jobs = ScriptedJobs({f"actstudy-{study_id}-1": JobStatus.SUCCEEDED})
    assert reconcile_one(store, jobs, store.get(study_id), max_attempts=3) == "failed"
    assert store.get(study_id).error == "the driver exited without recording a result"


def test_a_driver_that_recorded_its_result_is_left_alone(store):
    study_id = _running(store)
    stale = store.get(study_id)  # read before the driver wrote its result
    store.mark(study_id, StudyStatus.succeeded, results={"ranking": []})
    jobs = ScriptedJobs({f"actstudy-{study_id}-1": JobStatus.SUCCEEDED})
    assert reconcile_one(store, jobs, stale, max_attempts=3) == "succeeded"


@pytest.mark.parametrize("state", [JobStatus.PENDING, JobStatus.RUNNING])
def test_live_jobs_change_nothing(store, state):
    study_id = _running(store, status=StudyStatus.queued)
    jobs = ScriptedJobs({f"actstudy-{study_id}-1": state})
    assert reconcile_one(store, jobs, store.get(study_id), max_attempts=3) == "queued"


def test_an_unreachable_cluster_changes_nothing(store):
    study_id = _running(store)
    with pytest.raises(ClusterAway):
        reconcile_one(store, ScriptedJobs({}), store.get(study_id), max_attempts=3)
    with pytest.raises(ClusterAway):
        reconcile_all(store, ScriptedJobs({}), max_attempts=3)
    study = store.get(study_id)
    assert (study.status, study.attempts, study.error) == ("running", 1, None)


def _quiet(store, study_id: str, seconds: float) -> None:
    """As if the study's row had not changed for `seconds` (a dead driver writes no progress)."""
    with store.session() as s:
        s.execute(update(Study).where(Study.id == study_id).values(updated_at=datetime.now(UTC) - timedelta(seconds=seconds)))


def test_a_job_the_cluster_does_not_know_is_a_dead_driver_relaunched(store):
    """Ray's 404 (the head restarted, the job is gone with its driver): relaunched, counting the attempt — once the
    row has been quiet for longer than a submission may take (before that, the job may still be being submitted)."""
    study_id = _running(store, attempts=1)
    jobs = ScriptedJobs(gone=(f"actstudy-{study_id}-1",))
    assert reconcile_one(store, jobs, store.get(study_id), max_attempts=3) == "running"
    assert jobs.submitted == [] and store.get(study_id).attempts == 1  # just claimed: perhaps still being submitted
    _quiet(store, study_id, GONE_AFTER_QUIET_S + 1)
    assert reconcile_one(store, jobs, store.get(study_id), max_attempts=3) == "running"
    assert jobs.submitted == [(study_id, 2)] and store.get(study_id).attempts == 2


def test_a_gone_job_with_its_attempts_spent_fails_the_study_saying_why_and_frees_its_slot(store):
    study_id = _running(store, attempts=3)
    owner = store.get(study_id).owner
    jobs = ScriptedJobs(gone=(f"actstudy-{study_id}-3",))
    _quiet(store, study_id, GONE_AFTER_QUIET_S + 1)
    assert reconcile_one(store, jobs, store.get(study_id), max_attempts=3) == "failed"
    error = store.get(study_id).error
    assert "no longer exists" in error and "3 attempt(s) of 3" in error and "ACTSTUDY_MAX_DRIVER_ATTEMPTS" in error
    assert jobs.submitted == [] and not [s for s in store.active() if s.owner == owner]


def test_a_cancelling_study_is_cancelled_once_its_driver_is_gone(store):
    study_id = _running(store)
    job = f"actstudy-{study_id}-1"
    store.mark(study_id, StudyStatus.cancelling, error="cancelled by alice")
    # The driver's own exit paths never write over a cancel; no new driver is claimed for it.
    for status in (StudyStatus.failed, StudyStatus.succeeded, StudyStatus.running):
        assert store.mark(study_id, status, error="SystemExit: 143") is False
    assert store.claim_attempt(study_id, 1, f"actstudy-{study_id}-2") is False
    assert store.get(study_id).owner in {s.owner for s in store.active()}  # it holds its slot until it is done
    live = ScriptedJobs({job: JobStatus.RUNNING})
    assert reconcile_one(store, live, store.get(study_id), max_attempts=3) == "cancelling"
    assert live.stopped == [job]  # asked again to stop
    for ended in (ScriptedJobs({job: JobStatus.STOPPED}), ScriptedJobs(gone=(job,))):
        other = _running(store)
        store.update(other, ray_job_id=job)
        store.mark(other, StudyStatus.cancelling, error="cancelled by alice")
        assert reconcile_one(store, ended, store.get(other), max_attempts=3) == "cancelled"
        assert store.get(other).error == "cancelled by alice" and store.get(other).finished_at


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
def test_finished_studies_are_never_reopened(store, status):
    study_id = _running(store, status=status)
    jobs = ScriptedJobs({f"actstudy-{study_id}-1": JobStatus.FAILED})
    assert reconcile_one(store, jobs, store.get(study_id), max_attempts=3) == status
    assert jobs.submitted == []


def test_a_cancel_is_not_overwritten_by_the_stopped_drivers_exit(store):  # a cancelled study stays so
    """The API marks `cancelled` before stopping the job; the driver's own failure path must not win."""
    study_id = _running(store)
    store.mark(study_id, StudyStatus.cancelled, error="cancelled by alice")
    assert store.mark(study_id, StudyStatus.failed, error="SystemExit: 143") is False
    jobs = ScriptedJobs({f"actstudy-{study_id}-1": JobStatus.STOPPED})
    assert reconcile_one(store, jobs, store.get(study_id), max_attempts=3) == "cancelled"
    assert store.get(study_id).error == "cancelled by alice"


def test_reconcile_all_visits_every_active_study(store):
    a, b = _running(store), _running(store, status=StudyStatus.queued)
    done = _running(store, status=StudyStatus.succeeded)
    jobs = ScriptedJobs({f"actstudy-{a}-1": JobStatus.STOPPED, f"actstudy-{b}-1": JobStatus.STOPPED,
                         f"actstudy-{done}-1": JobStatus.FAILED}, others=JobStatus.RUNNING)
    reconcile_all(store, jobs, max_attempts=3)
    assert [store.get(i).status for i in (a, b, done)] == ["cancelled", "cancelled", "succeeded"]


# --- JobLauncher.status against an HTTP server: the status code decides, never the message ----------------


class _RayJobsApi(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 — http.server's name
        job = self.path.rsplit("/", 1)[-1]
        code, body = {"live": (200, {"status": "RUNNING", "message": "running"}),
                      "missing": (404, "Job missing does not exist"), "broken": (500, "Internal Server Error")}[job]
        data = (json.dumps(body) if isinstance(body, dict) else body).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_job_status_tells_a_gone_job_from_a_cluster_away():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RayJobsApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        jobs = JobLauncher(Settings(ray_jobs_url=f"http://127.0.0.1:{server.server_address[1]}"))
        assert jobs.status("live") == (JobStatus.RUNNING, "running")
        with pytest.raises(JobGone):
            jobs.status("missing")
        with pytest.raises(ClusterAway, match="answered 500"):
            jobs.status("broken")
    finally:
        server.shutdown()
    with pytest.raises(ClusterAway, match="does not answer"):
        JobLauncher(Settings(ray_jobs_url=f"http://127.0.0.1:{free_port()}")).status("live")


# --- a limit on drivers at once: the rest wait queued, and start as slots free ------------------------------


@pytest.fixture(params=DATABASES)
def own_store(request, tmp_path) -> RecordStore:
    """A store on a database of this test's own: the driver limit counts every owner's studies, and drivers
    that earlier tests left on the session's Ray head may still end their studies in the shared database."""
    with ExitStack() as stack:
        url = f"sqlite:///{tmp_path / 'records.db'}" if request.param == "sqlite" else stack.enter_context(fresh_postgres_database())
        migrate(url)
        store = RecordStore(url)
        stack.callback(store.engine.dispose)
        yield store


def test_studies_beyond_the_driver_limit_wait_queued_and_start_in_order(own_store):
    store = own_store
    jobs = ScriptedJobs(others=JobStatus.RUNNING)
    jobs.settings.max_running_studies = 2
    owner = unique_owner()
    ids = [add_study(store, owner, status=StudyStatus.queued) for _ in range(3)]
    assert start_waiting(store, ScriptedJobs()) == 0  # no limit: nothing waits for a slot
    assert [launch(store, jobs, store.get(i)) for i in ids] == [f"actstudy-{ids[0]}-1", f"actstudy-{ids[1]}-1", None]
    waiting = store.get(ids[2])
    assert (waiting.status, waiting.ray_job_id, waiting.attempts) == ("queued", None, 0)
    assert [s.id for s in store.waiting()] == [ids[2]]
    assert start_waiting(store, jobs) == 0  # both slots taken
    # A driver that died keeps its place: its relaunch is not held back by the limit.
    store.update(ids[0], status=StudyStatus.running.value)
    assert store.claim_attempt(ids[0], 1, f"actstudy-{ids[0]}-2", max_drivers=2)
    assert store.drivers_running() == 2
    # One ends: the reconciler starts the one waiting.
    store.mark(ids[1], StudyStatus.succeeded)
    assert start_waiting(store, jobs) == 1
    assert store.get(ids[2]).ray_job_id == f"actstudy-{ids[2]}-1" and jobs.submitted[-1] == (ids[2], 1)
    assert store.waiting() == [] and store.drivers_running() == 2
