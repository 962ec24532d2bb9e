"""Decisions that must be taken once however many processes race for them, on SQLite and PostgreSQL:
relaunching a dead driver (one compare-and-set on the study row) and the per-owner quota (insert and count
under one lock). Threads with their own database connections stand in for API processes.

    .venv/bin/python -m pytest tests/service/test_concurrency.py -q      # a few seconds
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from ray.job_submission import JobStatus

from service.jobs import reconcile_one
from studies.records import RecordStore, StudyStatus
from tests.service.test_jobs import ScriptedJobs
from tests.utils.factories import add_study, spec, unique_owner

STUDIES = "/api/v1/studies"
RACERS = 8


class CountingJobs(ScriptedJobs):
    """ScriptedJobs, safe to call from several threads at once."""

    def __init__(self, states=None) -> None:
        super().__init__(states, others=JobStatus.PENDING)  # a relaunched driver's job is pending
        self.lock = threading.Lock()

    def submit(self, study, attempt: int) -> str:
        with self.lock:
            return super().submit(study, attempt)


def _race(fn, n: int = RACERS) -> list:
    start = threading.Barrier(n)

    def go(i):
        start.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(go, range(n)))


def test_reads_and_reconciler_passes_at_a_dead_driver_launch_exactly_one(api):
    owner, headers = api.owner()
    study_id = add_study(api.store, owner, status=StudyStatus.running, attempts=1)
    api.store.update(study_id, ray_job_id=f"actstudy-{study_id}-1")
    jobs = CountingJobs({f"actstudy-{study_id}-1": JobStatus.FAILED})
    api.client.app.state.jobs = jobs  # what GET would use, if it decided anything
    stores = [RecordStore(api.settings.db_url) for _ in range(RACERS)]

    def reader_or_reconciler(i):
        if i % 2:
            return api.client.get(f"{STUDIES}/{study_id}", headers=headers).status_code
        return reconcile_one(stores[i], jobs, stores[i].get(study_id), max_attempts=3)

    outcomes = _race(reader_or_reconciler)
    for s in stores:
        s.engine.dispose()
    assert jobs.submitted == [(study_id, 2)], jobs.submitted
    assert all(o in (200, "running") for o in outcomes), outcomes
    study = api.store.get(study_id)
    assert (study.attempts, study.ray_job_id, study.status) == (2, f"actstudy-{study_id}-2", "running")


def test_concurrent_submissions_at_the_quota_accept_exactly_the_quota(make_api):
    api = make_api(max_active_studies_per_owner=2)
    api.client.app.state.jobs = CountingJobs()
    owner, headers = api.owner(unique_owner("quota"))
    add_study(api.store, owner, status=StudyStatus.running)  # one slot already taken

    codes = _race(lambda i: api.client.post(STUDIES, json=spec(name=f"q{i}"), headers=headers).status_code)
    assert sorted(codes) == [201] + [429] * (RACERS - 1), codes
    listed = api.client.get(STUDIES, params={"limit": 100}, headers=headers).json()
    assert listed["count"] == 2  # the rejected submissions left no row behind
