"""The reconciler's state machine (service.jobs): Ray job states mapped onto study states, on both databases.

    .venv/bin/python -m pytest tests/service/test_jobs.py -q      # a few seconds

A scripted stand-in answers for Ray here, so each job state is reached on purpose; the end-to-end tests
(test_e2e.py) run the same code against a real Ray head.
"""

from __future__ import annotations

import pytest
from ray.job_submission import JobStatus

from service.jobs import JobLauncherError, reconcile_all, reconcile_one
from studies.records import RecordStore, StudyStatus, migrate
from tests.utils.factories import add_study, unique_owner


class ScriptedJobs:
    """Answers `status` from a dict of job id -> JobStatus; records submissions and stops."""

    def __init__(self, states: dict[str, JobStatus] | None = None, refuse: bool = False) -> None:
        self.states = states or {}
        self.refuse = refuse
        self.submitted: list[tuple[str, int]] = []

    def status(self, job_id: str) -> tuple[JobStatus, str]:
        if job_id not in self.states:
            raise RuntimeError(f"no job {job_id}")
        return self.states[job_id], f"job {job_id} is {self.states[job_id]}: Traceback (most recent call last):\n  File ..."

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
    assert reconcile_one(store, ScriptedJobs({}), store.get(study_id), max_attempts=3) == "running"


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
def test_finished_studies_are_never_reopened(store, status):
    study_id = _running(store, status=status)
    jobs = ScriptedJobs({f"actstudy-{study_id}-1": JobStatus.FAILED})
    assert reconcile_one(store, jobs, store.get(study_id), max_attempts=3) == status
    assert jobs.submitted == []


def test_a_cancel_is_not_overwritten_by_the_stopped_drivers_exit(store):
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
                         f"actstudy-{done}-1": JobStatus.FAILED})
    reconcile_all(store, jobs, max_attempts=3)
    assert [store.get(i).status for i in (a, b, done)] == ["cancelled", "cancelled", "succeeded"]
